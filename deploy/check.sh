#!/usr/bin/env bash
# Checks the files in deploy/ with the tools that read them, on a copy in a
# temporary directory (nothing is installed, no service is started):
#
#   ssed.service, ssed@.service   systemd-analyze verify (ExecStart pointed
#                                 at the release build, which must exist)
#   nginx.conf, nginx-upstream.conf
#                                 nginx -t, each inside a minimal main config
#   redis.conf                    redis-server started on it (paths moved to
#                                 the temporary directory), its settings read
#                                 back, an XADD, SIGKILL, a restart: the entry
#                                 must still be there (appendfsync always)
#
# A tool that is missing is reported and skipped. Exit status 1 if any check
# failed. Usage: deploy/check.sh   (after `cargo build --release`)
set -uo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
redis_pid=""
cleanup() {
  [ -n "$redis_pid" ] && kill -KILL "$redis_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
failed=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; failed=1; }
skip() { echo "skip  $*"; }

# ----- systemd units
ssed=$(realpath -m "${CARGO_TARGET_DIR:-target}/release/ssed")
if ! command -v systemd-analyze >/dev/null; then
  skip "units: no systemd-analyze"
elif [ ! -x "$ssed" ]; then
  skip "units: no $ssed (cargo build --release)"
else
  for unit in ssed.service ssed@.service; do
    sed "s#/usr/local/bin/ssed#$ssed#" "deploy/$unit" >"$work/$unit"
    name=${unit/@./@1.}   # a template is verified through an instance
    if out=$(systemd-analyze verify "$work/$name" 2>&1) && [ -z "$out" ]; then
      ok "$unit (systemd-analyze verify)"
    else
      bad "$unit: $out"
    fi
  done
fi

# ----- nginx
nginx=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$nginx" ]; then
  skip "nginx: not installed"
else
  for site in nginx.conf nginx-upstream.conf; do
    mkdir -p "$work/nginx"
    cat >"$work/nginx/main.conf" <<EOF
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $work/nginx/cb;
    proxy_temp_path $work/nginx/px;
    fastcgi_temp_path $work/nginx/fc;
    uwsgi_temp_path $work/nginx/uw;
    scgi_temp_path $work/nginx/sc;
    include $PWD/deploy/$site;
}
EOF
    if out=$("$nginx" -t -q -p "$work/nginx" -c "$work/nginx/main.conf" -e "$work/nginx/error.log" 2>&1); then
      ok "$site (nginx -t)"
    else
      bad "$site: $out"
    fi
  done
fi

# ----- redis
redis_up() {
  redis-server deploy/redis.conf --dir "$work/redis" --unixsocket "$work/redis/redis.sock" \
    --pidfile "$work/redis/redis.pid" --logfile "$work/redis/redis.log" --port 0 &
  redis_pid=$!
  for _ in $(seq 100); do
    [ "$(redis-cli -s "$work/redis/redis.sock" PING 2>/dev/null)" = PONG ] && return 0
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.05
  done
  return 1
}
cli() { redis-cli -s "$work/redis/redis.sock" "$@" 2>&1; }
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  skip "redis.conf: no redis-server or redis-cli"
else
  mkdir -p "$work/redis"
  if ! redis_up; then
    bad "redis.conf: redis-server did not start: $(tail -5 "$work/redis/redis.log" 2>/dev/null)"
  else
    settings=$(cli CONFIG GET appendonly appendfsync maxmemory-policy unixsocketperm | paste -sd' ')
    for want in "appendonly yes" "appendfsync always" "maxmemory-policy noeviction" "unixsocketperm 770"; do
      case " $settings " in
        *" $want "*) ;;
        *) bad "redis.conf: want '$want', got: $settings" ;;
      esac
    done
    id=$(cli XADD ssed:log MAXLEN '~' 100 '*' data check)
    ttl=$(cli TTL ssed:log)
    kill -KILL "$redis_pid"
    wait "$redis_pid" 2>/dev/null
    redis_pid=""
    if ! redis_up; then
      bad "redis.conf: no restart after SIGKILL"
    elif [ "$(cli XRANGE ssed:log - + | head -1)" != "$id" ] || [ "$ttl" != -1 ]; then
      bad "redis.conf: entry $id (ttl $ttl) not kept across SIGKILL"
    else
      ok "redis.conf (redis-server: settings, XADD survives SIGKILL)"
    fi
    cli SHUTDOWN NOSAVE >/dev/null
    wait "$redis_pid" 2>/dev/null
    redis_pid=""
  fi
fi
exit "$failed"
