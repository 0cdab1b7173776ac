//! `ternd`: the tern server.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use std::time::Duration;
use tern_cache::{Policy, Ttls};
use tern_server::cache::{CacheSettings, default_cache_bytes};

use tern_server::limits::{BIND_RETRY_TIMEOUT_MS, SEGMENT_SIZE_MIN_BYTES, SHUTDOWN_DEADLINE_MS};
use tern_server::net::NetMode;
use tern_server::node::{Node, NodeConfig, StorageConfig, layout_shards};
use tern_storage::glommio_disk::DiskFailpoints;
use tern_storage::limits::SEGMENT_SIZE_MAX;
use tern_storage::store::{Durability, StoreConfig};

/// tern server: a DynamoDB-style database with a built-in cache, one shard per core.
///
/// With no arguments it serves on 127.0.0.1:7000 (binary protocol; shard k also listens
/// on 7001+k) with one shard per CPU.
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
    /// Node name reported to clients.
    #[arg(long, default_value = "local-a")]
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
    /// For tests: refuse new keys once a table's index on a shard holds this many key
    /// bytes (the real bound is ~3.75 GiB, too much to reach in a test).
    #[arg(long, hide = true)]
    index_key_bytes_max: Option<u64>,
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
        node_id: args.node_id,
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
    };
    let node = Node::start(&config)?;
    let t = &node.topology;
    let ports: Vec<String> = t.shards.iter().map(|(_, p)| p.to_string()).collect();
    // The readiness line: printed once every shard's transport accepts. (Right after a
    // predecessor was killed, its sockets may still accept into a backlog nobody reads:
    // a port that accepts is no readiness check; this line is.)
    println!(
        "{{\"event\":\"ready\",\"host\":\"{}\",\"shared_port\":{},\"shard_ports\":[{}],\"net\":\"{:?}\"}}",
        config.host,
        t.shared_port,
        ports.join(","),
        config.net
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
