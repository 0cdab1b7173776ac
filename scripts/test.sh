#!/usr/bin/env bash
# Runs the whole test suite: unit, property, protocol golden, whole-system (real ternd
# processes on ephemeral loopback ports), CLI and load-generator tests, the last against a
# real ternd and a real redis-server.
#
# Set-up it does itself: installs redis-server with apt-get when missing (as root), and
# requires it from then on (TERN_REQUIRE_REDIS=1: a test that needs Redis fails rather
# than skips); installs the xxhash Python package with pip for the wire conformance test.
# Tests start their own servers on ephemeral loopback ports.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: installing redis-server (apt-get) for the load-generator tests" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
        # The package may start a system instance: it is not ours, and it takes a CPU.
        service redis-server stop >/dev/null 2>&1 || true
    else
        echo "test.sh: redis-server is missing and cannot be installed here; the Redis tests will say so" >&2
    fi
fi
if command -v redis-server >/dev/null 2>&1; then
    export TERN_REQUIRE_REDIS=1
fi
# The wire-protocol conformance test (tests/wire/, a client written from
# docs/wire-protocol.md alone) runs with python3; `xxhash` lets it route by the documented
# partition hash.
if command -v python3 >/dev/null 2>&1; then
    export TERN_REQUIRE_PYTHON=1
    if ! python3 -c 'import xxhash' 2>/dev/null; then
        echo "test.sh: installing the xxhash Python package (pip) for the wire conformance test" >&2
        python3 -m pip install --quiet xxhash >&2 || echo "test.sh: pip could not install xxhash; the wire test will use the shared port only" >&2
    fi
    if python3 -c 'import xxhash' 2>/dev/null; then
        export TERN_REQUIRE_XXHASH=1
    fi
fi
# Whole-system tests start several multi-shard servers; glommio locks io_memory per
# executor, so make sure the memlock limit allows it when we are allowed to raise it.
ulimit -l unlimited 2>/dev/null || true
cargo test --workspace --release "$@"
