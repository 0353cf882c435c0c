#!/usr/bin/env bash
# A single-node Nomad dev agent (server and client in one process) set up as a
# sandbox client from the files beside this script: `make nomad-dev` and
# `make nomad-dev-stop`.
#
#   deploy/nomad/dev.sh check|start|stop
#
# check  exits 1 with one line when no nomad binary is found (NOMAD_BIN or PATH)
# start  builds the pause image if missing, installs the agent binary where
#        the job bind-mounts it from, applies firewall.sh, starts
#        `nomad agent -dev` with client.hcl on 127.0.0.1:4646 (data, log and
#        pid in $NOMAD_DEV_DIR), waits until the node is ready with a healthy
#        docker driver and the cni/cloud-sandbox-noegress network, and prints
#        NOMAD_ADDR. A second start while it runs only prints NOMAD_ADDR.
# stop   stops the agent (a dev agent destroys its allocations on the way out),
#        removes what a killed agent may have left (its containers, mounts,
#        CNI leases and port mappings) and the firewall rules.
#
# Environment: NOMAD_BIN (default: nomad on PATH), NOMAD_DEV_DIR (default
# .data/nomad-dev), AGENT_BIN (default bin/sandbox-agent), SANDBOX_AGENT_PATH
# (default /opt/cloud-sandbox/bin/sandbox-agent, the driver's default),
# NOMAD_DEV_TIMEOUT (seconds to wait for readiness, default 60).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
dev_dir="${NOMAD_DEV_DIR:-$repo/.data/nomad-dev}"
agent_bin="${AGENT_BIN:-$repo/bin/sandbox-agent}"
agent_path="${SANDBOX_AGENT_PATH:-/opt/cloud-sandbox/bin/sandbox-agent}"
timeout_s="${NOMAD_DEV_TIMEOUT:-60}"
pause_image="cloud-sandbox/pause:1" # client.hcl's infra_image
network="cloud-sandbox-noegress"    # cni/cloud-sandbox-noegress.conflist
addr="http://127.0.0.1:4646"
pidfile="$dev_dir/nomad.pid"
log="$dev_dir/nomad.log"

die() { echo "nomad-dev: $*" >&2; exit 1; }
say() { echo "nomad-dev: $*"; }

nomad_bin() {
	local bin="${NOMAD_BIN:-nomad}"
	command -v "$bin" 2>/dev/null || return 1
}

check() {
	nomad_bin >/dev/null || die "no nomad binary found: put Nomad 1.6.x on PATH or set NOMAD_BIN"
}

# running prints the pid of the dev agent this script started, if it still runs.
running() {
	[[ -f "$pidfile" ]] || return 1
	local pid
	pid="$(cat "$pidfile")"
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- 'agent -dev' || return 1
	echo "$pid"
}

# node_state prints "<status> <docker healthy> <network modes...>" of this node.
node_state() {
	NOMAD_ADDR="$addr" timeout 5 "$1" node status -self \
		-t '{{.Status}} {{with index .Drivers "docker"}}{{.Healthy}}{{end}}{{range .NodeResources.Networks}} {{.Mode}}{{end}}' 2>/dev/null
}

