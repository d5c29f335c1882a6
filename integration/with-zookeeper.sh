#!/usr/bin/env bash
# Runs a command with one throw-away ZooKeeper server: for the tests that
# need a server but no harness of their own (they read
# HASCHED_ZK_TEST_SERVERS). The container is removed however the command
# ends.
#
#   integration/with-zookeeper.sh go test ./coord/zk/...
set -euo pipefail
image="${HASCHED_ZK_IMAGE:-hasched/zookeeper:3.8}"
id=$(docker run -d --label dev.hasched.test=integration -p 127.0.0.1::2181 \
  -e ZOO_TICK_TIME=500 -e ZOO_4LW_COMMANDS_WHITELIST=srvr,ruok,mntr,stat "$image")
trap 'docker rm -f "$id" >/dev/null' EXIT
port=$(docker port "$id" 2181/tcp | sed -n 1p | sed 's/.*://')
for _ in $(seq 1 120); do
  if docker exec "$id" sh -c 'echo srvr | nc -w 2 127.0.0.1 2181' 2>/dev/null | grep -q 'Mode: '; then
    break
  fi
  sleep 0.5
done
export HASCHED_ZK_TEST_SERVERS="127.0.0.1:$port"
echo "with-zookeeper: $image at $HASCHED_ZK_TEST_SERVERS"
"$@"
