#!/usr/bin/env bash
# Network partitions between the three AZ nodes of a replicated cluster, made with Linux
# network namespaces, veth pairs and nftables — on this machine only: five namespaces
# of its own (tern-sw holds a bridge; tern-a, tern-b, tern-c one node each; tern-cl the
# clients), addresses in 10.77.0.0/24 on that bridge, nothing in the host's namespace.
# Needs root; installs nftables with apt-get when missing.
#
#   tests/faults/partition.sh [SECONDS_PER_SCENARIO]     (default 4)
#
# Scenarios, each under writes through all three nodes:
#   1. the leader of shard 0 is cut off from both peers (clients still reach it: what it
#      cannot commit must not be acknowledged), then healed;
#   2. a and b cannot reach each other, both still reach c, then healed;
#   3. c is cut off from both peers and a restarts meanwhile (kill -9), then healed.
# After each: the cluster converges and every acknowledged write is on every node.
# The last line: `partition: scenarios=N acked=N lost=N`; exits non-zero on any loss.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs="${1:-4}"
if [ "$(id -u)" -ne 0 ]; then
    echo "partition: run as root (it creates network namespaces)" >&2
    exit 2
fi
if ! command -v nft >/dev/null 2>&1; then
    echo "partition: installing nftables (apt-get)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null
fi
cargo build --release --bin ternd --bin tern >&2
TERND="$PWD/target/release/ternd"
TERN="$PWD/target/release/tern"
NODES=(a b c)
IPS=(10.77.0.1 10.77.0.2 10.77.0.3)
CLIENT_IP=10.77.0.100
WORK="$(mktemp -d /tmp/tern-partition.XXXXXX)"
PIDS=(0 0 0)

cleanup() {
    local status=$?
    if [ "$status" -ne 0 ]; then
        for az in "${NODES[@]}"; do
            echo "---- node $az (tail of its log)" >&2
            tail -n 20 "$WORK/$az.err" >&2 2>/dev/null || true
        done
    fi
    for pid in "${PIDS[@]}"; do
        [ "$pid" -ne 0 ] && kill -9 "$pid" 2>/dev/null || true
    done
    for ns in tern-a tern-b tern-c tern-cl tern-sw; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

# The switch, and one veth into it per namespace.
ip netns add tern-sw
ip -n tern-sw link add br0 type bridge
ip -n tern-sw link set br0 up
attach() { # NS IP
    local ns="$1" addr="$2"
    ip netns add "$ns"
    ip link add "v-$ns" netns "$ns" type veth peer name "p-$ns" netns tern-sw
    ip -n tern-sw link set "p-$ns" master br0 up
    ip -n "$ns" addr add "$addr/24" dev "v-$ns"
    ip -n "$ns" link set "v-$ns" up
    ip -n "$ns" link set lo up
}
for i in 0 1 2; do attach "tern-${NODES[$i]}" "${IPS[$i]}"; done
attach tern-cl "$CLIENT_IP"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$WORK/secret"

start_node() { # I
    local i="$1" az="${NODES[$1]}" peers=()
    for j in 0 1 2; do
        [ "$j" -ne "$i" ] && peers+=("${NODES[$j]}=${IPS[$j]}:7050")
    done
    ip netns exec "tern-$az" "$TERND" node --az "$az" --host "${IPS[$i]}" --port 7000 \
        --peer-port 7050 --peers "$(IFS=,; echo "${peers[*]}")" --cores 2 --no-pin \
        --data-dir "$WORK/az-$az" --secret-file "$WORK/secret" --segment-size-mib 8 \
        > "$WORK/$az.out" 2>> "$WORK/$az.err" &
    PIDS[$i]=$!
    for _ in $(seq 1 300); do
        [ -s "$WORK/$az.out" ] && return 0
        kill -0 "${PIDS[$i]}" 2>/dev/null || { cat "$WORK/$az.err" >&2; echo "partition: node $az exited" >&2; exit 1; }
        sleep 0.1
    done
    echo "partition: node $az never became ready" >&2
    exit 1
}
tern() { ip netns exec tern-cl "$TERN" --timeout-ms 15000 "$@"; }
for i in 0 1 2; do start_node "$i"; done

# Drops everything between namespaces' nodes X and Y (both directions, in X).
cut() { # X Y
    local x="$1" y="$2" yip="${IPS[$2]}"
    ip netns exec "tern-${NODES[$x]}" nft add table inet tern 2>/dev/null || true
    ip netns exec "tern-${NODES[$x]}" nft add chain inet tern in '{ type filter hook input priority 0; }' 2>/dev/null || true
    ip netns exec "tern-${NODES[$x]}" nft add chain inet tern out '{ type filter hook output priority 0; }' 2>/dev/null || true
    ip netns exec "tern-${NODES[$x]}" nft add rule inet tern in ip saddr "$yip" drop
    ip netns exec "tern-${NODES[$x]}" nft add rule inet tern out ip daddr "$yip" drop
}
heal() {
    for az in "${NODES[@]}"; do
        ip netns exec "tern-$az" nft flush ruleset 2>/dev/null || true
    done
}

# Counter NAME of shard K on node I.
counter() { # I K NAME
    tern --endpoint "${IPS[$1]}:7000" stats 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["shards"][int(sys.argv[1])].get(sys.argv[2], -1))' "$2" "$3" ||
        echo -1
}
leader_of() { # K
    for i in 0 1 2; do
        if [ "$(counter "$i" "$1" RaftIsLeader)" = 1 ]; then echo "$i"; return; fi
    done
    echo -1
}
converge() {
    for _ in $(seq 1 300); do
        local ok=1
        for k in 0 1; do
            local a b c
            a="$(counter 0 $k RaftApplied)"; b="$(counter 1 $k RaftApplied)"; c="$(counter 2 $k RaftApplied)"
            if [ "$a" -lt 0 ] || [ "$a" != "$b" ] || [ "$b" != "$c" ]; then ok=0; fi
        done
        [ "$ok" = 1 ] && return 0
        sleep 0.1
    done
    echo "partition: the replicas did not converge" >&2
    exit 1
}

