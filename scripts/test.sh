#!/usr/bin/env bash
# Runs the whole test suite: unit, property, protocol golden, whole-system (real ternd
# processes on ephemeral loopback ports) and CLI tests. Installs nothing today; later
# suites that need a service (e.g. redis-server for benchmarks) are set up here.
set -euo pipefail
cd "$(dirname "$0")/.."
# Whole-system tests start several multi-shard servers; glommio locks io_memory per
# executor, so make sure the memlock limit allows it when we are allowed to raise it.
ulimit -l unlimited 2>/dev/null || true
cargo test --workspace --release "$@"
