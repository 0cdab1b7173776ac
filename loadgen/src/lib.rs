//! tern-loadgen: a load generator that is never the bottleneck.
//!
//! * `engine`: per thread one io_uring ring driving many connections with pipelining,
//!   closed loop or open loop at a fixed rate (latency from the intended send time).
//! * `proto`: request encoding and reply parsing for tern's binary protocol (via
//!   tern-protocol, shard-aware) and RESP (Redis).
//! * `workload`, `dist`: operation mixes (GET/SET/ratio, YCSB A–F) and key distributions.
//! * `report`: HDR histograms per operation, live lines, the final table, JSON, HDR logs,
//!   SVG plots. `cpu`: a server's CPU time from /proc.
//! * `fake`: trivial tern and RESP servers for the tests and for measuring the generator's
//!   own capacity (`tern-loadgen fake-server`).
//! * `compare`: tern vs Redis side by side (benches/compare).

pub mod compare;
pub mod cpu;
pub mod dist;
pub mod engine;
pub mod fake;
pub mod plot;
pub mod proto;
pub mod report;
pub mod workload;
