#!/usr/bin/env bash
# User-space instructions per single-event delivery, ssed against the floor,
# counted by callgrind (deterministic, unlike timings on a shared machine):
# the server's instructions for 20 single events to 1,000 subscribers, minus
# those of the same run with none, divided by the 20,000 deliveries.
# Loopback only. Usage: tools/load/instructions-per-delivery.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --quiet --release --bin ssed && cargo build --quiet --release -p ssed-load --example floor
cargo build --quiet --release -p ssed-load
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
port=$((26000 + RANDOM % 2000))

# Runs $1 (ssed or floor) under callgrind with $2 single events; prints the
# instructions it executed up to the end of the load run.
count() {
  port=$((port + 1))
  local extra=() pid
  if [ "$1" = ssed ]; then
    valgrind --tool=callgrind --callgrind-out-file="$work/cg" \
      target/release/ssed --listen "127.0.0.1:$port" --tick 0 --heartbeat 0 2>/dev/null &
  else
    valgrind --tool=callgrind --callgrind-out-file="$work/cg" \
      target/release/examples/floor "127.0.0.1:$port" 2>/dev/null &
    extra=(--subscribe-path /sub --publish-url "http://127.0.0.1:$port/pub")
  fi
  pid=$!
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  target/release/ssed-load --target "127.0.0.1:$port" --subscribers 1000 "${extra[@]}" \
    --singles "$2" --burst 0 --seq-burst 0 --idle-secs 1 --connect-timeout 120 --phase-timeout 300 \
    >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  grep '^summary:' "$work"/cg.* | cut -d' ' -f2
  rm -f "$work"/cg*
}

for server in ssed floor; do
  none=$(count "$server" 0)
  twenty=$(count "$server" 20)
  echo "$server: $(((twenty - none) / 20000)) instructions per delivery"
done
