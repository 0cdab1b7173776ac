//! Stopping a node's shards from any thread, and knowing how far each got.
//!
//! Each shard has a [`ShardStop`]: an eventfd that the main thread (or a signal handler's
//! thread) writes, and that the shard's executor awaits through glommio's own ring — a
//! read of the eventfd as a glommio file, the way the uring transport sleeps — so the
//! executor parks as usual and wakes the moment a stop is asked. (Earlier the wait ran
//! in `spawn_blocking`, which occupied the executor's single blocking-pool thread for the
//! executor's whole life: any other blocking-pool operation would have queued behind it.)
//!
//! The shard also records its [`Phase`], so that a shutdown that takes too long can say
//! which shard is stuck in which step.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use crate::service::Shutdown;

/// Where a shard is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Recovering its store, joining the meshes, starting its transport.
    Starting = 0,
    /// Accepting and answering.
    Serving = 1,
    /// Stop asked: the transport stops accepting, sends what is owed, closes connections.
    StoppingTransport = 2,
    /// Connections closed: writing what the log holds to the disk.
    DrainingLog = 3,
    /// Done.
    Stopped = 4,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Starting,
            1 => Phase::Serving,
            2 => Phase::StoppingTransport,
            3 => Phase::DrainingLog,
            _ => Phase::Stopped,
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Starting => "starting",
            Phase::Serving => "serving",
            Phase::StoppingTransport => "closing its connections",
            Phase::DrainingLog => "writing its log to disk",
            Phase::Stopped => "stopped",
        })
    }
}

/// One shard's stop signal and phase, shared between its executor and the main thread.
#[derive(Debug)]
pub struct ShardStop {
    /// The write end of the eventfd (the executor reads a duplicate of it).
    signal: File,
    asked: AtomicBool,
    phase: AtomicU8,
}

impl ShardStop {
    /// A stop signal and the eventfd for the executor to await ([`watch`]).
    pub fn new() -> io::Result<(Arc<ShardStop>, std::os::fd::OwnedFd)> {
        let fd = crate::net::eventfd()?;
        let theirs = fd.try_clone()?;
        let stop = ShardStop {
            signal: File::from(fd),
            asked: AtomicBool::new(false),
            phase: AtomicU8::new(Phase::Starting as u8),
        };
        Ok((Arc::new(stop), theirs))
    }

    /// Asks the shard to stop (idempotent, from any thread).
    pub fn stop(&self) {
        if !self.asked.swap(true, Ordering::SeqCst) {
            // An eventfd write adds to its counter; it fails only if the counter would
            // overflow, which one write a lifetime cannot do.
            if let Err(e) = (&self.signal).write_all(&1u64.to_ne_bytes()) {
                tracing::error!("signalling a shard to stop: {e}");
            }
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::SeqCst))
    }
}

/// Runs on the shard's executor: triggers `shutdown` once the stop eventfd is written.
pub async fn watch(eventfd: std::os::fd::OwnedFd, shutdown: Shutdown) {
    let file = crate::net::eventfd_into_glommio(eventfd);
    match file.read_at(0, 8).await {
        Ok(_) => {}
        // Cannot happen for an eventfd we own; stopping is still the safe reading.
        Err(e) => tracing::error!("waiting for the stop signal failed ({e}); stopping"),
    }
    shutdown.trigger();
    if let Err(e) = file.close().await {
        tracing::debug!("closing the stop eventfd: {e}");
    }
}
