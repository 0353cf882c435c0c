#!/usr/bin/env bash
# Registers gVisor's runsc as a Docker runtime for Cloud Sandbox, without
# restarting the daemon: installs Debian's runsc if missing, adds the runtime
# to /etc/docker/daemon.json (keeping everything else there), and reloads
# the daemon with SIGHUP (never a restart: running containers stay up, and
# the default runtime stays runc). Idempotent and bounded: every apt-get and
# docker call has a timeout, and the wait for the reload is at most ~20 s.
# Needs root.
#
#   deploy/gvisor/setup.sh            # runtime "runsc"
#   RUNTIME_NAME=gvisor deploy/gvisor/setup.sh
#
# The flags are the least that works for sandboxes:
#   --platform=ptrace   works without /dev/kvm (kvm hung at create here)
#   --network=none      runsc refuses networking in the root namespace under
#                       ptrace; sandboxes without egress have none anyway
#   --host-uds=create   the agent's unix socket, created inside the sandbox,
#                       must appear in the host directory sandboxd dials
set -euo pipefail

name=${RUNTIME_NAME:-runsc}
conf=${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}

if [ "$(id -u)" != 0 ]; then
  echo "gvisor setup: needs root (apt-get, $conf, SIGHUP to dockerd)" >&2
  exit 1
fi
if ! command -v runsc >/dev/null; then
  echo "gvisor setup: installing runsc from Debian"
  # Bounded: a stuck mirror must fail CI, not hang it.
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends runsc >/dev/null ||
    { timeout 120 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends runsc >/dev/null; }
fi
runsc_path=$(command -v runsc)

changed=$(python3 - "$conf" "$name" "$runsc_path" <<'PY'
import json, os, sys
path, name, runsc = sys.argv[1:]
conf = {}
if os.path.exists(path):
    with open(path) as f:
        text = f.read().strip()
        conf = json.loads(text) if text else {}
want = {"path": runsc, "runtimeArgs": ["--platform=ptrace", "--network=none", "--host-uds=create"]}
if conf.get("runtimes", {}).get(name) == want:
    print("no")
    sys.exit(0)
conf.setdefault("runtimes", {})[name] = want
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(conf, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
print("yes")
PY
)

if [ "$changed" = yes ]; then
  pid=$(pidof dockerd || true)
  if [ -z "$pid" ]; then
    echo "gvisor setup: wrote $conf but no dockerd is running to reload" >&2
    exit 1
  fi
  kill -HUP "$pid"
fi
# The reload is asynchronous: wait (bounded) until the daemon lists it.
for _ in $(seq 1 50); do
  if timeout 10 docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q "\"$name\""; then
    echo "gvisor setup: runtime $name ready ($($runsc_path --version 2>/dev/null | head -1))"
    exit 0
  fi
  sleep 0.2
done
echo "gvisor setup: dockerd did not list runtime $name after reload; see its log" >&2
exit 1
