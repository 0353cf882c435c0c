#!/usr/bin/env bash
# The firewall rules of the cloud-sandbox-noegress CNI network (README.md).
#
#   deploy/nomad/firewall.sh apply|remove|status
#
# apply is idempotent; remove deletes only the rules it added (tagged with the
# comment below) and leaves the chains, which the CNI firewall plugin shares.
# NOEGRESS_SUBNET and NOEGRESS_BRIDGE must match cni/cloud-sandbox-noegress.conflist.
#
# IPv4, in CNI-ADMIN (the CNI firewall plugin jumps there first from
# CNI-FORWARD, before its own per-sandbox ACCEPTs; a rule at the top of
# FORWARD would come too late once the plugin inserts CNI-FORWARD above it):
#   1. DROP new connections from the subnet to anything outside it   (egress)
#   2. DROP anything else new that enters from the bridge            (sandbox to
#      sandbox through the bridge or a hairpinned host port; spoofed sources)
#   3. ACCEPT port-mapped (DNAT) traffic to the subnet out the bridge (the
#      control plane on another host reaching the agent port; FORWARD's
#      policy is DROP wherever Docker runs)
#   4. DROP anything else new forwarded into the bridge: direct connections
#      to a sandbox's own address, e.g. from a sandbox with egress on Nomad's
#      bridge, whose firewall-plugin rule accepts all it sends
# and at the top of INPUT:
#   5. DROP new connections from the bridge to the host itself (its gateway
#      address, docker0, every other host address); replies still pass.
# IPv6: off in the sandbox's namespace (Docker's default), so in case it is
# ever on: DROP anything new from the bridge in INPUT and FORWARD.
set -euo pipefail

SUBNET="${NOEGRESS_SUBNET:-172.26.80.0/20}"
BRIDGE="${NOEGRESS_BRIDGE:-cs-noegress0}"
TAG="cloud-sandbox-noegress"
IPT="${IPTABLES:-iptables}"
IP6T="${IP6TABLES:-ip6tables}"

die() { echo "firewall.sh: $*" >&2; exit 1; }

new=(-m conntrack ! --ctstate ESTABLISHED,RELATED)
comment=(-m comment --comment "$TAG")
# One rule per line: <tool> <chain> <match...>; target last.
rules() {
	echo "$IPT CNI-ADMIN -s $SUBNET ! -d $SUBNET ${new[*]} ${comment[*]} -j DROP"
	echo "$IPT CNI-ADMIN -i $BRIDGE ${new[*]} ${comment[*]} -j DROP"
	echo "$IPT CNI-ADMIN -o $BRIDGE -d $SUBNET -m conntrack --ctstate DNAT ${comment[*]} -j ACCEPT"
	echo "$IPT CNI-ADMIN -o $BRIDGE ${new[*]} ${comment[*]} -j DROP"
	echo "$IPT INPUT -i $BRIDGE ${new[*]} ${comment[*]} -j DROP"
	if have "$IP6T"; then
		echo "$IP6T INPUT -i $BRIDGE ${new[*]} ${comment[*]} -j DROP"
		echo "$IP6T FORWARD -i $BRIDGE ${new[*]} ${comment[*]} -j DROP"
	fi
}

have() { command -v "$1" >/dev/null 2>&1 && "$1" -w 5 -S INPUT >/dev/null 2>&1; }

# run <tool> <op> <chain> <spec...>: iptables with a bounded lock wait.
run() { local tool=$1 op=$2 chain=$3; shift 3; "$tool" -w 5 "$op" "$chain" "$@"; }

present() { local tool=$1 chain=$2; shift 2; run "$tool" -C "$chain" "$@" 2>/dev/null; }

apply() {
	have "$IPT" || die "$IPT not usable (run as root with iptables installed)"
	"$IPT" -w 5 -N CNI-ADMIN 2>/dev/null || true
	local missing=0 line
	while read -r line; do
		# shellcheck disable=SC2086 # the rule is split into words on purpose
		set -- $line
		present "$@" || missing=1
	done < <(rules)
	((missing)) || { echo "firewall.sh: rules already in place"; return 0; }
	# Some are missing (first boot, or someone deleted one): rebuild the whole
	# set, in order, at the top of each chain. Removing first keeps rules from
	# doubling; what is left of a partial set is gone for the milliseconds
	# between, and a complete set is never touched.
	remove quiet
	local -A pos=()
	while read -r line; do
		set -- $line
		local key="$1 $2"
		pos[$key]=$(( ${pos[$key]:-0} + 1 ))
		run "$1" -I "$2" "${pos[$key]}" "${@:3}" || die "cannot insert: $line"
	done < <(rules)
	echo "firewall.sh: applied (subnet $SUBNET, bridge $BRIDGE)"
}

remove() {
	local quiet="${1:-}" line n
	while read -r line; do
		set -- $line
		"$1" -w 5 -S "$2" >/dev/null 2>&1 || continue # chain or tool absent
		for ((n = 0; n < 16; n++)); do
			present "$@" || break
			run "$1" -D "$2" "${@:3}"
		done
	done < <(rules)
	[[ "$quiet" == quiet ]] || echo "firewall.sh: removed"
}

status() {
	local line missing=0
	while read -r line; do
		set -- $line
		if present "$@"; then echo "present: $line"; else echo "MISSING: $line"; missing=1; fi
	done < <(rules)
	return $missing
}

case "${1:-}" in
apply) apply ;;
remove) remove ;;
status) status ;;
*) die "usage: firewall.sh apply|remove|status" ;;
esac
