#!/usr/bin/env bash
# Starts a three-node control cluster as three local processes (make run-all).
#
#   node             API     ops (loopback)     Raft
#   gateway          :8080   127.0.0.1:9090     127.0.0.1:7001
#   scheduler        :8081   127.0.0.1:9091     127.0.0.1:7002
#   session-manager  :8082   127.0.0.1:9092     127.0.0.1:7003
#
# Every node serves the whole API; writes are forwarded to the leader. All
# three share one SANDBOX_STATE_DIR (agent sockets) and cluster name, so any
# node can run commands in any sandbox. Ctrl-C stops all three.
#
#   run-all.sh BIN_DIR DATA_DIR
set -euo pipefail

BIN=${1:?usage: run-all.sh BIN_DIR DATA_DIR}
DATA=${2:?usage: run-all.sh BIN_DIR DATA_DIR}
BIN=$(cd "$BIN" && pwd)
mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)

names=(gateway scheduler session-manager)
api=(127.0.0.1:8080 127.0.0.1:8081 127.0.0.1:8082)
ops=(127.0.0.1:9090 127.0.0.1:9091 127.0.0.1:9092)
raft=(127.0.0.1:7001 127.0.0.1:7002 127.0.0.1:7003)
peers=""
for i in 0 1 2; do
	peers+="${peers:+,}${names[$i]}=${raft[$i]}"
done

pids=()
stop() {
	trap - INT TERM EXIT
	echo "run-all: stopping ${#pids[@]} nodes" >&2
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	# sandboxd drains for up to 30 s; wait is bounded by that.
	wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

for i in 0 1 2; do
	n=${names[$i]}
	mkdir -p "$DATA/$n"
	# Prefix every line with the node name so the interleaved logs stay readable.
	SANDBOX_AGENT_BIN=${SANDBOX_AGENT_BIN:-$BIN/sandbox-agent} \
		"$BIN/sandboxd" -node-id "$n" -data-dir "$DATA/$n" \
		-listen "${api[$i]}" -ops-listen "${ops[$i]}" -raft-addr "${raft[$i]}" \
		-peers "$peers" -sandbox-dir "$DATA/sb" \
		-cluster-name "${CLUSTER_NAME:-cloud-sandbox}" \
		> >(sed -u "s/^/[$n] /") 2>&1 &
	pids+=($!)
done
echo "run-all: API on :8080 (gateway), :8081 (scheduler), :8082 (session-manager); Ctrl-C stops all" >&2
# Any node exiting ends the run: a half cluster is not what was asked for.
wait -n "${pids[@]}" || true
