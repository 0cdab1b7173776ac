#!/usr/bin/env bash
# kill -9 crash test: CYCLES rounds of (pipelined writes from 4 threads, SIGKILL of ternd
# mid-load, restart on the same data directory, check that every acknowledged write is
# there and intact), in release mode.
#
#   tests/faults/kill9.sh [CYCLES]     (default 1000; TERN_KILL9_SEED=N replays a run)
#
# The whole output goes to target/faults/kill9.log (and to stderr as it runs); the last
# line on stdout is the test's `kill9: cycles=N acked=N lost=N torn=N`. Exits non-zero if
# the test failed or anything was lost or torn.
set -euo pipefail
cd "$(dirname "$0")/../.."

cycles="${1:-1000}"
if ! [[ "$cycles" =~ ^[0-9]+$ ]] || [ "$cycles" -eq 0 ]; then
    echo "usage: $0 [CYCLES]  (a positive number, default 1000)" >&2
    exit 2
fi

log=target/faults/kill9.log
mkdir -p target/faults

cargo build --release -p tern-server --tests >&2

status=0
TERN_KILL9_CYCLES="$cycles" \
    cargo test --release -p tern-server --test it kill9 -- --nocapture --test-threads 1 \
    2>&1 | tee "$log" >&2 || status=$?

summary="$(grep -E '^kill9: cycles=[0-9]+ acked=[0-9]+ lost=[0-9]+ torn=[0-9]+$' "$log" | tail -n 1 || true)"
if [ -z "$summary" ]; then
    echo "kill9: no summary line (the test failed before the end; see $log)"
    exit 1
fi
lost="$(sed -E 's/.* lost=([0-9]+) .*/\1/' <<<"$summary")"
torn="$(sed -E 's/.* torn=([0-9]+)$/\1/' <<<"$summary")"
if [ "$status" -eq 0 ] && { [ "$lost" -ne 0 ] || [ "$torn" -ne 0 ]; }; then
    status=1
fi
echo "$summary"
exit "$status"
