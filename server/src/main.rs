//! `ternd`: the tern server.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use std::time::Duration;
use tern_cache::{Policy, Ttls};
use tern_server::cache::{CacheSettings, default_cache_bytes};

use tern_server::limits::{BIND_RETRY_TIMEOUT_MS, SEGMENT_SIZE_MIN_BYTES, SHUTDOWN_DEADLINE_MS};
use tern_server::net::NetMode;
use tern_server::node::{ClusterConfig, Node, NodeConfig, StorageConfig, layout_shards};
use tern_server::supervisor::{AZS, LocalCluster};
use tern_storage::glommio_disk::DiskFailpoints;
use tern_storage::limits::SEGMENT_SIZE_MAX;
use tern_storage::store::{Durability, StoreConfig};

/// tern server: a DynamoDB-style database with a built-in cache, one shard per core.
///
/// With no arguments it starts a local three-AZ cluster: three node processes on this
/// machine (AZ a serves clients on 127.0.0.1:7000, b on 7100, c on 7200; shard k of a
/// node also listens on PORT+1+k), data under DATA_DIR/az-{a,b,c}, every shard a Raft
/// group of the three. It restarts a node that dies and stops them all on Ctrl-C.
/// `ternd node --az a --peer-port 7050 --peers b=HOST:7150,c=HOST:7250 --secret-file F`
/// runs one node of a real multi-machine cluster; `--replicas 1` runs a single node
/// without replication.
///
/// DURABILITY: every shard keeps an append-only log in DATA_DIR/shard-K. With the default
/// `--durability sync` a write is acknowledged only after fdatasync made its log record
/// durable (many writes share one sync: group commit), so an acknowledged write survives
/// a process kill and a machine crash. `--durability none` acknowledges at once and never
/// syncs: a machine crash (or power loss) loses recent writes; use it only to measure the
/// engine and cache alone.
#[derive(Parser, Debug)]
#[command(name = "ternd", version)]
struct Args {
    /// `node`: run one node of a cluster (needs --az, --peer-port, --peers, --secret-file).
    #[arg(value_enum)]
    mode: Option<Mode>,
    /// Without `node`: 3 starts the local three-AZ cluster, 1 a single node.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// `node`: this node's availability zone (a letter: a is node 1, b node 2, ...).
    #[arg(long)]
    az: Option<char>,
    /// `node`: the other nodes, AZ=HOST:PEER_PORT, comma-separated (e.g.
    /// b=10.0.0.2:7050,c=10.0.0.3:7050); shard k of a node accepts peers on PEER_PORT+k.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// `node` joining an existing cluster (a replacement started on an empty data
    /// directory): the AZs the cluster was first started with, e.g. a,b,c. Its shards
    /// then wait to be added (`tern add-voter`) and catch up from the leaders.
    #[arg(long, value_delimiter = ',')]
    initial_voters: Vec<char>,
    /// `node`: the first port this node accepts its peers on (shard k: PEER_PORT+k).
    #[arg(long)]
    peer_port: Option<u16>,
    /// `node`: the file holding the cluster secret (at least 16 bytes; the same on every
    /// node). The environment variable TERN_CLUSTER_SECRET may hold it instead.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// `node` started by the local cluster's supervisor: exit when it does.
    #[arg(long, hide = true)]
    supervisor_pid: Option<u32>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Shared binary-protocol port; shard k listens on PORT+1+k. 0 = ephemeral ports.
    #[arg(long, default_value_t = 7000)]
    port: u16,
    /// Number of shards (one pinned executor per core). Default: all CPUs.
    #[arg(long)]
    cores: Option<usize>,
    /// First CPU to pin to (shard k runs on CPU FIRST_CPU+k).
    #[arg(long, default_value_t = 0)]
    first_cpu: usize,
    /// Do not pin executors to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Client socket I/O: `uring` (the shard's own io_uring ring, the default) or
    /// `glommio` (glommio's sockets, one task per connection; for comparison).
    #[arg(long, default_value = "uring")]
    net: NetMode,
    /// Locked I/O memory per executor, in KiB (glommio io_memory). The whole process must
    /// stay under `ulimit -l`.
    #[arg(long, default_value_t = 1024)]
    io_memory_kib: usize,
    /// Node name reported to clients (a cluster node's default: az-AZ).
    #[arg(long, default_value = DEFAULT_NODE_ID)]
    node_id: String,
    /// Data directory: shard k keeps its log and checkpoints in DATA_DIR/shard-k.
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// `sync`: acknowledge writes after fdatasync (group commit). `none`: acknowledge at
    /// once, never sync (a machine crash loses recent writes).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    durability: DurabilityArg,
    /// Log segment size in MiB (preallocated and zero-filled before use).
    #[arg(long, default_value_t = 64)]
    segment_size_mib: u64,
    /// Write an index checkpoint after this many MiB of log (bounds recovery time).
    #[arg(long, default_value_t = 512)]
    checkpoint_every_mib: u64,
    /// Compact a sealed segment once this fraction of it is dead (overwritten or deleted).
    #[arg(long, default_value_t = 0.5)]
    compact_dead_ratio: f64,
    /// Memory for the item and query cache of the whole node, split evenly across shards
    /// (bytes, or with a K/M/G suffix, powers of 1024). Default: an eighth of RAM.
    #[arg(long, value_parser = parse_size)]
    cache_size: Option<usize>,
    /// Cache eviction: `s3fifo` (scan-resistant, the default) or `lru` (for comparison).
    #[arg(long, value_enum, default_value_t = PolicyArg::S3fifo)]
    cache_policy: PolicyArg,
    /// Item cache TTL in milliseconds (DAX's default: 5 minutes); 0 disables the item cache.
    #[arg(long, default_value_t = tern_cache::DEFAULT_TTL_MS)]
    item_cache_ttl_ms: u64,
    /// Query and Scan cache TTL in milliseconds; 0 disables the query cache.
    #[arg(long, default_value_t = tern_cache::DEFAULT_TTL_MS)]
    query_cache_ttl_ms: u64,
    /// Per-table TTLs, `TABLE=ITEM_MS:QUERY_MS` (0 disables that cache for the table);
    /// repeatable.
    #[arg(long, value_parser = parse_table_ttl)]
    table_cache_ttl: Vec<(String, Ttls)>,
    /// At start, keep retrying a port that is in use for this long (a killed
    /// predecessor's sockets are released a moment after it dies), in milliseconds.
    #[arg(long, default_value_t = BIND_RETRY_TIMEOUT_MS)]
    bind_retry_ms: u64,
    /// Fault injection for tests: every shard's fdatasync fails with EIO after this many.
    #[arg(long, hide = true)]
    inject_sync_failure_after: Option<u64>,
    /// Fault injection for tests: every shard's fdatasync never completes after this many.
    #[arg(long, hide = true)]
    inject_sync_stall_after: Option<u64>,
    /// Benchmarks: the uring transport's ring without SINGLE_ISSUER | COOP_TASKRUN (what
    /// a kernel that refuses them gets).
    #[arg(long, hide = true)]
    uring_plain: bool,
    /// For tests: refuse new keys once a table's index on a shard holds this many key
    /// bytes (the real bound is ~3.75 GiB, too much to reach in a test).
    #[arg(long, hide = true)]
    index_key_bytes_max: Option<u64>,
}

