#!/usr/bin/env bash
# Make sure a Redis server answers on 127.0.0.1:6379 (REDIS_URL's default); start one if not.
set -euo pipefail
host=127.0.0.1 port=6379

up() { (exec 3<>"/dev/tcp/$host/$port" && printf 'PING\r\n' >&3 && timeout 2 head -c 5 <&3 | grep -q PONG) 2>/dev/null; }

up && { echo "redis: up on $host:$port"; exit 0; }
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "redis: not installed; installing redis-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis: no server on $host:$port and redis-server is not installed (install it, e.g. apt-get install redis-server)" >&2
    exit 1
  fi
fi
echo "redis: starting redis-server on $host:$port"
mkdir -p /tmp/otel-session-redis
redis-server --daemonize yes --bind "$host" --port "$port" --save "" --appendonly no \
  --dir /tmp/otel-session-redis --logfile /tmp/otel-session-redis/redis.log
for _ in $(seq 50); do up && { echo "redis: up on $host:$port"; exit 0; }; sleep 0.2; done
echo "redis: could not start redis-server on $host:$port (see /tmp/otel-session-redis/redis.log)" >&2
exit 1
