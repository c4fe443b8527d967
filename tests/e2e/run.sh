#!/usr/bin/env bash
# End-to-end tests: ssed with real clients and a real proxy.
#
#   headless Chromium (the demo page's EventSource), the `eventsource` npm
#   package, httpx + httpx-sse, curl, and nginx with deploy/nginx.conf; and
#   the bus (--bus): several ssed processes on a throwaway redis-server.
#
# Installs what a fresh machine lacks, without asking (CI runs with CI=true
# and no stdin): Debian's chromium, nginx and redis-server, the npm packages into
# tests/e2e/node_modules, the Python packages into tests/e2e/.venv. Builds
# target/release/ssed (or in $CARGO_TARGET_DIR, when set). Everything listens
# on loopback only; every test starts its own ssed on port 0. Reruns are fast:
# nothing is installed twice.
#
# Ends with one line `e2e: N passed, N failed` and exits non-zero if anything
# failed. Artifacts (screenshot, latency, runner reports): tests/e2e/artifacts/.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "$0")" && pwd)
REPO_DIR=$(cd "$E2E_DIR/../.." && pwd)
ARTIFACTS="$E2E_DIR/artifacts"
RUNNER_TIMEOUT=${E2E_RUNNER_TIMEOUT:-600}
export CI=${CI:-} DEBIAN_FRONTEND=noninteractive
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1

say() { printf '[e2e] %s\n' "$*"; }
started=$(date +%s)

# Every runner runs in its own process group; whatever it leaves behind
# (ssed, nginx, chromium) is killed with the group, on any exit.
groups=()
cleanup() {
  local pgid
  for pgid in "${groups[@]}"; do
    kill -TERM -- "-$pgid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# --- system packages ---------------------------------------------------------
missing=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# The bus tests start redis-server processes of their own (temporary
# directories, Unix sockets); no system service is used.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
fi
NGINX_PATH=$(command -v nginx || echo /usr/sbin/nginx)
export NGINX_PATH CHROMIUM_PATH=/usr/bin/chromium

# --- npm packages --------------------------------------------------------------
cd "$E2E_DIR"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] \
  || [ package.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error </dev/null
fi

# --- Python packages ---------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  say "creating the Python venv"
  if ! python3 -m venv .venv 2>/dev/null; then
    rm -rf .venv
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends python3-venv </dev/null
    /usr/bin/python3 -m venv .venv
  fi
fi
if ! cmp -s requirements.txt .venv/.installed-requirements.txt; then
  say "installing Python packages"
  .venv/bin/python -m pip install -q -r requirements.txt </dev/null
  cp requirements.txt .venv/.installed-requirements.txt
fi

# --- the binary ---------------------------------------------------------------------
say "cargo build --release"
(cd "$REPO_DIR" && cargo build --release --quiet)
# Where cargo put it: target/ unless CARGO_TARGET_DIR says otherwise (a
# relative one is taken from the repo, where cargo ran).
target_dir=${CARGO_TARGET_DIR:-target}
case $target_dir in /*) ;; *) target_dir="$REPO_DIR/$target_dir" ;; esac
export SSED_BIN="$target_dir/release/ssed"
[ -x "$SSED_BIN" ] || { say "no $SSED_BIN after the build"; exit 1; }

rm -rf "$ARTIFACTS"
mkdir -p "$ARTIFACTS"

# --- run -------------------------------------------------------------------------------
# run NAME CMD...: runs one test runner in its own process group, with a
# deadline; afterwards kills anything left in that group.
run() {
  local name=$1 pid status=0
  shift
  say "running $name"
  setsid timeout --kill-after=10 "$RUNNER_TIMEOUT" "$@" </dev/null &
  pid=$!
  groups+=("$pid")
  wait "$pid" || status=$?
  kill -TERM -- "-$pid" 2>/dev/null || true
  say "$name finished with status $status"
  return 0
}

run "node --test (Chromium, eventsource, curl, nginx, the bus)" \
  node --test \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$ARTIFACTS/node.tap" \
  js/*.test.mjs

run "pytest (httpx + httpx-sse, the bus)" \
  .venv/bin/python -m pytest -p no:cacheprovider -q -rs \
  --junitxml="$ARTIFACTS/pytest.xml" py

# --- deploy/ssed.service, checked when systemd-analyze exists (not a test) ----------
if command -v systemd-analyze >/dev/null 2>&1; then
  unit_dir=$(mktemp -d)
  sed "s#/usr/local/bin/ssed#$SSED_BIN#" "$REPO_DIR/deploy/ssed.service" >"$unit_dir/ssed.service"
  if systemd-analyze verify "$unit_dir/ssed.service" >"$ARTIFACTS/systemd-verify.txt" 2>&1; then
    say "systemd-analyze verify deploy/ssed.service: ok"
  else
    say "systemd-analyze verify deploy/ssed.service complained (see artifacts/systemd-verify.txt):"
    sed 's/^/    /' "$ARTIFACTS/systemd-verify.txt"
  fi
  rm -rf "$unit_dir"
fi

# --- tally ---------------------------------------------------------------------------------
passed=0 failed=0 skipped=0
tap_count() { sed -n "s/^# $1 \([0-9][0-9]*\)$/\1/p" "$ARTIFACTS/node.tap" | tail -1; }
if [ -s "$ARTIFACTS/node.tap" ] && [ -n "$(tap_count pass)" ]; then
  passed=$((passed + $(tap_count pass)))
  failed=$((failed + $(tap_count fail) + $(tap_count cancelled)))
  skipped=$((skipped + $(tap_count skipped) + $(tap_count todo)))
else
  say "node --test left no summary: counted as one failure"
  failed=$((failed + 1))
fi
if [ -s "$ARTIFACTS/pytest.xml" ]; then
  read -r p f s < <(.venv/bin/python - "$ARTIFACTS/pytest.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
tests = fail = skip = 0
for suite in suites:
    tests += int(suite.get("tests", 0))
    fail += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skip += int(suite.get("skipped", 0))
print(tests - fail - skip, fail, skip)
EOF
  )
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
else
  say "pytest left no report: counted as one failure"
  failed=$((failed + 1))
fi

echo
[ -f "$ARTIFACTS/nginx-latency.txt" ] && say "$(cat "$ARTIFACTS/nginx-latency.txt")"
for shot in "$ARTIFACTS"/demo-page*.png; do
  [ -f "$shot" ] && say "screenshot: ${shot#"$REPO_DIR"/}"
done
say "took $(($(date +%s) - started)) s"
if [ "$skipped" -gt 0 ]; then
  echo "e2e: $passed passed, $failed failed, $skipped skipped"
else
  echo "e2e: $passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