const DEFAULT_NODE_ID: &str = "local-a";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Node,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PolicyArg {
    S3fifo,
    Lru,
}

/// `4096`, `64K`, `512M`, `2G` (also `KiB`/`MiB`/`GiB`): bytes, powers of 1024.
fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size: expected e.g. 4096, 64K, 512M, 2G"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        other => return Err(format!("unknown size unit {other:?}: use K, M or G")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `TABLE=ITEM_MS:QUERY_MS`.
fn parse_table_ttl(s: &str) -> Result<(String, Ttls), String> {
    let bad = || format!("{s:?}: expected TABLE=ITEM_MS:QUERY_MS, e.g. orders=60000:0");
    let (table, ttls) = s.rsplit_once('=').ok_or_else(bad)?;
    let (item, query) = ttls.split_once(':').ok_or_else(bad)?;
    if table.is_empty() {
        return Err(bad());
    }
    Ok((
        table.to_owned(),
        Ttls {
            item_ms: item.trim().parse().map_err(|_| bad())?,
            query_ms: query.trim().parse().map_err(|_| bad())?,
        },
    ))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DurabilityArg {
    Sync,
    None,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.mode.is_none() && args.replicas != 1 {
        if args.replicas != 3 {
            anyhow::bail!("--replicas must be 1 (a single node) or 3 (the local three-AZ cluster)");
        }
        return tern_server::supervisor::run_local_cluster(&local_cluster(&args)?);
    }
    tern_server::net::set_uring_setup_flags(!args.uring_plain);
    if let Some(pid) = args.supervisor_pid {
        tern_server::supervisor::die_with_supervisor(pid)?;
    }
    let cluster = match args.mode {
        Some(Mode::Node) => Some(cluster_config(&args)?),
        None => None,
    };
    // A cluster node is named after its AZ unless told otherwise.
    let node_id = match (args.az, args.node_id.as_str()) {
        (Some(az), DEFAULT_NODE_ID) if cluster.is_some() => format!("az-{az}"),
        _ => args.node_id.clone(),
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // An existing data directory fixes the shard count (its partition map depends on it).
    let shards = args
        .cores
        .or_else(|| layout_shards(&args.data_dir))
        .unwrap_or(cpus);
    if !(0.0..=1.0).contains(&args.compact_dead_ratio) {
        anyhow::bail!("--compact-dead-ratio must be between 0 and 1");
    }
    let segment_size = args.segment_size_mib.saturating_mul(1 << 20);
    if !(SEGMENT_SIZE_MIN_BYTES..=SEGMENT_SIZE_MAX).contains(&segment_size) {
        anyhow::bail!(
            "--segment-size-mib must be between {} (one log record of the largest item must fit) and {}",
            SEGMENT_SIZE_MIN_BYTES.div_ceil(1 << 20),
            SEGMENT_SIZE_MAX >> 20
        );
    }
    let config = NodeConfig {
        host: args.host,
        port: args.port,
        shards,
        first_cpu: (!args.no_pin).then_some(args.first_cpu),
        net: args.net,
        io_memory_bytes: args.io_memory_kib * 1024,
        bind_retry: Duration::from_millis(args.bind_retry_ms),
        node_id,
        storage: StorageConfig {
            data_dir: args.data_dir.clone(),
            store: StoreConfig {
                segment_size,
                durability: match args.durability {
                    DurabilityArg::Sync => Durability::Sync,
                    DurabilityArg::None => Durability::None,
                },
                checkpoint_every_bytes: args.checkpoint_every_mib.saturating_mul(1 << 20),
                compact_dead_ratio: args.compact_dead_ratio,
                index_key_bytes_max: args
                    .index_key_bytes_max
                    .unwrap_or(StoreConfig::default().index_key_bytes_max),
                ..StoreConfig::default()
            },
            failpoints: DiskFailpoints {
                fail_sync_after: args.inject_sync_failure_after,
                stall_sync_after: args.inject_sync_stall_after,
            },
        },
        cache: CacheSettings {
            size_bytes: args.cache_size.unwrap_or_else(default_cache_bytes),
            policy: match args.cache_policy {
                PolicyArg::S3fifo => Policy::S3Fifo,
                PolicyArg::Lru => Policy::Lru,
            },
            item_ttl_ms: args.item_cache_ttl_ms,
            query_ttl_ms: args.query_cache_ttl_ms,
            table_ttls: args.table_cache_ttl,
        },
        cluster,
    };
    let node = Node::start(&config)?;
    let t = &node.topology;
    let ports: Vec<String> = t.shards.iter().map(|(_, p)| p.to_string()).collect();
    // The readiness line: printed once every shard's transport accepts. (Right after a
    // predecessor was killed, its sockets may still accept into a backlog nobody reads:
    // a port that accepts is no readiness check; this line is.)
    println!(
        "{{\"event\":\"ready\",\"host\":\"{}\",\"shared_port\":{},\"shard_ports\":[{}],\"net\":\"{:?}\",\"pid\":{},\"node\":{}}}",
        config.host,
        t.shared_port,
        ports.join(","),
        config.net,
        std::process::id(),
        config.cluster.as_ref().map_or(0, |c| c.node),
    );
    eprintln!(
        "ternd: serving {} shard(s) on {}:{} (shard ports {}), net={:?}, data in {} (durability {:?}), cache {} MiB ({:?}). Ctrl-C to stop.",
        t.shard_count(),
        config.host,
        t.shared_port,
        ports.join(", "),
        config.net,
        args.data_dir.display(),
        args.durability,
        config.cache.size_bytes >> 20,
        config.cache.policy,
    );
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let signals_handle = signals.handle();
    let stopper = node.stopper();
    let signal_thread = std::thread::spawn(move || {
        let mut signals = signals.forever();
        let Some(sig) = signals.next() else { return };
        eprintln!(
            "ternd: signal {sig}, shutting down (at most {} s; a second signal exits at once)",
            SHUTDOWN_DEADLINE_MS / 1000
        );
        stopper.stop();
        let watchdog = stopper.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(SHUTDOWN_DEADLINE_MS));
            let phases: Vec<String> = watchdog
                .phases()
                .iter()
                .enumerate()
                .map(|(k, p)| format!("shard {k}: {p}"))
                .collect();
            eprintln!(
                "ternd: still stopping {} s after the signal ({}); exiting now",
                SHUTDOWN_DEADLINE_MS / 1000,
                phases.join(", ")
            );
            std::process::exit(1);
        });
        if let Some(again) = signals.next() {
            eprintln!("ternd: signal {again} again, exiting now");
            std::process::exit(128 + again);
        }
    });
    let result = node.join();
    signals_handle.close();
    let _ = signal_thread.join();
    if result.is_ok() {
        eprintln!("ternd: stopped");
    }
    result
}

