//! `ternd`: the tern server.

use std::net::IpAddr;

use clap::Parser;
use tern_server::net::NetMode;
use tern_server::node::{Node, NodeConfig};

/// tern server: a DynamoDB-style database with a built-in cache, one shard per core.
///
/// With no arguments it serves on 127.0.0.1:7000 (binary protocol; shard k also listens
/// on 7001+k) with one shard per CPU.
///
/// DURABILITY: this build keeps data in memory only. Everything is lost when ternd stops;
/// the durable log arrives in a later release.
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
    /// Client socket I/O: `uring` (own io_uring ring per shard) or `glommio` (glommio's sockets).
    #[arg(long, default_value = "uring")]
    net: NetMode,
    /// Locked I/O memory per executor, in KiB (glommio io_memory). The whole process must
    /// stay under `ulimit -l`.
    #[arg(long, default_value_t = 1024)]
    io_memory_kib: usize,
    /// Node name reported to clients.
    #[arg(long, default_value = "local-a")]
    node_id: String,
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
    let shards = args.cores.unwrap_or(cpus);
    let config = NodeConfig {
        host: args.host,
        port: args.port,
        shards,
        first_cpu: (!args.no_pin).then_some(args.first_cpu),
        net: args.net,
        io_memory_bytes: args.io_memory_kib * 1024,
        node_id: args.node_id,
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
        "ternd: serving {} shard(s) on {}:{} (shard ports {}), net={:?}. In-memory only: data is lost on exit. Ctrl-C to stop.",
        t.shard_count(),
        config.host,
        t.shared_port,
        ports.join(", "),
        config.net
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
