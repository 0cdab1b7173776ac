//! tern-server: the thread-per-core tern server (`ternd`).
//!
//! * `node`: starts one pinned glommio executor per shard and stops them; `stop`: the
//!   stop signal and phase of each shard.
//! * `net`: client sockets — a per-shard io_uring ring (default) or glommio's sockets.
//! * `service`: the seam between transports and the core behind them.
//! * `core`: decode, route by partition, execute or forward; DDL, Scan and batch
//!   coordination.
//! * `mesh`: cross-core calls over glommio's channel mesh.
//! * `cache`: the shard's item and query cache (tern-cache) and its settings.
//! * `shard`: a shard's tables. `topology`: shards, ports, partition map.
//! * `page`: when a Query or Scan page is full.
//! * `reply`: building reply frames.
//! * `limits`: the server's bounds, and the compile-time contract between the crates'.
//! * `peers`: the authenticated connections between AZ nodes; `supervisor`: the local
//!   three-AZ cluster `ternd` starts by default.

pub mod acks;
pub mod cache;
pub mod core;
pub mod limits;
pub mod mesh;
pub mod net;
pub mod node;
pub mod page;
pub mod peers;
pub mod reply;
pub mod service;
pub mod shard;
pub mod stop;
pub mod supervisor;
pub mod topology;