/// An AZ letter's node id: a is 1, b is 2, ...
fn az_node(az: char) -> anyhow::Result<u64> {
    if az.is_ascii_lowercase() {
        Ok(az as u64 - 'a' as u64 + 1)
    } else {
        anyhow::bail!("an AZ is a lower-case letter (a, b, c, ...), not {az:?}")
    }
}

/// `ternd node`: this node's place in its cluster.
fn cluster_config(args: &Args) -> anyhow::Result<ClusterConfig> {
    use anyhow::Context;
    let az = args.az.context("`ternd node` needs --az (a, b, c, ...)")?;
    let node = az_node(az)?;
    let peer_port = args
        .peer_port
        .context("`ternd node` needs --peer-port (where its peers connect)")?;
    let mut peers = HashMap::new();
    for p in &args.peers {
        let bad = || format!("--peers {p:?}: expected AZ=HOST:PORT, e.g. b=10.0.0.2:7050");
        let (a, addr) = p.split_once('=').with_context(bad)?;
        let mut chars = a.chars();
        let (Some(a), None) = (chars.next(), chars.next()) else {
            anyhow::bail!(bad());
        };
        let id = az_node(a)?;
        if id == node {
            anyhow::bail!("--peers names this node's own AZ {a}");
        }
        let addr = addr
            .to_socket_addrs()
            .with_context(bad)?
            .next()
            .with_context(bad)?;
        if peers.insert(id, addr).is_some() {
            anyhow::bail!("--peers names AZ {a} twice");
        }
    }
    if peers.is_empty() {
        anyhow::bail!("`ternd node` needs --peers (the other nodes, AZ=HOST:PEER_PORT)");
    }
    let secret = match (&args.secret_file, std::env::var("TERN_CLUSTER_SECRET")) {
        (Some(f), _) => std::fs::read_to_string(f)
            .with_context(|| format!("reading the cluster secret {}", f.display()))?,
        (None, Ok(s)) => s,
        (None, Err(_)) => anyhow::bail!(
            "`ternd node` needs the cluster secret: --secret-file FILE or TERN_CLUSTER_SECRET"
        ),
    };
    let secret = secret.trim().as_bytes().to_vec();
    if secret.len() < tern_replica::peer::SECRET_MIN_BYTES {
        anyhow::bail!(
            "the cluster secret must have at least {} bytes",
            tern_replica::peer::SECRET_MIN_BYTES
        );
    }
    let mut voters: Vec<u64> = if args.initial_voters.is_empty() {
        peers.keys().copied().chain([node]).collect()
    } else {
        args.initial_voters
            .iter()
            .map(|&a| az_node(a))
            .collect::<anyhow::Result<_>>()?
    };
    voters.sort_unstable();
    voters.dedup();
    Ok(ClusterConfig {
        node,
        voters,
        peer_host: args.host,
        peer_port,
        peers,
        secret,
    })
}

