//! `get-instructions`: the server's own work for a cached GetItem, as instructions per
//! request under callgrind (this VM has no hardware counters for `perf stat`).
//!
//! It builds one shard's `Core` exactly as `ternd` does (store, catalog, cache, mesh of
//! one), puts `--keys` items of `--value-bytes`, reads each once (every item is then a
//! cache entry), and then serves `--batches` receive batches of `--depth` pipelined GET
//! frames: each batch is cut into frames by `parse_frame` and every frame handed to
//! `Core::dispatch`, whose reply frames go to one output buffer, cleared per batch — what
//! the socket transport does between a receive completion and its send. The measured
//! part is `serve_batch` alone:
//!
//! ```text
//! valgrind --tool=callgrind --toggle-collect='*serve_batch' \
//!     target/release/get-instructions --keys 100000 --batches 2000
//! ```
//!
//! then `callgrind_annotate` (total Ir ÷ the GETs printed). What it leaves out: the
//! ring's completion handling and the send submission (the transport's share, a few
//! hundred instructions per batch, not per GET) and the kernel. Without valgrind it
//! also prints ns per GET (one core, no network: a floor, not a benchmark).

use std::rc::Rc;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use clap::Parser;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use tern_protocol::frame::{FLAG_FOUND, NO_SHARD_HINT, Opcode, parse_frame, write_frame};
use tern_protocol::messages::{
    CreateTableRequest, GetItemRequest, PutItemRequest, ReturnValues, encode,
};
use tern_protocol::{Item, KeyAttr, KeySchema, ScalarType, Value};
use tern_server::cache::{CacheSettings, ShardCacheState};
use tern_server::core::{Core, Outcome};
use tern_server::mesh::{Mesh, Reply, Request};
use tern_server::shard::Shard;
use tern_server::topology::Topology;
use tern_storage::store::{Durability, StoreConfig};

#[derive(Parser, Debug)]
#[command(
    name = "get-instructions",
    about = "cached GetItem through Core::dispatch, for callgrind's instruction counts"
)]
struct Cli {
    /// Items put (and cached) before measuring.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Bytes of each item's value attribute.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Pipelined GETs per receive batch.
    #[arg(long, default_value_t = 16)]
    depth: usize,
    /// Receive batches served in the measured part.
    #[arg(long, default_value_t = 2_000)]
    batches: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ensure!(
        cli.keys > 0 && cli.depth > 0,
        "--keys and --depth must be positive"
    );
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 * 1024)
        .spawn(move || async move { run(cli).await })
        .map_err(|e| anyhow::anyhow!("spawning the executor: {e}"))?
        .join()
        .map_err(|e| anyhow::anyhow!("executor: {e:?}"))?
}

fn frame(opcode: Opcode, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, opcode, 0, id, NO_SHARD_HINT, &[body]);
    out
}

fn key_item(i: u64) -> Vec<u8> {
    Item::from_attrs([("id".to_owned(), Value::S(format!("user{i:012}")))]).encode()
}

