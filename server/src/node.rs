//! Starting and stopping a node: one pinned glommio executor per shard.
//!
//! The main thread checks the data directory's layout, binds every listener (so the
//! shared port exists before any executor accepts on it), builds the topology, then
//! starts one executor per core. Each executor first opens (recovers) its shard's store
//! in `DATA_DIR/shard-K` and reports; only when every shard has recovered does the main
//! thread let them join the two channel meshes and serve, so a node either starts whole
//! or not at all. Each executor then runs its [`Core`], the flusher (group commit) and a
//! low-priority maintenance task (checkpoints, compaction, spare segments), and returns
//! when told to stop, after flushing what it appended. `Node::start` returns once every
//! shard's transport accepts: that is the readiness `ternd` announces.
//!
//! Stopping ([`crate::stop`]) is an eventfd per shard that the executor awaits through
//! glommio, and every step after it is bounded: the transport's drain
//! (`net::limits::SHUTDOWN_DRAIN_TIMEOUT_MS`), then the log's
//! (`limits::SHUTDOWN_DRAIN_LOG_TIMEOUT_MS`: a disk that stopped answering cannot hold
//! the node forever; acknowledged writes are durable already). Each shard records its
//! [`Phase`] so a caller that gives up waiting can say where it stood.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use tern_storage::disk::Disk;
use tern_storage::flush::run_job;
use tern_storage::glommio_disk::DiskFailpoints;
use tern_storage::maintenance::{Maintenance, Task};
use tern_storage::store::StoreConfig;

use crate::cache::{CacheSettings, ShardCacheState};
use crate::core::{Core, CoreService, ReplSettings, run_driver, run_ticker};
use crate::limits::{
    BIND_RETRY_TIMEOUT_MS, SHUTDOWN_DRAIN_LOG_TIMEOUT_MS, STARTUP_SERVING_TIMEOUT_MS,
};
use crate::mesh::{MESH_CHANNEL_CAPACITY, Mesh, Reply, Request, spawn_loops};
use crate::net::{self, NetMode};
use crate::peers::{PeerConfig, Peers};
use crate::service::{Shutdown, Wakeup};
use crate::shard::Shard;
use crate::stop::{Phase, ShardStop};
use crate::topology::Topology;

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub host: IpAddr,
    /// The shared port; shard k listens on `port + 1 + k` (all ephemeral when 0).
    pub port: u16,
    /// Number of shards (one executor each).
    pub shards: usize,
    /// Pin shard k to CPU `first_cpu + k`; `None` leaves executors unpinned.
    pub first_cpu: Option<usize>,
    pub net: NetMode,
    /// glommio's locked I/O memory per executor.
    pub io_memory_bytes: usize,
    /// How long to keep retrying a port that is in use at start.
    pub bind_retry: Duration,
    pub node_id: String,
    pub storage: StorageConfig,
    pub cache: CacheSettings,
    /// One node of a replicated cluster (`None`: a single node, no replication).
    pub cluster: Option<ClusterConfig>,
}

/// This node's place in a replicated cluster: every shard is one replica of that
/// shard's Raft group, whose other replicas are the same shard on the other nodes.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's replica id (1-based: AZ a is 1).
    pub node: u64,
    /// Every node's id, this one's included (the groups' first voters).
    pub voters: Vec<u64>,
    /// Where shard k accepts its peers: `peer_host:peer_port + k`.
    pub peer_host: IpAddr,
    pub peer_port: u16,
    /// The other nodes: id → (host, first peer port); shard k dials port + k.
    pub peers: HashMap<u64, SocketAddr>,
    /// The cluster secret the peers authenticate with.
    pub secret: Vec<u8>,
}

impl NodeConfig {
    /// For tests and tools that run a node in-process: loopback, ephemeral ports,
    /// unpinned, the uring transport, small locked I/O memory, `StorageConfig::for_tests`.
    pub fn for_tests(shards: usize, node_id: &str, data_dir: impl Into<PathBuf>) -> NodeConfig {
        NodeConfig {
            host: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            shards,
            first_cpu: None,
            net: NetMode::Uring,
            io_memory_bytes: 512 * 1024,
            bind_retry: Duration::from_millis(BIND_RETRY_TIMEOUT_MS),
            node_id: node_id.to_owned(),
            storage: StorageConfig::for_tests(data_dir),
            cache: CacheSettings::for_tests(),
            cluster: None,
        }
    }
}

