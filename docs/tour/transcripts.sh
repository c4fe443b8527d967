#!/usr/bin/env bash
# Regenerates every transcript of the tour from the real ssed (debug build)
# and writes it into the chapters; with --check, writes nothing and fails,
# printing a diff, if a chapter differs from what ssed does today.
#
#   docs/tour/transcripts.sh            # after changing what goes on the wire
#   docs/tour/transcripts.sh --check    # what test.sh runs
#   docs/tour/transcripts.sh --only gap slow
#
# Needs python3 (standard library only). Each scenario starts its own ssed on
# 127.0.0.1 port 0 and kills it when done; about 10 s in all.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONDONTWRITEBYTECODE=1
cargo build --quiet --bin ssed
target=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
exec python3 docs/tour/transcripts.py --bin "$target/debug/ssed" "$@"
