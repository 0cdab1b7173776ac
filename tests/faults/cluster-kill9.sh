#!/usr/bin/env bash
# kill -9 the leader of a replicated cluster under write load, CYCLES times: three
# `ternd node` processes (AZ a, b, c) on loopback, three writers putting through every
# node, and each cycle SIGKILLs the node leading one shard, measures the failover (kill
# to the first acknowledged write to that shard), restarts the node on its data
# directory; at the end every acknowledged write must be on all three replicas.
#
#   tests/faults/cluster-kill9.sh [CYCLES]     (default 100)
#
# The output goes to target/faults/cluster-kill9.log (and to stderr as it runs); the last
# line on stdout is the test's `cluster-kill9: cycles=N acked=N lost=N failover_ms=[...]`.
# Exits non-zero if the test failed or anything was lost.
set -euo pipefail
cd "$(dirname "$0")/../.."

cycles="${1:-100}"
if ! [[ "$cycles" =~ ^[0-9]+$ ]] || [ "$cycles" -eq 0 ]; then
    echo "usage: $0 [CYCLES]  (a positive number, default 100)" >&2
    exit 2
fi

log=target/faults/cluster-kill9.log
mkdir -p target/faults

cargo build --release -p tern-server --tests >&2

status=0
TERN_CLUSTER_KILL_CYCLES="$cycles" \
    cargo test --release -p tern-server --test it cluster::killing_the_leader -- --nocapture --test-threads 1 \
    2>&1 | tee "$log" >&2 || status=$?

summary="$(grep -E '^cluster-kill9: cycles=[0-9]+ acked=[0-9]+ lost=[0-9]+ ' "$log" | tail -n 1 || true)"
if [ -z "$summary" ]; then
    echo "cluster-kill9: no summary line (the test failed before the end; see $log)"
    exit 1
fi
lost="$(sed -E 's/.* lost=([0-9]+) .*/\1/' <<<"$summary")"
if [ "$status" -eq 0 ] && [ "$lost" -ne 0 ]; then
    status=1
fi
echo "$summary"
exit "$status"
