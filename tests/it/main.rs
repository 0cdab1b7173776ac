//! Whole-system tests: a real `ternd` process with several shards on ephemeral ports,
//! driven through tern-client and raw sockets.
//!
//! One binary (this file's modules) so the server binary is built once.

mod harness;

mod cache;
mod cluster;
mod durability;
mod errors;
mod items;
mod kill9;
mod limits;
mod mixed_load;
mod paging;
mod protocol;
mod shutdown;
mod tables;
mod wire_python;
