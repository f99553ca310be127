#!/bin/bash
# Healthcheck: this ZooKeeper server is in a quorum (leader or follower).
exec 3<>/dev/tcp/127.0.0.1/2181
printf srvr >&3
grep -qE '^Mode: (leader|follower|standalone)' <&3