# Puts keys TAG-n through node I for SECONDS; appends the acknowledged ones to acked.
writer() { # I TAG SECONDS
    local end=$((SECONDS + $3)) n=0
    while [ "$SECONDS" -lt "$end" ]; do
        if tern --endpoint "${IPS[$1]}:7000" put part "{\"id\":{\"S\":\"$2-$n\"}}" >/dev/null 2>&1; then
            echo "$2-$n" >> "$WORK/acked"
        fi
        n=$((n + 1))
    done
}
under_load() { # TAG: writers through every node for $secs, while the caller's fault holds
    local pids=()
    for i in 0 1 2; do writer "$i" "$1-${NODES[$i]}" "$secs" & pids+=($!); done
    wait "${pids[@]}"
}

# Every acknowledged key on every node (each node's own replica: a Scan there).
verify() {
    converge
    for i in 0 1 2; do
        tern --endpoint "${IPS[$i]}:7000" scan part --all > "$WORK/scan-$i.json"
    done
    python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
acked = set(open(f"{work}/acked").read().split())
lost = 0
for i in range(3):
    have = {it["id"]["S"] for it in json.load(open(f"{work}/scan-{i}.json"))["Items"]}
    missing = acked - have
    lost += len(missing)
    if missing:
        print(f"partition: node {'abc'[i]} lacks {len(missing)} acknowledged key(s), e.g. {sorted(missing)[:5]}", file=sys.stderr)
open(f"{work}/lost", "w").write(str(lost))
PY
}

touch "$WORK/acked"
tern --endpoint "${IPS[0]}:7000" create-table part --pk id:S >/dev/null
converge

echo "partition: 1. the leader of shard 0 cut off from its peers" >&2
l="$(leader_of 0)"
cut "$l" $(((l + 1) % 3)); cut "$l" $(((l + 2) % 3))
under_load s1
heal
verify

echo "partition: 2. a and b cannot reach each other; c reaches both" >&2
cut 0 1; cut 1 0
under_load s2
heal
verify

echo "partition: 3. c cut off, and a killed and restarted meanwhile" >&2
cut 2 0; cut 2 1
under_load s3 &
load=$!
sleep 1
kill -9 "${PIDS[0]}"; wait "${PIDS[0]}" 2>/dev/null || true
start_node 0
wait "$load"
heal
verify

lost="$(cat "$WORK/lost")"
echo "partition: scenarios=3 acked=$(wc -l < "$WORK/acked") lost=$lost"
[ "$lost" -eq 0 ]