/// The name clap gives a value.
fn arg_name(v: &impl ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default()
}

/// `ternd` with its defaults: the local three-AZ cluster, every node given this
/// invocation's settings (the cache split three ways).
fn local_cluster(args: &Args) -> anyhow::Result<LocalCluster> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = args.cores.unwrap_or(cpus);
    let cache = args.cache_size.unwrap_or_else(default_cache_bytes) / AZS.len();
    let mut a: Vec<String> = vec![
        "--cores".into(),
        cores.to_string(),
        "--net".into(),
        match args.net {
            NetMode::Uring => "uring".into(),
            NetMode::Glommio => "glommio".into(),
        },
        "--io-memory-kib".into(),
        args.io_memory_kib.to_string(),
        "--durability".into(),
        arg_name(&args.durability),
        "--segment-size-mib".into(),
        args.segment_size_mib.to_string(),
        "--checkpoint-every-mib".into(),
        args.checkpoint_every_mib.to_string(),
        "--compact-dead-ratio".into(),
        args.compact_dead_ratio.to_string(),
        "--cache-size".into(),
        cache.to_string(),
        "--cache-policy".into(),
        arg_name(&args.cache_policy),
        "--item-cache-ttl-ms".into(),
        args.item_cache_ttl_ms.to_string(),
        "--query-cache-ttl-ms".into(),
        args.query_cache_ttl_ms.to_string(),
        "--bind-retry-ms".into(),
        args.bind_retry_ms.to_string(),
    ];
    if args.uring_plain {
        a.push("--uring-plain".into());
    }
    if args.no_pin {
        a.push("--no-pin".into());
    } else {
        a.extend(["--first-cpu".into(), args.first_cpu.to_string()]);
    }
    for (table, ttl) in &args.table_cache_ttl {
        a.extend([
            "--table-cache-ttl".into(),
            format!("{table}={}:{}", ttl.item_ms, ttl.query_ms),
        ]);
    }
    Ok(LocalCluster {
        exe: std::env::current_exe()?,
        host: args.host,
        base_port: args.port,
        data_root: args.data_dir.clone(),
        node_args: a,
    })
}
