# shellcheck shell=bash
# A private redis-server for scripts (demo, benchmarks): loopback only, a free port, its own
# data folder, stopped by as_redis_stop (call it from an EXIT trap). Source this file.
#
#   as_redis_start DIR [redis-server options...]   starts it with DIR as its data folder, waits
#                                                  for PING; sets AS_REDIS_PORT, AS_REDIS_PID
#   as_redis_stop                                  stops it (SIGTERM, then SIGKILL after 5 s)
# Defaults: no RDB snapshots, AOF off; pass e.g. --appendonly yes --appendfsync always.

as_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

as_redis_start() {
  local dir=$1
  shift
  mkdir -p "${dir}"
  local attempt
  for attempt in 1 2 3 4 5; do
    AS_REDIS_PORT="$(as_free_port)"
    redis-server --bind 127.0.0.1 --port "${AS_REDIS_PORT}" --dir "${dir}" --save "" \
      --appendonly no --daemonize no "$@" > "${dir}/redis.log" 2>&1 &
    AS_REDIS_PID=$!
    local _
    for _ in $(seq 200); do
      if redis-cli -p "${AS_REDIS_PORT}" PING > /dev/null 2>&1; then
        return 0
      fi
      if ! kill -0 "${AS_REDIS_PID}" 2> /dev/null; then
        break # exited (port taken between as_free_port and bind?): try another port
      fi
      sleep 0.05
    done
    as_redis_stop
  done
  echo "error: redis-server did not start (attempt ${attempt}); log ${dir}/redis.log:" >&2
  tail -n 20 "${dir}/redis.log" >&2 || true
  return 1
}

as_redis_stop() {
  if [[ -n "${AS_REDIS_PID:-}" ]] && kill -0 "${AS_REDIS_PID}" 2> /dev/null; then
    kill "${AS_REDIS_PID}" 2> /dev/null || true
    local _
    for _ in $(seq 100); do
      kill -0 "${AS_REDIS_PID}" 2> /dev/null || break
      sleep 0.05
    done
    kill -9 "${AS_REDIS_PID}" 2> /dev/null || true
    wait "${AS_REDIS_PID}" 2> /dev/null || true
  fi
  AS_REDIS_PID=""
}
