//! Helpers the storage test binaries share (each uses a subset, hence the allow).
#![allow(dead_code)]

use tern_storage::catalog::{KeyAttrDesc, KeyType, TableDesc};
use tern_storage::flush::run_job;
use tern_storage::sim::SimDisk;
use tern_storage::store::Store;

/// A table `name` with an S partition key `pk` and no sort key.
pub fn desc(name: &str) -> TableDesc {
    TableDesc {
        table_id: 0,
        name: name.to_owned(),
        partition_key: KeyAttrDesc {
            name: "pk".into(),
            ty: KeyType::S,
        },
        sort_key: None,
        creation_time_ms: 1,
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures_lite::future::block_on(f)
}

/// Runs flush jobs (with a sync) until nothing is left to write.
pub fn flush_all(store: &mut Store<SimDisk>, disk: &SimDisk) {
    store.request_sync();
    while let Some(job) = store.next_flush() {
        let r = block_on(run_job(disk, job));
        store.finish_flush(r);
    }
}
