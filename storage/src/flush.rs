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
    /// The job as steps: create (a new segment), write (if any bytes), syncs.
    pub fn steps(self) -> Vec<Step> {
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

/// Runs every step of `job`, stopping at the first error.
pub async fn run_job<D: Disk>(disk: &D, job: FlushJob) -> io::Result<()> {
    for step in job.steps() {
        run_step(disk, step).await?;
    }
    Ok(())
}