start() {
	check
	local nomad version pid state=""
	nomad="$(nomad_bin)"
	version="$("$nomad" version | head -1)"
	[[ "$version" == "Nomad v1.6."* ]] || say "warning: $version; the project is tested with Nomad v1.6.5"
	if pid="$(running)"; then
		say "already running (pid $pid, log $log)"
		echo "export NOMAD_ADDR=$addr"
		return 0
	fi
	[[ $EUID -eq 0 ]] || die "must run as root (Nomad's CNI networking and iptables need it)"
	timeout 3 bash -c "exec 3<>/dev/tcp/127.0.0.1/4646" 2>/dev/null && die "127.0.0.1:4646 is in use by another process (another Nomad?)"
	timeout 20 docker info >/dev/null 2>&1 || die "docker is not reachable (docker info failed)"
	local p
	for p in bridge firewall portmap host-local loopback; do
		[[ -x "/usr/lib/cni/$p" ]] || die "CNI plugin /usr/lib/cni/$p missing (apt-get install containernetworking-plugins)"
	done
	[[ -x "$agent_bin" ]] || die "$agent_bin missing (run make agent)"

	bash "$here/pause-image.sh" "$agent_bin" "$pause_image"
	if ! cmp -s "$agent_bin" "$agent_path"; then
		install -D -m 0755 "$agent_bin" "$agent_path"
		say "installed $agent_path"
	fi
	bash "$here/firewall.sh" apply

	mkdir -p "$dev_dir"
	leftover_mounts | grep -q . && die "mounts left under $dev_dir/data: run make nomad-dev-stop first"
	rm -rf "$dev_dir/data"
	# What a dev agent changes from client.hcl; everything else is as in production.
	cat >"$dev_dir/dev.hcl" <<EOF
# Written by deploy/nomad/dev.sh on each start.
data_dir  = "$dev_dir/data"
bind_addr = "127.0.0.1"
log_level = "INFO"
client {
  cni_config_dir = "$here/cni"
}
EOF
	setsid "$nomad" agent -dev -config "$here/client.hcl" -config "$dev_dir/dev.hcl" \
		</dev/null >"$log" 2>&1 &
	echo $! >"$pidfile"

	local deadline=$((SECONDS + timeout_s))
	while ((SECONDS < deadline)); do
		running >/dev/null || die "nomad exited during startup; see $log"
		state="$(node_state "$nomad" || true)"
		[[ "$state" == "ready true"*" cni/$network"* ]] && break
		sleep 1
	done
	if [[ "$state" != "ready true"*" cni/$network"* ]]; then
		stop >/dev/null 2>&1 || true
		die "not ready after ${timeout_s}s (node: ${state:-no answer}); stopped it; see $log"
	fi
	say "$version dev agent ready: node ready, docker healthy, network cni/$network; log $log"
	echo "export NOMAD_ADDR=$addr"
}

leftover_mounts() {
	awk -v d="$dev_dir/data/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r
}

stop() {
	local pid killed=""
	if pid="$(running)"; then
		kill -INT "$pid"
		local deadline=$((SECONDS + 30))
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
		if kill -0 "$pid" 2>/dev/null; then
			killed=yes
			say "agent did not stop within 30s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
			sleep 1
		fi
		say "stopped the agent (pid $pid)"
	else
		killed=maybe # not stopped by us: it may have died without cleaning up
		say "no dev agent running"
	fi
	rm -f "$pidfile"

	# A killed agent leaves its allocations behind: their containers (labelled
	# with the allocation id), CNI state (cni-release.sh) and mounts.
	local dir id c m
	for dir in "$dev_dir"/data/alloc/*/; do
		[[ -d "$dir" ]] || continue
		id="$(basename "$dir")"
		for c in $(docker ps -aq --filter "label=com.hashicorp.nomad.alloc_id=$id"); do
			timeout 30 docker rm -f "$c" >/dev/null && say "removed leftover container $c of allocation $id"
		done
		if [[ -n "$killed" ]]; then bash "$here/cni-release.sh" "$id"; fi
	done
	for m in $(leftover_mounts); do
		umount "$m" && say "unmounted leftover $m"
	done
	# Another Nomad agent on this host (a test's) may still run sandboxes on
	# the network: removing the rules would give them egress.
	local leased
	leased="$(find "/var/lib/cni/networks/$network" -maxdepth 1 -name '[0-9]*.[0-9]*' 2>/dev/null | wc -l)"
	if ((leased > 0)); then
		say "firewall rules kept: $leased address(es) of $network still in use on this host"
	else
		bash "$here/firewall.sh" remove
	fi
}

case "${1:-}" in
check) check ;;
start) start ;;
stop) stop ;;
*) die "usage: dev.sh check|start|stop" ;;
esac
