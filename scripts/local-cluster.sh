#!/usr/bin/env bash
# `make cluster`: three nodes of build/little-key-value on 127.0.0.1 ports
# 8081-8083, each with its data directory under ./data-cluster/ (apart from
# the single node's ./data), logs in ./data-cluster/n<i>.log. Prints how to
# talk to them; Ctrl-C (or SIGTERM) stops all three with SIGTERM and waits.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=./build/little-key-value
base=${CLUSTER_DIR:-./data-cluster}
ports=(8081 8082 8083)
mkdir -p "$base"
pids=()

stop_all() {
  trap - INT TERM EXIT
  echo
  echo "cluster: stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "cluster: stopped (data kept in $base)"
  exit 0
}
trap stop_all INT TERM EXIT

for i in 0 1 2; do
  self=127.0.0.1:${ports[$i]}
  peers=()
  for j in 0 1 2; do [ "$j" -ne "$i" ] && peers+=("127.0.0.1:${ports[$j]}"); done
  peer_list=$(IFS=,; echo "${peers[*]}")
  ADDR=$self PEERS=$peer_list "$bin" --bind 127.0.0.1 --working-dir "$base/n$((i + 1))" \
    >>"$base/n$((i + 1)).log" 2>&1 &
  pids+=($!)
done

# Ready when every node answers /health and one of them leads.
leader=""
for _ in $(seq 1 100); do
  leader=$(curl -s --max-time 1 "http://127.0.0.1:${ports[0]}/cluster/info" 2>/dev/null |
           sed -n 's/.*"leader":"\([^"]*\)".*/\1/p' || true)
  [ -n "$leader" ] && break
  sleep 0.1
done

cat <<INFO
cluster: 3 nodes on 127.0.0.1:${ports[0]}, ${ports[1]}, ${ports[2]} (pids ${pids[*]})
cluster: leader ${leader:-not elected yet}; data and logs in $base/

  curl -L -X PUT --data-binary hello http://127.0.0.1:${ports[0]}/kv/greeting   # -L follows a follower's 307
  curl -L http://127.0.0.1:${ports[1]}/kv/greeting
  curl http://127.0.0.1:${ports[2]}/cluster/info
  curl -X POST http://127.0.0.1:${ports[0]}/cluster/leader                       # move leadership

Ctrl-C stops all three.
INFO

# Waits until a node exits (or Ctrl-C); then stops the rest.
wait -n "${pids[@]}" || true
echo "cluster: a node exited; see $base/n*.log"
