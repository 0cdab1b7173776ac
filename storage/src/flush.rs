//! Running a [`FlushJob`] against a [`Disk`]: the only code that moves log bytes to the
//! device. The shard's executor and the crash tests run this same code; the tests also
//! run it step by step so that a simulated crash can fall between the write and the
//! sync.

use std::io;

use crate::disk::Disk;
use crate::store::FlushJob;

/// One I/O step of a flush job, in the order they must complete.
#[derive(Debug)]
pub enum Step {
    Create {
        file: String,
        len: u64,
    },
    Write {
        file: String,
        offset: u64,
        bytes: Vec<u8>,
    },
    Sync {
        file: String,
    },
}

impl FlushJob {
    /// The job as steps: create (a new segment), write (if any bytes), syncs — the
    /// written file's first (the order of the syncs does not matter: the job is done
    /// when all are).
    pub fn steps(mut self) -> Vec<Step> {
        if let Some(i) = self.sync_files.iter().position(|f| *f == self.file) {
            self.sync_files[..=i].rotate_right(1);
        }
        let mut steps = Vec::with_capacity(2 + self.sync_files.len());
        if let Some(len) = self.create_len {
            steps.push(Step::Create {
                file: self.file.clone(),
                len,
            });
        }
        if !self.bytes.is_empty() {
            steps.push(Step::Write {
                file: self.file,
                offset: self.offset,
                bytes: self.bytes,
            });
        }
        steps.extend(self.sync_files.into_iter().map(|file| Step::Sync { file }));
        steps
    }
}

pub async fn run_step<D: Disk>(disk: &D, step: Step) -> io::Result<()> {
    match step {
        Step::Create { file, len } => disk.create_segment(&file, len).await,
        Step::Write {
            file,
            offset,
            bytes,
        } => disk.write(&file, offset, bytes).await,
        Step::Sync { file } => disk.sync(&file).await,
    }
}

/// Runs `job`, stopping at the first error: the steps of [`FlushJob::steps`], except
/// that a write followed by a sync of the same file is one `Disk::write_synced` (one
/// device round trip on the hot path of every durable group commit). The crash tests
/// run the steps one by one instead, so that a crash can fall between that write and
/// its sync, which covers every state a crash during `write_synced` can leave.
pub async fn run_job<D: Disk>(disk: &D, job: FlushJob) -> io::Result<()> {
    let mut steps = job.steps().into_iter().peekable();
    while let Some(step) = steps.next() {
        if let Step::Write {
            file,
            offset,
            bytes,
        } = step
        {
            let synced_next = matches!(steps.peek(), Some(Step::Sync { file: f }) if *f == file);
            if synced_next {
                steps.next();
                disk.write_synced(&file, offset, bytes).await?;
            } else {
                disk.write(&file, offset, bytes).await?;
            }
        } else {
            run_step(disk, step).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::sim::{SimDisk, SimMap};

    /// A disk that records which hot-path operations it was asked for.
    #[derive(Default)]
    struct Recording {
        disk: SimDisk,
        ops: RefCell<Vec<String>>,
    }

    impl Disk for Recording {
        type Map = SimMap;
        fn list(&self) -> io::Result<Vec<String>> {
            self.disk.list()
        }
        fn map(&self, name: &str) -> io::Result<SimMap> {
            self.disk.map(name)
        }
        fn refresh(&self, name: &str, map: &mut SimMap) -> io::Result<()> {
            self.disk.refresh(name, map)
        }
        fn read_all(&self, name: &str) -> io::Result<Vec<u8>> {
            self.disk.read_all(name)
        }
        fn remove(&self, name: &str) -> io::Result<()> {
            self.disk.remove(name)
        }
        fn zero_range_sync(&self, name: &str, offset: u64, len: u64) -> io::Result<()> {
            self.disk.zero_range_sync(name, offset, len)
        }
        async fn create_segment(&self, name: &str, len: u64) -> io::Result<()> {
            self.ops.borrow_mut().push(format!("create {name}"));
            self.disk.create_segment(name, len).await
        }
        async fn write(&self, name: &str, offset: u64, bytes: Vec<u8>) -> io::Result<()> {
            self.ops.borrow_mut().push(format!("write {name}"));
            self.disk.write(name, offset, bytes).await
        }
        async fn write_synced(&self, name: &str, offset: u64, bytes: Vec<u8>) -> io::Result<()> {
            self.ops.borrow_mut().push(format!("write_synced {name}"));
            self.disk.write(name, offset, bytes).await?;
            self.disk.sync(name).await
        }
        async fn sync(&self, name: &str) -> io::Result<()> {
            self.ops.borrow_mut().push(format!("sync {name}"));
            self.disk.sync(name).await
        }
        async fn write_file(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
            self.disk.write_file(name, bytes).await
        }
    }

    fn job(sync_files: &[&str]) -> FlushJob {
        FlushJob {
            file: "b".into(),
            create_len: Some(64),
            offset: 8,
            bytes: vec![7; 16],
            sync_files: sync_files.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn run(job: FlushJob) -> Vec<String> {
        let disk = Recording::default();
        futures_lite::future::block_on(async {
            disk.disk.create_segment("a", 64).await.unwrap();
            run_job(&disk, job).await.unwrap();
        });
        disk.ops.into_inner()
    }

    #[test]
    fn a_write_and_the_sync_of_its_file_are_one_operation() {
        assert_eq!(
            run(job(&["a", "b"])),
            ["create b", "write_synced b", "sync a"]
        );
        assert_eq!(run(job(&["b"])), ["create b", "write_synced b"]);
    }

    #[test]
    fn a_job_that_syncs_other_files_only_writes_plainly() {
        assert_eq!(run(job(&[])), ["create b", "write b"]);
        assert_eq!(run(job(&["a"])), ["create b", "write b", "sync a"]);
    }

    #[test]
    fn steps_put_the_written_files_sync_right_after_the_write() {
        let kinds: Vec<String> = job(&["a", "b", "c"])
            .steps()
            .into_iter()
            .map(|s| match s {
                Step::Create { file, .. } => format!("create {file}"),
                Step::Write { file, .. } => format!("write {file}"),
                Step::Sync { file } => format!("sync {file}"),
            })
            .collect();
        assert_eq!(kinds, ["create b", "write b", "sync b", "sync a", "sync c"]);
    }
}
