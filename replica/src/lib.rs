//! tern-replica: a shard's replication, sans-I/O.
//!
//! Each shard is a Raft group of three replicas, one per availability zone
//! (`../shared/DESIGN.md` §7), using raft-rs's `RawNode`:
//! * `group`: the shard driver — a replica over its store, each Ready performed
//!   (append, group-commit bookkeeping, apply), for production and the tests alike;
//! * `replica`: one replica driven by its caller — tick, step, propose, and the work of
//!   each Ready (send, persist asynchronously, apply), with proposals resolved as
//!   applied or lost;
//! * `log`: what a replica's Raft log must provide (`ReplicaLog`) and an in-memory one
//!   (`MemLog`) that the deterministic simulator uses as each replica's disk;
//! * `store_log`: the production log, the shard's replicated `Store` (`StoreLog`);
//! * `peer`: the wire protocol between AZ nodes — HMAC challenge–response on the
//!   cluster secret, then MAC'd frames of (shard, Raft message) batches;
//! * `lincheck`: a linearizability checker for key-value histories (Wing & Gong with
//!   Lowe's memoization), for the tests that kill leaders under concurrent clients.
//!
//! No I/O and no clock here: production (the shard's glommio executor) and the
//! simulator (`tests/sim.rs`: lossy, reordering, partitioned network; crashes that lose
//! what was not persisted) run the same code.
#![forbid(unsafe_code)]

pub mod group;
pub mod lincheck;
pub mod log;
pub mod peer;
pub mod replica;
pub mod store_log;

pub use group::{AppliedEntry, Group, Progress};
pub use log::{LogError, MemLog, ReplicaLog};
pub use replica::{Committed, Output, ProposeError, Replica, Resolution};
pub use store_log::{SharedStore, StoreLog};
