//! tern-server: the thread-per-core tern server (`ternd`).
pub mod service;
