#!/usr/bin/env bash
# Start or stop a throwaway redis-server for the end-to-end benchmark.
#
#   bench/redis.sh start <port> <dir>   start on 127.0.0.1:<port>, data/log/pid in <dir>
#   bench/redis.sh stop <dir>           stop the server started with that <dir>
#
# No systemd: the server is daemonized by redis-server itself and tracked by the
# pid file in <dir>. Persistence is off (--save '' --appendonly no): the
# benchmark's queues are throwaway, and an fsync'ing AOF would measure the disk,
# not the queue. redis-server comes from the Debian package `redis-server`.
set -euo pipefail

die() {
  echo "redis.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start <port> <dir> | stop <dir>" >&2
  exit 2
}

ping_port() {
  redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG
}

cmd_start() {
  local port=$1 dir=$2
  [[ $port =~ ^[0-9]+$ ]] || die "port must be a number, got '$port'"
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install -y redis-server)"
  command -v redis-cli >/dev/null || die "redis-cli not found (apt-get install -y redis-server)"
  if ping_port "$port"; then
    die "something already answers PING on 127.0.0.1:$port; pick another port or stop it"
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  redis-server \
    --bind 127.0.0.1 \
    --port "$port" \
    --dir "$dir" \
    --save '' \
    --appendonly no \
    --protected-mode yes \
    --maxmemory-policy noeviction \
    --daemonize yes \
    --pidfile "$dir/redis.pid" \
    --logfile "$dir/redis.log" ||
    die "redis-server failed to start on port $port (see $dir/redis.log)"
  echo "$port" >"$dir/redis.port"
  local i
  for i in $(seq 1 100); do
    if ping_port "$port"; then
      echo "redis.sh: redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') ready on 127.0.0.1:$port (dir $dir)" >&2
      return 0
    fi
    sleep 0.1
  done
  die "redis-server on port $port did not answer PING within 10 s (see $dir/redis.log)"
}

cmd_stop() {
  local dir=$1
  [[ -d $dir ]] || die "no such directory '$dir'"
  local pid="" port=""
  [[ -f $dir/redis.pid ]] && pid=$(cat "$dir/redis.pid")
  [[ -f $dir/redis.port ]] && port=$(cat "$dir/redis.port")
  if [[ -n $port ]] && ping_port "$port"; then
    redis-cli -h 127.0.0.1 -p "$port" shutdown nosave >/dev/null 2>&1 || true
  elif [[ -n $pid ]]; then
    kill "$pid" 2>/dev/null || true
  else
    echo "redis.sh: nothing to stop in $dir" >&2
    return 0
  fi
  local i
  if [[ -n $pid ]]; then
    for i in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/redis.pid" "$dir/redis.port"
  echo "redis.sh: stopped redis-server${port:+ on port $port}" >&2
}

case ${1:-} in
  start)
    [[ $# -eq 3 ]] || usage
    cmd_start "$2" "$3"
    ;;
  stop)
    [[ $# -eq 2 ]] || usage
    cmd_stop "$2"
    ;;
  *) usage ;;
esac
