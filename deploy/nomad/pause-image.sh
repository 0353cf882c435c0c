#!/usr/bin/env bash
# Builds the Nomad infra ("pause") image from the static sandbox-agent binary,
# with no registry: one file in a tarball, `docker import`ed.
#
#   deploy/nomad/pause-image.sh [-f] <sandbox-agent binary> [image]
#
# The image holds only /pause (the agent binary) and runs `/pause pause`:
# PID 1 of the allocation's network namespace, reaping, exiting 0 on
# SIGTERM/SIGINT (cmd/sandbox-agent/pause.go). Skips the build when the image
# exists, unless -f.
set -euo pipefail

force=false
if [[ "${1:-}" == "-f" ]]; then force=true; shift; fi
agent="${1:?usage: pause-image.sh [-f] <sandbox-agent binary> [image]}"
image="${2:-cloud-sandbox/pause:1}"

if ! $force && docker image inspect "$image" >/dev/null 2>&1; then
	exit 0
fi
[[ -x "$agent" ]] || { echo "pause-image: $agent is not an executable file (run make agent)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
install -m 0755 "$agent" "$tmp/pause"
tar -C "$tmp" --owner=0 --group=0 --numeric-owner -cf "$tmp/rootfs.tar" pause
timeout 120 docker import \
	--change 'ENTRYPOINT ["/pause", "pause"]' \
	--change 'LABEL org.opencontainers.image.title="cloud-sandbox pause" org.opencontainers.image.source="deploy/nomad/pause-image.sh"' \
	"$tmp/rootfs.tar" "$image" >/dev/null
echo "pause-image: built $image"
