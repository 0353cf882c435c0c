#!/usr/bin/env bash
# Undoes what the cloud-sandbox-noegress CNI ADD did for allocations whose
# Nomad client died without the CNI DEL (a killed dev agent): the address
# lease, the portmap DNAT chain and the firewall plugin's per-address rules.
# Without this a stale DNAT chain earlier in CNI-HOSTPORT-DNAT would catch a
# later sandbox's host port.
#
#   deploy/nomad/cni-release.sh <allocation id>...
#
# Run it only for allocations that are gone (their containers removed).
set -euo pipefail

network="cloud-sandbox-noegress"
leases="/var/lib/cni/networks/$network"
ipt() { iptables -w 5 "$@"; }

release() {
	local id=$1 lease ip="" rule chain found=""
	# host-local's lease file is named by the address and holds
	# "<container id>\r\n<ifname>"; Nomad's container id is the allocation id.
	for lease in "$leases"/*; do
		[[ -f "$lease" && "$(head -n1 "$lease" | tr -d '\r')" == "$id" ]] || continue
		ip="$(basename "$lease")"
		rm -f "$lease"
		found=yes
	done
	# portmap: one jump per protocol in CNI-HOSTPORT-DNAT, commented with the
	# network and container id, to a CNI-DN-<hash> chain.
	while read -r rule; do
		chain="${rule##* -j }"
		found=yes
		eval "ipt -t nat -D ${rule#-A }" # the rule's own quoting (its comment)
		if [[ "$chain" == CNI-DN-* ]] && ipt -t nat -S "$chain" >/dev/null 2>&1; then
			ipt -t nat -F "$chain" && ipt -t nat -X "$chain" 2>/dev/null || true
		fi
	done < <(ipt -t nat -S CNI-HOSTPORT-DNAT 2>/dev/null | grep -F "id: \\\"$id\\\"" || true)
	# firewall plugin: accept rules for the address in CNI-FORWARD.
	if [[ -n "$ip" ]]; then
		while ipt -C CNI-FORWARD -s "$ip/32" -j ACCEPT 2>/dev/null; do
			ipt -D CNI-FORWARD -s "$ip/32" -j ACCEPT
		done
		while ipt -C CNI-FORWARD -d "$ip/32" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT 2>/dev/null; do
			ipt -D CNI-FORWARD -d "$ip/32" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
		done
	fi
	if [[ -n "$found" ]]; then echo "cni-release: released allocation $id${ip:+ ($ip)}"; fi
}

[[ $# -gt 0 ]] || { echo "cni-release: usage: cni-release.sh <allocation id>..." >&2; exit 1; }
for id in "$@"; do
	[[ "$id" =~ ^[0-9a-f-]{36}$ ]] || { echo "cni-release: not an allocation id: $id" >&2; exit 1; }
	release "$id"
done
