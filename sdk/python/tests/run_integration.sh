#!/usr/bin/env bash
# Starts a single-node sandboxd on free loopback ports with a temporary data dir,
# waits for /health, runs the SDK's integration tests against it, and stops it.
# Usage: sdk/python/tests/run_integration.sh
set -euo pipefail

# --- knobs (flag names live here so they can follow sandboxd's CLI) ----------
FLAG_DATA_DIR="${FLAG_DATA_DIR:--data-dir}"
FLAG_LISTEN="${FLAG_LISTEN:--listen}"
FLAG_OPS_LISTEN="${FLAG_OPS_LISTEN:--ops-listen}"
FLAG_RAFT_ADDR="${FLAG_RAFT_ADDR:--raft-addr}"
FLAG_BOOTSTRAP="${FLAG_BOOTSTRAP:--bootstrap}"
FLAG_CLUSTER_NAME="${FLAG_CLUSTER_NAME:--cluster-name}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-120}"   # seconds to wait for /health
export POOL_MIN_SIZE="${POOL_MIN_SIZE:-2}"
export POOL_MAX_SIZE="${POOL_MAX_SIZE:-10}"
# Access tokens that expire within the run: every test then goes through the
# SDK's refresh, and TokenExpiryTest waits past the expiry on purpose.
export ACCESS_TOKEN_TTL="${ACCESS_TOKEN_TTL:-3}"
# A disk that holds the 1 GiB file of FilesTest (a tmpfs: charged to memory
# only as it fills).
export SANDBOX_DISK_MB="${SANDBOX_DISK_MB:-1100}"
# ------------------------------------------------------------------------------

SDK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$SDK_DIR/../.." && pwd)"
PYTHON="${PYTHON:-python3}"

free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
port_free() {
  "$PYTHON" -c 'import socket,sys; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.close()' "$1" 2>/dev/null
}

make -C "$REPO_ROOT" build image
export SANDBOX_AGENT_BIN="${SANDBOX_AGENT_BIN:-$REPO_ROOT/bin/sandbox-agent}"

# Port 8080 when it is free, so the guide's quick start runs with its own URL unchanged.
if port_free 8080; then API_PORT=8080; else API_PORT="$(free_port)"; fi
OPS_PORT="$(free_port)"
RAFT_PORT="$(free_port)"
DATA_DIR="$(mktemp -d -t sandboxd-it.XXXXXX)"
# A cluster name of our own labels every container this server makes, so the
# cleanup removes exactly those (sandboxd keeps idle pool containers on exit).
CLUSTER="sdk-it-$(basename "$DATA_DIR" | tr -cd 'a-zA-Z0-9' | tr 'A-Z' 'a-z')"
LOG="$DATA_DIR/sandboxd.log"

"$REPO_ROOT/bin/sandboxd" \
  "$FLAG_DATA_DIR" "$DATA_DIR/n1" \
  "$FLAG_LISTEN" "127.0.0.1:$API_PORT" \
  "$FLAG_OPS_LISTEN" "127.0.0.1:$OPS_PORT" \
  "$FLAG_RAFT_ADDR" "127.0.0.1:$RAFT_PORT" \
  "$FLAG_CLUSTER_NAME" "$CLUSTER" \
  "$FLAG_BOOTSTRAP" >"$LOG" 2>&1 &
PID=$!

cleanup() {
  local rc=$?
  if kill -0 "$PID" 2>/dev/null; then
    kill -TERM "$PID" 2>/dev/null || true
    # Bounded wait for a graceful stop, then force.
    for _ in $(seq 1 60); do kill -0 "$PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$PID" 2>/dev/null || true
  fi
  local left
  left="$(docker ps -aq --filter "label=cloud-sandbox.cluster=$CLUSTER" 2>/dev/null || true)"
  if [ -n "$left" ]; then docker rm -f $left >/dev/null || true; fi
  if [ "$rc" -ne 0 ]; then echo "--- sandboxd log (last 50 lines) ---" >&2; tail -n 50 "$LOG" >&2 || true; fi
  rm -rf "$DATA_DIR"
  exit "$rc"
}
trap cleanup EXIT INT TERM

export CLOUD_SANDBOX_URL="http://127.0.0.1:$API_PORT"
if [ "$API_PORT" = 8080 ]; then export CLOUD_SANDBOX_URL="http://localhost:8080"; fi

deadline=$((SECONDS + HEALTH_TIMEOUT))
until "$PYTHON" -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1]+"/health", timeout=2)' \
    "$CLOUD_SANDBOX_URL" 2>/dev/null; do
  if ! kill -0 "$PID" 2>/dev/null; then echo "sandboxd exited before becoming healthy" >&2; exit 1; fi
  if [ "$SECONDS" -ge "$deadline" ]; then echo "sandboxd not healthy after ${HEALTH_TIMEOUT}s" >&2; exit 1; fi
  sleep 0.5
done
echo "sandboxd healthy at $CLOUD_SANDBOX_URL (pid $PID, data $DATA_DIR)"

cd "$SDK_DIR"
"$PYTHON" -m unittest discover -s tests -p 'test_integration.py' -v "$@"