/// Where and how shards keep their data.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Shard k keeps its log and checkpoints in `data_dir/shard-k`.
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    /// Failpoints (tests): syncs that fail or never complete.
    pub failpoints: DiskFailpoints,
}

impl StorageConfig {
    /// For tests: small segments (less to zero-fill), frequent checkpoints.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> StorageConfig {
        StorageConfig {
            data_dir: data_dir.into(),
            store: StoreConfig {
                segment_size: 8 << 20,
                checkpoint_every_bytes: 16 << 20,
                ..StoreConfig::default()
            },
            failpoints: DiskFailpoints::default(),
        }
    }

    /// Defaults in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> StorageConfig {
        StorageConfig {
            data_dir: data_dir.into(),
            store: StoreConfig::default(),
            failpoints: DiskFailpoints::default(),
        }
    }
}

/// How often the maintenance task looks for work when idle.
const MAINTENANCE_PERIOD: Duration = Duration::from_millis(50);
/// Bytes of a segment compaction examines before letting other tasks run.
const COMPACTION_STEP_BYTES: usize = 256 << 10;
/// The file recording a data directory's layout.
const LAYOUT_FILE: &str = "NODE";

/// Checks (or, for a new directory, records) how many shards the data directory was
/// made for — the partition map depends on it, so a node must not reopen it with another
/// count — and whether it is a replica (`replica N`: node N of a cluster) or a single
/// node's: their logs differ, and a replica's data belongs to its node id.
pub fn check_layout(data_dir: &Path, shards: usize, replica: Option<u64>) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let path = data_dir.join(LAYOUT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let stored = text
                .lines()
                .find_map(|l| l.strip_prefix("shards "))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .with_context(|| format!("{} is not a tern layout file", path.display()))?;
            if stored != shards {
                bail!(
                    "the data directory {} holds {stored} shard(s); start with --cores {stored} (or use another --data-dir)",
                    data_dir.display()
                );
            }
            let stored_replica = text
                .lines()
                .find_map(|l| l.strip_prefix("replica "))
                .and_then(|n| n.trim().parse::<u64>().ok());
            match (stored_replica, replica) {
                (None, None) => Ok(()),
                (Some(n), Some(m)) if n == m => Ok(()),
                (None, Some(_)) => bail!(
                    "the data directory {} holds a single node's data (not a replica's): use another --data-dir for a cluster node, or start it with --replicas 1",
                    data_dir.display()
                ),
                (Some(n), None) => bail!(
                    "the data directory {} holds the data of cluster node {n}: start it as that node, not with --replicas 1",
                    data_dir.display()
                ),
                (Some(n), Some(m)) => bail!(
                    "the data directory {} holds the data of cluster node {n}, not node {m}",
                    data_dir.display()
                ),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = data_dir.join(format!("{LAYOUT_FILE}.tmp"));
            let replica = replica.map_or(String::new(), |n| format!("replica {n}\n"));
            std::fs::write(
                &tmp,
                format!("tern data directory\nversion 1\nshards {shards}\n{replica}"),
            )?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(data_dir)?.sync_all()?;
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The number of shards a data directory was made for, if it exists.
pub fn layout_shards(data_dir: &Path) -> Option<usize> {
    std::fs::read_to_string(data_dir.join(LAYOUT_FILE))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("shards "))
        .and_then(|n| n.trim().parse().ok())
}

/// Writes the shard's appended log to the disk, one group commit at a time. Public so
/// that benchmark harnesses drive the same flusher `ternd` runs.
pub async fn run_flusher(core: Rc<Core>) {
    loop {
        core.flush_work().await;
        let (job, disk) = {
            let mut shard = core.shard().borrow_mut();
            (shard.store.next_flush(), shard.store.disk().clone())
        };
        let Some(job) = job else { continue };
        let result = run_job(&disk, job).await;
        let mut shard = core.shard().borrow_mut();
        shard.store.finish_flush(result);
        if let Some(e) = shard.store.failure() {
            tracing::error!(
                "shard {}: {e}. The shard is stopped: it acknowledges no more writes and serves no reads; restart the node to recover from the log.",
                shard.id
            );
        }
        drop(shard);
        core.wake_durable_waiters();
    }
}

/// Checkpoints, compaction and spare segments, in a low-priority task queue. The order
/// of checkpoints and compaction is `tern_storage::maintenance`'s, which the crash
/// simulator runs too; this task only performs the waits and the file writes it asks for.
async fn run_maintenance(core: Rc<Core>) {
    let mut lane = Maintenance::new(COMPACTION_STEP_BYTES);
    loop {
        glommio::timer::sleep(MAINTENANCE_PERIOD).await;
        let (disk, segment_size, failed) = {
            let shard = core.shard().borrow();
            (
                shard.store.disk().clone(),
                shard.store.config().segment_size,
                shard.store.failure().is_some(),
            )
        };
        if failed {
            return;
        }
        if !disk.has_spare()
            && let Err(e) = disk.prepare_spare(segment_size).await
        {
            tracing::warn!("preparing a spare segment: {e}");
        }
        loop {
            let task = lane.step(&mut core.shard().borrow_mut().store);
            match task {
                Task::AwaitSettled(pos) => {
                    core.kick_flusher();
                    // A failed store ends the wait; the next step sees the failure.
                    let _ = core.settled(pos).await;
                }
                Task::WriteCheckpoint(mut job) => {
                    let bytes = std::mem::take(&mut job.bytes);
                    let result = disk.write_file(&job.file, bytes).await;
                    lane.checkpoint_written(&mut core.shard().borrow_mut().store, &job, result);
                }
                Task::Yield => {
                    core.kick_flusher();
                    glommio::yield_if_needed().await;
                }
                Task::RoundDone { error } => {
                    if let Some(e) = error {
                        tracing::error!("{e}");
                    }
                    break;
                }
            }
        }
    }
}

/// Stops a node from any thread, and tells how far each shard got.
#[derive(Debug, Clone)]
pub struct Stopper(Vec<Arc<ShardStop>>);

impl Stopper {
    /// Asks every shard to stop (idempotent).
    pub fn stop(&self) {
        for stop in &self.0 {
            stop.stop();
        }
    }

    /// Each shard's phase, e.g. for a shutdown that takes too long.
    pub fn phases(&self) -> Vec<Phase> {
        self.0.iter().map(|s| s.phase()).collect()
    }
}

/// A started node: every shard serves. Dropping it stops the shards (without waiting).
pub struct Node {
    pub topology: Topology,
    stops: Vec<Arc<ShardStop>>,
    handles: Vec<glommio::ExecutorJoinHandle<anyhow::Result<()>>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        for stop in &self.stops {
            stop.stop();
        }
    }
}

