#!/usr/bin/env bash
# Issue 10's figures, with the project's own load tool (BENCHMARKS.md):
# fan-out through the Redis bus against a process on its own.
#
#   tools/load/bus-bench.sh compare [ROUNDS]   interleaved rounds of
#       solo-19k   one ssed, no bus, 19,000 subscribers
#       bus1-19k   one ssed over the bus, 19,000 subscribers
#       bus2-19k   two ssed with --reuseport over the bus, 19,000 in all
#       bus2-38k   two ssed with --reuseport over the bus, 38,000 in all
#                  (one process cannot hold 38,000: its fd limit is 20,000)
#   tools/load/bus-bench.sh spread N PROCS [WORKERS [LOAD FLAGS...]]
#       N subscribers over PROCS ssed processes sharing one port over the
#       bus, held by WORKERS load-tool processes (default: one per 16,000);
#       single events only (a burst to 100,000 is 50 M deliveries); more
#       ssed-load flags after WORKERS (e.g. --singles 3 for a million).
#
# Redis runs from deploy/redis.conf (appendonly, fsync always) in a temp
# dir on a Unix socket. The --pid list includes Redis, so "server CPU per
# delivery" is the bus's whole cost: every ssed plus Redis. Nothing is
# pinned: 2 cores hold Redis, the servers and the load tool's workers.
# Prints the load tool's report per run and one summary line per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:-compare}
cargo build --quiet --release --bin ssed && cargo build --quiet --release -p ssed-load
SSED=$PWD/target/release/ssed
LOAD=$PWD/target/release/ssed-load
ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
port=$((23000 + RANDOM % 2000))
servers=()
redis_pid=
cleanup() {
  for p in "${servers[@]}" $redis_pid; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/summary.py" <<'EOF'
import json, sys
d = json.loads(sys.stdin.read())
s, p = d.get("single") or {}, d.get("pipelined") or {}
print("SUMMARY %s: connected %d/%d in %.2f s; RSS/sub %.0f B; single p50 %s p99 %s ms, %.3f us/delivery; "
      "pipelined %.0f/s, %.3f us/delivery; missed %d duplicated %d" % (
      d["label"], d["connected"], d["subscribers"], d["connect_s"], d["rss_per_subscriber"] or 0,
      s.get("p50_ms"), s.get("p99_ms"), s.get("server_cpu_us_per_delivery") or 0,
      p.get("deliveries_per_s") or 0, p.get("server_cpu_us_per_delivery") or 0, d["missed"], d["duplicated"]))
EOF

start_redis() {
  rm -rf "$work/redis" && mkdir -p "$work/redis"
  redis-server deploy/redis.conf --dir "$work/redis" --unixsocket "$work/redis/redis.sock" \
    --pidfile "$work/redis/redis.pid" --logfile "$work/redis/redis.log" --port 0 --daemonize yes
  for _ in $(seq 100); do
    [ -s "$work/redis/redis.pid" ] && [ -S "$work/redis/redis.sock" ] && break
    sleep 0.05
  done
  redis_pid=$(cat "$work/redis/redis.pid")
}
stop_redis() { kill -9 "$redis_pid" 2>/dev/null || true; redis_pid=; }

# Starts PROCS ssed on a fresh port (with --bus when BUS=1); sets $port
# and $servers.
start() {
  local procs=$1 bus=$2 args=()
  port=$((port + 1))
  servers=()
  [ "$bus" = 1 ] && args+=(--bus "redis+unix://$work/redis/redis.sock")
  [ "$procs" -gt 1 ] && args+=(--reuseport)
  for _ in $(seq "$procs"); do
    "$SSED" --listen "127.0.0.1:$port" --tick 0 "${args[@]}" 2>>"$work/ssed.log" &
    servers+=($!)
  done
  # Every process answers 200 on /healthz once its bus is up; with
  # --reuseport each probe lands on one of them, so ask until all did.
  for _ in $(seq 200); do
    local up=0
    for _ in $(seq $((procs * 4))); do
      curl -sf -o /dev/null -m 1 "http://127.0.0.1:$port/healthz" && up=$((up + 1))
    done
    [ "$up" -eq $((procs * 4)) ] && return
    sleep 0.05
  done
  echo "ssed did not start" >&2; exit 1
}
stop() {
  for p in "${servers[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  for p in "${servers[@]}"; do wait "$p" 2>/dev/null || true; done
  servers=()
}

# One run: name, processes, bus (0/1), subscribers, workers, extra load flags.
run() {
  local name=$1 procs=$2 bus=$3 n=$4 workers=$5; shift 5
  [ "$bus" = 1 ] && start_redis
  start "$procs" "$bus"
  local pids
  pids=$(IFS=,; echo "${servers[*]}${redis_pid:+,$redis_pid}")
  "$LOAD" --target "127.0.0.1:$port" --pid "$pids" --subscribers "$n" --workers "$workers" \
    --label "$name" --connect-timeout 120 --phase-timeout 150 --duration 900 "$@" \
    | tee "$work/run.txt"
  stop
  [ "$bus" = 1 ] && stop_redis
  tail -1 "$work/run.txt" | python3 "$work/summary.py" | tee -a "$work/summary.txt"
}

case "$MODE" in
  compare)
    rounds=${2:-3}
    for r in $(seq "$rounds"); do
      run "solo-19k r$r" 1 0 19000 2 --burst 500 --seq-burst 0
      run "bus1-19k r$r" 1 1 19000 2 --burst 500 --seq-burst 0
      run "bus2-19k r$r" 2 1 19000 2 --burst 500 --seq-burst 0
      run "bus2-38k r$r" 2 1 38000 3 --burst 500 --seq-burst 0
    done
    ;;
  spread)
    n=${2:?N}; procs=${3:?PROCS}; workers=${4:-$(((n + 15999) / 16000))}
    shift $(($# < 4 ? $# : 4))
    run "spread-$n-over-$procs" "$procs" 1 "$n" "$workers" --burst 0 --seq-burst 0 "$@"
    ;;
  *) echo "usage: $0 compare [ROUNDS] | spread N PROCS [WORKERS]" >&2; exit 2 ;;
esac
echo
cat "$work/summary.txt"
