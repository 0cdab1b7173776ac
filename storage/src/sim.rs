//! A simulated disk for crash tests: it keeps, per file, what the page cache shows and
//! what the device holds, and on `crash` keeps only what a real crash may leave.
//!
//! Crash model (what `crash` returns):
//! * every synced byte survives; files created by `create_segment`, `write_file` and
//!   removals are durable when those calls complete (they sync before returning);
//! * of the writes not yet covered by a sync, in the order they were made, some prefix
//!   survives whole, the next one survives torn at a random byte, the rest are lost;
//! * fault injection: a sync can be made to fail with EIO (`fail_sync_after`), after
//!   which the file's unsynced writes are lost for good (as Linux drops dirty pages whose
//!   writeback failed) while the page cache still shows them.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::rc::Rc;

use crate::disk::{Disk, FileMap};

#[derive(Debug, Clone, Default)]
struct SimFile {
    /// What reads see (the page cache).
    visible: Vec<u8>,
    /// What survives a crash for sure.
    durable: Vec<u8>,
    /// Writes since the last sync, in order: (offset, bytes).
    unsynced: Vec<(u64, Vec<u8>)>,
}

/// A deterministic simulated data directory. Cheap to clone (shared state).
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    files: Rc<RefCell<BTreeMap<String, SimFile>>>,
    /// Syncs still allowed to succeed before one fails with EIO (`None` = never fail).
    syncs_before_failure: Rc<Cell<Option<u64>>>,
    /// Counters: syncs done, bytes written (for write amplification figures).
    syncs: Rc<Cell<u64>>,
    bytes_written: Rc<Cell<u64>>,
}

#[derive(Debug, Clone)]
pub struct SimMap(Rc<[u8]>);

impl FileMap for SimMap {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// A tiny deterministic generator (splitmix64) so crash images, simulated networks and
/// generated histories depend only on the seed. The one copy in the workspace's storage
/// and replication crates.
#[derive(Debug, Clone)]
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn not_found(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("sim: no file {name}"))
}

fn apply(buf: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let end = offset as usize + bytes.len();
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[offset as usize..end].copy_from_slice(bytes);
}

impl SimDisk {
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// After `n` more successful syncs, every sync fails with EIO.
    pub fn fail_sync_after(&self, n: u64) {
        self.syncs_before_failure.set(Some(n));
    }

    pub fn syncs(&self) -> u64 {
        self.syncs.get()
    }

    pub fn bytes_written(&self) -> u64 {
        self.bytes_written.get()
    }

    /// The directory a crash at this instant may leave behind (see the module doc).
    pub fn crash(&self, rng: &mut SplitMix) -> SimDisk {
        let files = self.files.borrow();
        let mut after = BTreeMap::new();
        for (name, f) in files.iter() {
            let mut image = f.durable.clone();
            let n = f.unsynced.len() as u64;
            let whole = rng.below(n + 1) as usize;
            for (offset, bytes) in &f.unsynced[..whole] {
                apply(&mut image, *offset, bytes);
            }
            if let Some((offset, bytes)) = f.unsynced.get(whole)
                && !bytes.is_empty()
            {
                let cut = rng.below(bytes.len() as u64) as usize;
                apply(&mut image, *offset, &bytes[..cut]);
            }
            after.insert(
                name.clone(),
                SimFile {
                    visible: image.clone(),
                    durable: image,
                    unsynced: Vec::new(),
                },
            );
        }
        SimDisk {
            files: Rc::new(RefCell::new(after)),
            ..SimDisk::default()
        }
    }

    /// Test hook: flips one bit of a file, in both the page cache and the device.
    pub fn flip_bit(&self, name: &str, byte: usize, bit: u8) {
        let mut files = self.files.borrow_mut();
        let f = files.get_mut(name).expect("flip_bit: no such file");
        f.visible[byte] ^= 1 << bit;
        f.durable[byte] ^= 1 << bit;
    }

    /// Test hook: a file's current contents (as reads see them).
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        self.files.borrow().get(name).map(|f| f.visible.clone())
    }

    fn durable_write(&self, name: &str, bytes: Vec<u8>) {
        self.bytes_written
            .set(self.bytes_written.get() + bytes.len() as u64);
        self.files.borrow_mut().insert(
            name.to_owned(),
            SimFile {
                visible: bytes.clone(),
                durable: bytes,
                unsynced: Vec::new(),
            },
        );
    }
}

impl Disk for SimDisk {
    type Map = SimMap;

    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.files.borrow().keys().cloned().collect())
    }

    fn map(&self, name: &str) -> io::Result<SimMap> {
        let files = self.files.borrow();
        let f = files.get(name).ok_or_else(|| not_found(name))?;
        Ok(SimMap(f.visible.clone().into()))
    }

    fn refresh(&self, name: &str, map: &mut SimMap) -> io::Result<()> {
        *map = self.map(name)?;
        Ok(())
    }

    fn read_all(&self, name: &str) -> io::Result<Vec<u8>> {
        let files = self.files.borrow();
        Ok(files
            .get(name)
            .ok_or_else(|| not_found(name))?
            .visible
            .clone())
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        self.files
            .borrow_mut()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| not_found(name))
    }

    fn zero_range_sync(&self, name: &str, offset: u64, len: u64) -> io::Result<()> {
        let mut files = self.files.borrow_mut();
        let f = files.get_mut(name).ok_or_else(|| not_found(name))?;
        let zeros = vec![0u8; len as usize];
        apply(&mut f.visible, offset, &zeros);
        apply(&mut f.durable, offset, &zeros);
        Ok(())
    }

    fn create_segment(&self, name: &str, len: u64) -> impl Future<Output = io::Result<()>> {
        self.durable_write(name, vec![0u8; len as usize]);
        std::future::ready(Ok(()))
    }

    fn write(
        &self,
        name: &str,
        offset: u64,
        bytes: Vec<u8>,
    ) -> impl Future<Output = io::Result<()>> {
        let mut files = self.files.borrow_mut();
        let result = match files.get_mut(name) {
            None => Err(not_found(name)),
            Some(f) => {
                self.bytes_written
                    .set(self.bytes_written.get() + bytes.len() as u64);
                apply(&mut f.visible, offset, &bytes);
                f.unsynced.push((offset, bytes));
                Ok(())
            }
        };
        std::future::ready(result)
    }

    fn sync(&self, name: &str) -> impl Future<Output = io::Result<()>> {
        let mut files = self.files.borrow_mut();
        let result = match files.get_mut(name) {
            None => Err(not_found(name)),
            Some(f) => match self.syncs_before_failure.get() {
                Some(0) => {
                    // Writeback failed: the dirty pages are gone, the error is reported once.
                    f.unsynced.clear();
                    Err(io::Error::from_raw_os_error(5)) // EIO
                }
                left => {
                    if let Some(n) = left {
                        self.syncs_before_failure.set(Some(n - 1));
                    }
                    self.syncs.set(self.syncs.get() + 1);
                    for (offset, bytes) in std::mem::take(&mut f.unsynced) {
                        apply(&mut f.durable, offset, &bytes);
                    }
                    Ok(())
                }
            },
        };
        std::future::ready(result)
    }

    fn write_file(&self, name: &str, bytes: Vec<u8>) -> impl Future<Output = io::Result<()>> {
        self.durable_write(name, bytes);
        std::future::ready(Ok(()))
    }
}
