#!/usr/bin/env bash
# Issue 11's two figures, with the project's own load tool (BENCHMARKS.md):
#
#   1. connecting N subscribers with tokens (--jwt-secret, ?token=) against
#      the same without, interleaved rounds;
#   2. single-event fan-out p99 to N subscribers with 1,000 distinct topic
#      patterns held by other streams, against none. Events go to a topic
#      with depth (bench/x/load), so the pattern index is looked up for
#      every prefix, as it would be in use.
#
# Server on core 0, load tool on core 1. Prints one line per run and the
# medians. Loopback only. Usage: tools/load/tokens-bench.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-19000}
ROUNDS=${2:-3}
SECRET="a-benchmark-secret-of-at-least-32-bytes"
cargo build --quiet --release --bin ssed && cargo build --quiet --release -p ssed-load
SSED=target/release/ssed
LOAD=target/release/ssed-load
port=$((22000 + RANDOM % 2000))

# An HS256 token signed with SECRET (claims as JSON), by Python's standard
# library: a benchmark, not a test, so any correct signer will do.
token() {
  python3 - "$SECRET" "$1" <<'EOF'
import base64, hashlib, hmac, json, sys
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(sys.argv[2].encode())
sig = b64(hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
EOF
}
READER=$(token '{"exp": 4102444800, "ssed": {"subscribe": ["*"]}}')
WRITER=$(token '{"exp": 4102444800, "ssed": {"publish": ["*"]}}')

# Starts ssed on a fresh port with "$@"; sets $pid and $port.
start() {
  port=$((port + 1))
  taskset -c 0 "$SSED" --listen "127.0.0.1:$port" --tick 0 --heartbeat 15 "$@" 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null -m 1 "http://127.0.0.1:$port/healthz" && return
    sleep 0.05
  done
  echo "ssed did not start" >&2; exit 1
}
stop() { kill -INT "$pid"; wait "$pid" 2>/dev/null || true; }
figure() { python3 -c "import json,sys; d=json.loads(sys.stdin.readlines()[-1]); print($1)"; }

# 1,000 idle streams, each holding its own pattern, until killed.
hold_patterns() {
  python3 - "$port" <<'EOF' &
import resource, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall(f"GET /events?topic=bench/{i}/* HTTP/1.1\r\nHost: b\r\n\r\n".encode())
    held.append(s)
time.sleep(3600)
EOF
  holder=$!
  for _ in $(seq 200); do
    [ "$(curl -s "http://127.0.0.1:$port/stats" | figure 'd["subscribers"]' 2>/dev/null || echo 0)" -ge 1000 ] && return
    sleep 0.05
  done
}

echo "== connect $N subscribers, without and with tokens"
for round in $(seq "$ROUNDS"); do
  start
  plain=$(taskset -c 1 "$LOAD" --target "127.0.0.1:$port" --pid "$pid" --subscribers "$N" \
      --singles 0 --burst 0 --seq-burst 0 --idle-secs 1 | figure 'd["connect_s"]')
  stop
  start --jwt-secret "$SECRET"
  tokens=$(taskset -c 1 "$LOAD" --target "127.0.0.1:$port" --pid "$pid" --subscribers "$N" \
      --subscribe-path "/events?token=$READER" --publish-header "Authorization: Bearer $WRITER" \
      --singles 0 --burst 0 --seq-burst 0 --idle-secs 1 | figure 'd["connect_s"]')
  stop
  echo "round $round: connect without $plain s, with tokens $tokens s"
done

echo "== single-event fan-out to $((N / 2)) subscribers, with 0 and 1,000 patterns held"
for round in $(seq "$ROUNDS"); do
  for patterns in 0 1000; do
    start
    holder=""
    [ "$patterns" = 1000 ] && hold_patterns
    p99=$(taskset -c 1 "$LOAD" --target "127.0.0.1:$port" --pid "$pid" --subscribers $((N / 2)) \
        --publish-url "http://127.0.0.1:$port/publish?topic=bench/x/load" \
        --burst 0 --seq-burst 0 --idle-secs 1 | figure 'd["single"]["p99_ms"], d["missed"], d["duplicated"]')
    [ -n "$holder" ] && kill "$holder" 2>/dev/null
    stop
    echo "round $round: $patterns patterns held: single p99 ms, missed, duplicated = $p99"
  done
done
