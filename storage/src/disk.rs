//! The file operations the log needs, as a trait: the real one (`GlommioDisk`: io_uring
//! through glommio for writes and syncs, memmap2 for reads) and a simulated one for tests
//! (`sim::SimDisk`: loses unsynced writes and tears the last one on a simulated crash).
//!
//! The split follows how often each operation runs:
//! * `write` and `sync` are the hot path (every group commit) and asynchronous, so a shard
//!   keeps serving while the device works;
//! * `create_segment` and `write_file` (checkpoints) are asynchronous too: they move data;
//! * the rest run at start-up or once per segment (`map`, `remove`) and are synchronous.

use std::future::Future;
use std::io;

/// A read-only view of a whole file (an mmap in production).
pub trait FileMap {
    fn bytes(&self) -> &[u8];

    /// The map will now be read at random (point reads), not front to back (recovery,
    /// compaction): stop reading ahead. A hint; the default does nothing.
    fn advise_random(&self) {}

    /// The map will be read front to back: read ahead.
    fn advise_sequential(&self) {}
}

pub trait Disk {
    type Map: FileMap;

    /// Names of the files in the data directory (any order).
    fn list(&self) -> io::Result<Vec<String>>;

    /// Maps a whole file for reading. Bytes written later through `write` become visible
    /// through the map once `refresh` has been called on it (a no-op for a real mmap,
    /// which shares the page cache).
    fn map(&self, name: &str) -> io::Result<Self::Map>;

    /// Makes completed writes to `name` visible through `map` (see `map`).
    fn refresh(&self, name: &str, map: &mut Self::Map) -> io::Result<()>;

    /// Reads a whole (small) file: checkpoints.
    fn read_all(&self, name: &str) -> io::Result<Vec<u8>>;

    /// Deletes a file and makes the deletion durable.
    fn remove(&self, name: &str) -> io::Result<()>;

    /// Start-up only: overwrites `[offset, offset + len)` with zeros and syncs (used to
    /// erase a torn tail before new records are appended over it).
    fn zero_range_sync(&self, name: &str, offset: u64, len: u64) -> io::Result<()>;

    /// Creates the file `name` of exactly `len` bytes, all zeros, allocated on the device,
    /// and makes its existence durable (file and directory synced) before completing.
    fn create_segment(&self, name: &str, len: u64) -> impl Future<Output = io::Result<()>>;

    /// Writes `bytes` at `offset` of an existing file (into the page cache: not durable
    /// until `sync`).
    fn write(
        &self,
        name: &str,
        offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = io::Result<()>>;

    /// `write` then `sync` of the same file as one operation: once this returns Ok,
    /// `bytes` and every earlier completed write to `name` are durable. The real disk
    /// does it in one device round trip (an `O_DSYNC` write: one io_uring operation
    /// instead of two, so a group commit waits for one completion, not two in a row).
    /// An error has the meaning of a failed `sync`. A crash during it may leave any part
    /// of `bytes` written, as a crash between `write` and `sync` may.
    fn write_synced(
        &self,
        name: &str,
        offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = io::Result<()>> {
        async move {
            self.write(name, offset, bytes).await?;
            self.sync(name).await
        }
    }

    /// fdatasync: every completed write to `name` is durable once this returns Ok.
    /// An error means the kernel may have dropped dirty pages: the caller must not retry.
    fn sync(&self, name: &str) -> impl Future<Output = io::Result<()>>;

    /// Replaces (or creates) `name` with `bytes` atomically and durably: a temporary file,
    /// synced, renamed over `name`, directory synced.
    fn write_file(&self, name: &str, bytes: Vec<u8>) -> impl Future<Output = io::Result<()>>;
}

/// An `io::Error` for damage found in a file (corruption, not an OS failure).
pub fn corrupt(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}
