//! The node's topology: shards, their ports, and the partition map.
//!
//! The 64-bit key space (`keys::partition_hash`) is cut into `PARTITION_COUNT` partitions
//! (top bits of the hash); `partition_map[p]` names the shard owning partition `p`. Today
//! the map gives each shard one contiguous run of partitions, so a shard owns one hash
//! range and a Scan visits shards in hash order. Partitions, not shards, are the unit a
//! later rebalancer moves: nothing but this map may assume contiguity.

use tern_protocol::keys::partition_of;
use tern_protocol::limits::PARTITION_COUNT;
use tern_protocol::messages::{HelloResponse, ShardInfo};

/// Identifies a shard within a node (= the index of its core's executor).
pub type ShardId = u32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub node_id: String,
    pub shared_port: u16,
    /// Per shard: (core it runs on, its own port).
    pub shards: Vec<(u32, u16)>,
    pub partition_map: Vec<ShardId>,
}

impl Topology {
    /// Spreads partitions over `shards.len()` shards in contiguous runs.
    pub fn new(node_id: String, shared_port: u16, shards: Vec<(u32, u16)>) -> Topology {
        let n = shards.len() as u64;
        assert!(
            n >= 1 && n <= PARTITION_COUNT as u64,
            "1..=PARTITION_COUNT shards"
        );
        let partition_map = (0..PARTITION_COUNT as u64)
            .map(|p| (p * n / PARTITION_COUNT as u64) as ShardId)
            .collect();
        Topology {
            node_id,
            shared_port,
            shards,
            partition_map,
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard owning a partition-key hash.
    pub fn owner_of_hash(&self, hash: u64) -> ShardId {
        self.partition_map[partition_of(hash) as usize]
    }

    /// The Hello response describing this topology.
    pub fn hello(&self) -> HelloResponse {
        HelloResponse {
            node_id: self.node_id.clone(),
            protocol_version: tern_protocol::frame::VERSION,
            shared_port: self.shared_port,
            shards: self
                .shards
                .iter()
                .enumerate()
                .map(|(i, &(core, port))| ShardInfo {
                    shard: i as u32,
                    core,
                    port,
                })
                .collect(),
            partition_map: self.partition_map.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_spread_in_contiguous_runs() {
        for n in 1..=7u32 {
            let t = Topology::new("n".into(), 1, (0..n).map(|i| (i, 0)).collect());
            assert_eq!(t.partition_map.len(), PARTITION_COUNT as usize);
            assert!(
                t.partition_map
                    .windows(2)
                    .all(|w| w[0] <= w[1] && w[1] - w[0] <= 1)
            );
            assert_eq!(*t.partition_map.first().unwrap(), 0);
            assert_eq!(*t.partition_map.last().unwrap(), n - 1);
            assert_eq!(t.owner_of_hash(0), 0);
            assert_eq!(t.owner_of_hash(u64::MAX), n - 1);
        }
    }
}