async fn setup_request(core: &Rc<Core>, bytes: &[u8]) -> anyhow::Result<()> {
    let (f, _) = parse_frame(bytes)?.context("a whole frame")?;
    let mut out = Vec::new();
    match core.dispatch(f, &mut out) {
        Outcome::Done => Ok(()),
        Outcome::Later(fut) => {
            fut.await;
            Ok(())
        }
        Outcome::Durable { pos, .. } => {
            core.kick_flusher();
            core.durable(pos)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))
        }
        _ => bail!("a set-up request was forwarded or malformed"),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (req_tx, _req_rx) = MeshBuilder::<Request, _>::full(1, 16)
        .join()
        .await
        .map_err(|e| anyhow::anyhow!("mesh: {e}"))?;
    let (rep_tx, _rep_rx) = MeshBuilder::<Reply, _>::full(1, 16)
        .join()
        .await
        .map_err(|e| anyhow::anyhow!("mesh: {e}"))?;
    let data = tempfile::tempdir()?;
    // ternd's default: a write is durable once synced (the set-up flushes below).
    let config = StoreConfig {
        durability: Durability::Sync,
        ..StoreConfig::default()
    };
    let (shard, _) = Shard::open(0, data.path(), config, Default::default())?;
    let core = Core::new(
        Topology::new("bench".into(), 0, vec![(0, 0)]),
        Mesh::new(0, req_tx, rep_tx),
        shard,
        ShardCacheState::new(&CacheSettings::new(), 1),
    );
    let create = encode(&CreateTableRequest {
        name: "usertable".into(),
        key_schema: KeySchema {
            partition: KeyAttr {
                name: "id".into(),
                ty: ScalarType::S,
            },
            sort: None,
        },
    });
    glommio::spawn_local(tern_server::node::run_flusher(core.clone())).detach();
    setup_request(&core, &frame(Opcode::CreateTable, 1, &create)).await?;

    let value = "v".repeat(cli.value_bytes);
    let get_frame = |i: u64, id: u64| {
        frame(
            Opcode::GetItem,
            id,
            &encode(&GetItemRequest {
                table: "usertable".into(),
                key: key_item(i),
                consistent_read: false,
            }),
        )
    };
    let mut last = None;
    for i in 0..cli.keys {
        let item = Item::from_attrs([
            ("id".to_owned(), Value::S(format!("user{i:012}"))),
            ("field0".to_owned(), Value::S(value.clone())),
        ])
        .encode();
        let put = encode(&PutItemRequest {
            table: "usertable".into(),
            item,
            return_values: ReturnValues::None,
        });
        // Many puts per group commit: dispatch them all, wait for the last one's sync.
        let put = frame(Opcode::PutItem, 2, &put);
        let (f, _) = parse_frame(&put)?.context("a whole frame")?;
        let mut out = Vec::new();
        match core.dispatch(f, &mut out) {
            Outcome::Durable { pos, .. } => last = Some(pos),
            Outcome::Done => {}
            _ => bail!("a put was not applied here"),
        }
        if let Some(pos) = last.filter(|_| i % 4096 == 4095 || i + 1 == cli.keys) {
            core.kick_flusher();
            core.durable(pos)
                .await
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
    }
    for i in 0..cli.keys {
        // Puts write through to the cache; a read makes sure each is an entry.
        setup_request(&core, &get_frame(i, 3)).await?;
    }

    // Receive batches of pipelined GETs over keys in a scattered order (a multiplicative
    // permutation of 0..keys), as a uniform generator would send them.
    let mut batches = Vec::with_capacity(cli.batches);
    let mut k = 0u64;
    for b in 0..cli.batches {
        let mut buf = Vec::new();
        for d in 0..cli.depth {
            k = (k + 2_654_435_761) % cli.keys;
            buf.extend_from_slice(&get_frame(k, (b * cli.depth + d) as u64));
        }
        batches.push(buf);
    }
    let mut out = Vec::with_capacity(1 << 20);
    // Warm the code and the output buffer once; then the measured run.
    serve_batches(&core, &batches[..batches.len().min(8)], &mut out)?;
    let started = Instant::now();
    let found = serve_batches(&core, &batches, &mut out)?;
    let elapsed = started.elapsed();
    let gets = cli.batches * cli.depth;
    ensure!(found == gets, "{found} of {gets} GETs found their item");
    println!(
        "{{\"gets\":{gets},\"depth\":{},\"keys\":{},\"value_bytes\":{},\"ns_per_get\":{:.1}}}",
        cli.depth,
        cli.keys,
        cli.value_bytes,
        elapsed.as_nanos() as f64 / gets as f64
    );
    Ok(())
}

/// Serves every batch and counts the replies that said "found".
fn serve_batches(core: &Rc<Core>, batches: &[Vec<u8>], out: &mut Vec<u8>) -> anyhow::Result<usize> {
    let mut found = 0;
    for batch in batches {
        out.clear();
        serve_batch(core, batch, out)?;
        let mut replies = out.as_slice();
        while let Some((r, used)) = parse_frame(replies)? {
            found += usize::from(r.header.flags & FLAG_FOUND != 0);
            replies = &replies[used..];
        }
    }
    Ok(found)
}

/// The measured part: one receive batch cut into frames and dispatched, the replies
/// appended to `out`.
#[inline(never)]
fn serve_batch(core: &Rc<Core>, batch: &[u8], out: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut rest = batch;
    while let Some((f, used)) = parse_frame(rest)? {
        if !matches!(core.dispatch(f, out), Outcome::Done) {
            bail!("a cached GET was not answered at once");
        }
        rest = &rest[used..];
    }
    Ok(())
}
