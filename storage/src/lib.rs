//! tern-storage: a shard's durable store (docs/log-format.md).
//!
//! * `store`: one segmented append-only log per shard holding every table's records, an
//!   in-memory index per table (`index`: index key → record location), the catalog,
//!   group commit, recovery, checkpoints (`checkpoint`) and compaction;
//! * `limits`: every bound, in one place;
//! * `format`: the byte layout of segments and records; `catalog`: table descriptors as
//!   flatbuffers;
//! * `disk`: the file operations the log needs — `glommio_disk` (io_uring writes and
//!   syncs, mmap reads) in production, `sim` (loses unsynced writes on a simulated crash)
//!   in tests; `flush` runs a group commit against either;
//! * `maintenance`: the order of checkpoints and compaction, as a sans-I/O state machine
//!   that the server and the crash simulator both drive.
//!
//! Keys are *index keys* (`tern_protocol::keys::encode_index_key`: partition-key hash,
//! partition key, sort key in DynamoDB order), opaque here except that their first 8
//! bytes are a well-mixed hash. Item bytes are the encoded item exactly as the client
//! sent it: stored as they are and handed back as slices of the log, never re-encoded.
// `deny`, not `forbid`: two modules allow unsafe code for themselves alone — the
// flatbuffers accessors in `catalog::generated` (`Follow` is an unsafe trait method) and
// the mmap in `glommio_disk`.
#![deny(unsafe_code)]

pub mod catalog;
pub mod checkpoint;
pub mod disk;
pub mod flush;
pub mod format;
pub mod glommio_disk;
pub mod index;
pub mod limits;
pub mod maintenance;
pub mod sim;
pub mod store;