/// What one shard's executor needs besides its index.
struct ShardStart {
    shard_dir: PathBuf,
    store_config: StoreConfig,
    failpoints: DiskFailpoints,
    topology: Topology,
    cluster: Option<ClusterConfig>,
    bind_retry: Duration,
    requests: MeshBuilder<Request, glommio::channels::channel_mesh::Full>,
    replies: MeshBuilder<Reply, glommio::channels::channel_mesh::Full>,
    mode: NetMode,
    cache_settings: CacheSettings,
    shard_count: usize,
    listeners: net::CoreListeners,
    stop: Arc<ShardStop>,
    stop_fd: std::os::fd::OwnedFd,
    /// Recovery's outcome, once the store is open (a summary, or why it failed).
    ready: mpsc::Sender<(usize, Result<String, String>)>,
    /// Whether to go on once every shard recovered.
    go: mpsc::Receiver<bool>,
    /// Sent once the transport accepts; dropped unsent if the shard fails first.
    serving: mpsc::Sender<()>,
}

impl Node {
    pub fn start(config: &NodeConfig) -> anyhow::Result<Node> {
        if config.shards == 0 {
            bail!("a node needs at least one shard (--cores 1 or more)");
        }
        check_layout(
            &config.storage.data_dir,
            config.shards,
            config.cluster.as_ref().map(|c| c.node),
        )?;
        // Absolute: glommio opens directories relative to nothing (a relative path made
        // the first directory sync fail with EBADF).
        let data_dir = std::fs::canonicalize(&config.storage.data_dir).with_context(|| {
            format!(
                "resolving the data directory {}",
                config.storage.data_dir.display()
            )
        })?;
        let shard_ports: Vec<u16> = (0..config.shards)
            .map(|k| {
                if config.port == 0 {
                    Ok(0)
                } else {
                    u16::try_from(config.port as usize + 1 + k)
                        .context("per-shard port above 65535: choose a lower --port")
                }
            })
            .collect::<anyhow::Result<_>>()?;
        let (shared_port, listeners) =
            net::bind_listeners(config.host, config.port, &shard_ports, config.bind_retry)
                .with_context(|| {
                    format!(
                        "binding {}:{} and the per-shard ports",
                        config.host, config.port
                    )
                })?;
        let shards = listeners
            .iter()
            .enumerate()
            .map(|(k, l)| (config.first_cpu.map_or(k, |c| c + k) as u32, l.shard_port))
            .collect();
        let topology = Topology::new(config.node_id.clone(), shared_port, shards);
        let requests = MeshBuilder::<Request, _>::full(config.shards, MESH_CHANNEL_CAPACITY);
        let replies = MeshBuilder::<Reply, _>::full(config.shards, MESH_CHANNEL_CAPACITY);
        let mut stops = Vec::new();
        let mut handles = Vec::new();
        let mut gos = Vec::new();
        let mut servings = Vec::new();
        let (ready_tx, ready_rx) = mpsc::channel::<(usize, Result<String, String>)>();
        for (k, listeners) in listeners.into_iter().enumerate() {
            let (stop, stop_fd) = ShardStop::new().context("creating a shard's stop eventfd")?;
            stops.push(stop.clone());
            let (go_tx, go) = mpsc::channel::<bool>();
            gos.push(go_tx);
            let (serving, serving_rx) = mpsc::channel::<()>();
            servings.push(serving_rx);
            let start = ShardStart {
                shard_dir: data_dir.join(format!("shard-{k}")),
                store_config: StoreConfig {
                    replicated: config.cluster.is_some(),
                    ..config.storage.store.clone()
                },
                failpoints: config.storage.failpoints,
                topology: topology.clone(),
                cluster: config.cluster.clone(),
                bind_retry: config.bind_retry,
                requests: requests.clone(),
                replies: replies.clone(),
                mode: config.net,
                cache_settings: config.cache.clone(),
                shard_count: config.shards,
                listeners,
                stop,
                stop_fd,
                ready: ready_tx.clone(),
                go,
                serving,
            };
            let placement = match config.first_cpu {
                Some(first) => Placement::Fixed(first + k),
                None => Placement::Unbound,
            };
            let handle = LocalExecutorBuilder::new(placement)
                .name(&format!("tern-shard-{k}"))
                .io_memory(config.io_memory_bytes)
                .spawn(move || run_shard(k, start))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "could not start the executor of shard {k}: {e}. If this is about locked \
                         memory, lower --io-memory or raise the limit (`ulimit -l`); if it is about \
                         CPU placement, use --cores with at most the CPUs this process may use or --no-pin"
                    )
                })?;
            handles.push(handle);
        }
        drop(ready_tx);
        let mut failures = Vec::new();
        for _ in 0..config.shards {
            match ready_rx.recv() {
                Ok((_, Ok(summary))) => tracing::info!("{summary}"),
                Ok((_, Err(msg))) => failures.push(msg),
                Err(_) => {
                    failures.push("a shard's executor ended before reporting".into());
                    break;
                }
            }
        }
        let ok = failures.is_empty();
        for go in &gos {
            let _ = go.send(ok);
        }
        let mut node = Node {
            topology,
            stops,
            handles,
        };
        if !ok {
            let _ = node.join_all();
            bail!("{}", failures.join("; "));
        }
        // Ready only once every transport accepts: a shard whose executor failed first
        // drops its sender unsent.
        let deadline = Instant::now() + Duration::from_millis(STARTUP_SERVING_TIMEOUT_MS);
        for (k, serving) in servings.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            match serving.recv_timeout(left) {
                Ok(()) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // A shard that neither serves nor fails: ask every shard to stop and
                    // give up rather than hang unready (joining may wait on that shard;
                    // the process exit ends it).
                    node.shutdown();
                    bail!(
                        "shard {k} did not start serving within {STARTUP_SERVING_TIMEOUT_MS} ms \
                         of recovering (joining the channel meshes or opening its sockets)"
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The others may be serving already: stop them before joining.
                    node.shutdown();
                    let why = node
                        .join_all()
                        .err()
                        .map_or_else(|| "it ended".to_owned(), |e| format!("{e:#}"));
                    bail!("shard {k} did not start serving: {why}");
                }
            }
        }
        Ok(node)
    }

    /// Asks every shard to stop (stop accepting, close connections).
    pub fn shutdown(&self) {
        self.stopper().stop();
    }

    /// A handle that can stop the node from another thread (e.g. a signal handler).
    pub fn stopper(&self) -> Stopper {
        Stopper(self.stops.clone())
    }

    /// Waits for every shard to stop; the first error wins.
    pub fn join(mut self) -> anyhow::Result<()> {
        self.join_all()
    }

    /// Joins every executor; one failing stops the others.
    fn join_all(&mut self) -> anyhow::Result<()> {
        let mut first_err = None;
        for (k, h) in std::mem::take(&mut self.handles).into_iter().enumerate() {
            let result = match h.join() {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("shard {k} executor failed: {e}")),
            };
            if let Err(e) = result {
                // One shard failing stops the node: tell the others.
                for stop in &self.stops {
                    stop.stop();
                }
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Binds shard `k`'s peer listener (retrying a port a killed predecessor still holds)
/// and starts its peer transport.
async fn start_peers(
    k: usize,
    c: &ClusterConfig,
    bind_retry: Duration,
    core: &Rc<Core>,
) -> anyhow::Result<Rc<Peers>> {
    let port = |base: u16| {
        u16::try_from(base as usize + k)
            .context("a peer port above 65535: choose a lower --peer-port")
    };
    let addr = SocketAddr::new(c.peer_host, port(c.peer_port)?);
    let deadline = Instant::now() + bind_retry;
    let listener = loop {
        match glommio::net::TcpListener::bind(addr) {
            Ok(l) => break l,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("shard {k}: binding the peer port {addr}: {e}; retrying");
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => bail!("shard {k}: binding the peer port {addr}: {e}"),
        }
    };
    let peers = c
        .peers
        .iter()
        .map(|(&id, a)| Ok((id, SocketAddr::new(a.ip(), port(a.port())?))))
        .collect::<anyhow::Result<HashMap<_, _>>>()?;
    let cfg = PeerConfig {
        id: c.node,
        secret: c.secret.clone(),
        peers,
    };
    Peers::start(cfg, listener, Core::peer_inbox(core))
        .with_context(|| format!("shard {k}: starting the peer transport"))
}

/// One shard's executor, from recovery to the end of its shutdown.
async fn run_shard(k: usize, start: ShardStart) -> anyhow::Result<()> {
    let ShardStart {
        shard_dir,
        store_config,
        failpoints,
        topology,
        cluster,
        bind_retry,
        requests,
        replies,
        mode,
        cache_settings,
        shard_count,
        listeners,
        stop,
        stop_fd,
        ready,
        go,
        serving,
    } = start;
    // Recover first; join the meshes only once every shard has.
    let shard = match Shard::open(k as u32, &shard_dir, store_config, failpoints) {
        Ok((shard, report)) => {
            let summary = format!(
                "shard {k}: recovered {} item(s) from {} ({} record(s), {} byte(s) of log replayed{}{}) in {:.3} s",
                report.items,
                shard_dir.display(),
                report.records_replayed,
                report.bytes_replayed,
                report
                    .checkpoint
                    .as_ref()
                    .map_or(String::new(), |c| format!(" after checkpoint {c}")),
                report
                    .torn_tail
                    .map_or(String::new(), |(seg, at, n)| format!(
                        "; cut a torn tail of {n} byte(s) at segment {seg} offset {at}"
                    )),
                report.elapsed.as_secs_f64(),
            );
            for bad in &report.bad_checkpoints {
                tracing::warn!("shard {k}: skipped checkpoint {bad}");
            }
            if let Some(c) = &report.corruption {
                tracing::error!(
                    "shard {k}: LOG CORRUPTION in {}: {c}. This shard refuses every request (its data cannot be verified); the other shards serve. Restore the directory from a replica or backup.",
                    shard_dir.display()
                );
            }
            let _ = ready.send((k, Ok(summary)));
            shard
        }
        Err(e) => {
            let msg = format!("shard {k}: opening {}: {e}", shard_dir.display());
            let _ = ready.send((k, Err(msg.clone())));
            bail!(msg);
        }
    };
    // A blocking wait of the startup handshake only (the stop signal has its own
    // eventfd, so glommio's blocking thread is free again after this).
    let go = glommio::executor()
        .spawn_blocking(move || go.recv().unwrap_or(false))
        .await;
    if !go {
        return Ok(());
    }
    let (req_tx, req_rx) = requests
        .join()
        .await
        .map_err(|_| anyhow::anyhow!("shard {k}: joining the request mesh failed"))?;
    let (rep_tx, rep_rx) = replies
        .join()
        .await
        .map_err(|_| anyhow::anyhow!("shard {k}: joining the reply mesh failed"))?;
    let mesh = Mesh::new(k as u32, req_tx, rep_tx);
    let cache = ShardCacheState::new(&cache_settings, shard_count);
    let (core, peers) = match &cluster {
        None => (Core::new(topology, mesh.clone(), shard, cache), None),
        Some(c) => {
            let settings = ReplSettings {
                node: c.node,
                voters: c.voters.clone(),
                seed: c.node.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ k as u64,
            };
            let core = Core::new_replicated(topology, mesh.clone(), shard, cache, &settings)
                .map_err(|e| anyhow::anyhow!("shard {k}: starting its Raft replica: {e}"))?;
            let peers = start_peers(k, c, bind_retry, &core).await?;
            core.set_peers(peers.clone());
            glommio::spawn_local(run_driver(core.clone())).detach();
            glommio::spawn_local(run_ticker(Rc::downgrade(&core))).detach();
            (core, Some(peers))
        }
    };
    glommio::spawn_local(run_flusher(core.clone())).detach();
    let maintenance = glommio::executor().create_task_queue(
        Shares::Static(100),
        Latency::NotImportant,
        "maintenance",
    );
    glommio::spawn_local_into(run_maintenance(core.clone()), maintenance)
        .map_err(|e| anyhow::anyhow!("shard {k}: starting maintenance: {e}"))?
        .detach();
    let handler_core = core.clone();
    spawn_loops(mesh, req_rx, rep_rx, move |call| {
        handler_core.clone().handle_call(call)
    });
    let shutdown = Shutdown::default();
    glommio::spawn_local(crate::stop::watch(stop_fd, shutdown.clone())).detach();
    let phase = stop.clone();
    let served = net::serve(
        mode,
        listeners,
        Rc::new(CoreService(core.clone())),
        Wakeup::new(),
        shutdown.clone(),
        Box::new(move || {
            phase.set_phase(Phase::Serving);
            let _ = serving.send(());
        }),
    );
    // The transport returns once the stop is asked (or it failed).
    let served = {
        let stopping = stop.clone();
        let trigger = shutdown.clone();
        futures_lite::future::or(served, async move {
            trigger.wait().await;
            stopping.set_phase(Phase::StoppingTransport);
            std::future::pending().await
        })
        .await
        .with_context(|| format!("shard {k}: serving sockets"))
    };
    // Whatever was appended reaches the disk before the executor ends (with
    // --durability none, that includes acknowledged writes), unless the disk stopped
    // answering: then the shard stops anyway rather than hold the node forever.
    stop.set_phase(Phase::DrainingLog);
    let drained = futures_lite::future::or(
        async {
            core.drained().await;
            true
        },
        async {
            glommio::timer::sleep(Duration::from_millis(SHUTDOWN_DRAIN_LOG_TIMEOUT_MS)).await;
            false
        },
    )
    .await;
    if !drained {
        let shard = core.shard().borrow();
        let store = &shard.store;
        tracing::error!(
            "shard {k}: the log did not reach the disk within {} ms of shutdown ({} byte(s) \
             not yet written{}); stopping without it. Writes not acknowledged were not \
             applied{}",
            SHUTDOWN_DRAIN_LOG_TIMEOUT_MS,
            store.unwritten_bytes(),
            if store.flush_in_progress() {
                ", a write or sync to the disk still unanswered"
            } else {
                ""
            },
            match store.config().durability {
                tern_storage::store::Durability::Sync => {
                    "; every acknowledged write was synced before its acknowledgement."
                }
                tern_storage::store::Durability::None => {
                    "; with --durability none, acknowledged writes not yet written are lost."
                }
            }
        );
    }
    if let Some(peers) = peers {
        peers.close().await;
    }
    stop.set_phase(Phase::Stopped);
    if !drained {
        bail!("shard {k}: stopped before its log reached the disk (see the error above)");
    }
    served
}
