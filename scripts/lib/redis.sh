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

# The "pinned" placement of the benchmarks: Redis (each of its threads) on CPU 0, everything
# else on the other CPUs, so Redis never waits behind the switch or the load client for its
# core (on 2 vCPUs that wait, and the wake-ups across cores it causes, make the p99 tail).
#   as_pinned_redis_args   the redis-server options that keep Redis on CPU 0
#   as_other_cpus          the other CPUs, comma-separated ("1", "1,2,3"): a taskset list and
#                          the body of [switch] cpus; fails on 1 CPU
as_pinned_redis_args() {
  echo --server_cpulist 0 --bio_cpulist 0 --aof_rewrite_cpulist 0 --bgsave_cpulist 0
}

as_other_cpus() {
  local n
  n="$(nproc)"
  if ((n < 2)); then
    echo "error: the pinned placement needs 2 CPUs, this process has ${n}" >&2
    return 1
  fi
  seq -s, 1 $((n - 1))
}
