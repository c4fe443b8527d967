#!/usr/bin/env bash
# Runs every check CI runs, in the order CI runs them:
#   formatting, lints, docs, unit + integration tests, the tour's
#   transcripts (docs/tour/), a soak, then the end-to-end suite (real
#   browsers, client libraries and nginx; see tests/e2e/).
# Installs what a fresh machine lacks. Safe to run again and again.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

# --workspace: the load and soak tools are packages of their own.
step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

# The daemon must also build on its six runtime dependencies alone, without
# subscriber tokens (the `jwt` feature): lint it and run its unit tests too.
step "cargo clippy --no-default-features (no jwt: mio, httparse, log, env_logger, slab, libc)"
cargo clippy --all-targets --no-default-features -- -D warnings

step "cargo test --no-default-features (unit tests, and the binary's flags)"
cargo test --no-default-features --lib --test cli

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "cargo test --workspace"
cargo test --workspace

# The bus's tests (tests/bus/) start redis-server processes of their own, in
# temporary directories, and kill them at will: no system service is used.
# They are #[ignore]d so that `cargo test` passes without Redis; here they run.
step "redis-server (Debian package), for the bus's tests"
if ! command -v redis-server >/dev/null; then
  as_root=""
  [ "$(id -u)" -eq 0 ] || as_root="sudo"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq redis-server >/dev/null
fi
redis-server --version

step "cargo test --test bus -- --ignored (real Redis, real ssed processes)"
cargo test --test bus -- --ignored

# The tour's transcripts are real exchanges with this ssed: re-run, and
# compared with what the chapters show (a diff, and a failure, on drift).
step "tour transcripts (docs/tour/transcripts.sh --check)"
if ! command -v python3 >/dev/null 2>&1; then
  as_root=""
  [ "$(id -u)" -eq 0 ] || as_root="sudo"
  $as_root apt-get update -qq && $as_root apt-get install -y -qq python3 >/dev/null
fi
docs/tour/transcripts.sh --check

step "soak: 20 s of publishers, subscribers and garbage at once (tools/soak)"
cargo build --quiet --bin ssed
cargo run --quiet -p ssed-soak -- --bin target/debug/ssed --duration 20

step "soak over the bus: 10 s, 2 processes on one redis-server (tools/soak --bus-processes 2)"
cargo run --quiet -p ssed-soak -- --bin target/debug/ssed --duration 10 --bus-processes 2

if [ -x tests/e2e/run.sh ]; then
  step "end-to-end tests (tests/e2e/run.sh)"
  tests/e2e/run.sh
fi

# After the end-to-end tests, which install nginx: nginx -t needs it.
step "deploy/check.sh (the units, the nginx files, redis.conf on a real redis-server)"
bash deploy/check.sh

step "all checks passed"
