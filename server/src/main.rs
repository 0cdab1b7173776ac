//! `ternd`: the tern server.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use tern_server::net::NetMode;
use tern_server::node::{Node, NodeConfig, StorageConfig, layout_shards};
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
    /// Fault injection for tests: every shard's fdatasync fails with EIO after this many.
    #[arg(long, hide = true)]
    inject_sync_failure_after: Option<u64>,
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
    let config = NodeConfig {
        host: args.host,
        port: args.port,
        shards,
        first_cpu: (!args.no_pin).then_some(args.first_cpu),
        net: args.net,
        io_memory_bytes: args.io_memory_kib * 1024,
        node_id: args.node_id,
        storage: StorageConfig {
            data_dir: args.data_dir.clone(),
            store: StoreConfig {
                segment_size: args.segment_size_mib << 20,
                durability: match args.durability {
                    DurabilityArg::Sync => Durability::Sync,
                    DurabilityArg::None => Durability::None,
                },
                checkpoint_every_bytes: args.checkpoint_every_mib << 20,
                compact_dead_ratio: args.compact_dead_ratio,
                ..StoreConfig::default()
            },
            fail_sync_after: args.inject_sync_failure_after,
        },
    };
    let node = Node::start(&config)?;
    let t = &node.topology;
    let ports: Vec<String> = t.shards.iter().map(|(_, p)| p.to_string()).collect();
    println!(
        "{{\"event\":\"listening\",\"host\":\"{}\",\"shared_port\":{},\"shard_ports\":[{}],\"net\":\"{:?}\"}}",
        config.host,
        t.shared_port,
        ports.join(","),
        config.net
    );
    eprintln!(
        "ternd: serving {} shard(s) on {}:{} (shard ports {}), net={:?}, data in {} (durability {:?}). Ctrl-C to stop.",
        t.shard_count(),
        config.host,
        t.shared_port,
        ports.join(", "),
        config.net,
        args.data_dir.display(),
        args.durability,
    );
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let signals_handle = signals.handle();
    let stopper = node.stopper();
    let signal_thread = std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("ternd: signal {sig}, shutting down");
            stopper.stop();
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
