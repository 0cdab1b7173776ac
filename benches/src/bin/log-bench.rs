//! `log-bench`: the durable log on the real disk — recovery time and compaction's write
//! amplification. Each subcommand prints one JSON line (the summary, for scripts) and
//! human lines after it.
//!
//! ```text
//! log-bench recovery --gib 1 --value-bytes 1024
//! log-bench compaction --items 1000000 --value-bytes 200 --overwrites 3 [--dead-ratio 0.3]
//! ```
//!
//! * `recovery` appends about G GiB of puts of distinct keys (`Durability::None`, no
//!   checkpoint), flushes them, closes the store and times `Store::open` replaying the
//!   whole log: warm (the log in the page cache) and, when running as root, cold (after
//!   `sync; echo 3 > /proc/sys/vm/drop_caches`). Then it writes a checkpoint of the same
//!   state and times the reopen again (warm and cold).
//! * `compaction` loads N items, then overwrites uniformly random keys K×N times. It
//!   flushes every MiB appended and, every 50 ms of wall time, runs one turn of the
//!   server's maintenance task (`run_maintenance` in server/src/node.rs): a checkpoint
//!   when one is due, then the best segment past the dead ratio compacted
//!   (`compaction_candidate` → `compact_step`… → flush → `drop_segment`); at the end of
//!   each phase it runs turns until nothing is left to compact. Reports write
//!   amplification ((client + relocated bytes) ÷ client bytes), the device bytes written
//!   (records, zero-filled segments, checkpoints) and space amplification.
//!
//! The data directory is a fresh directory under `--dir` (default `target/bench`),
//! removed at the end. The store runs in one glommio executor (io_uring writes), as a
//! shard does; pin it with `taskset` or `--cpu`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};
use serde_json::{Value as Json, json};
use tern_protocol::keys::{KeyRef, encode_index_key, partition_hash};
use tern_storage::catalog::{KeyAttrDesc, KeyType, TableDesc};
use tern_storage::disk::Disk;
use tern_storage::flush::run_job;
use tern_storage::format::SEGMENT_HEADER_LEN;
use tern_storage::glommio_disk::GlommioDisk;
use tern_storage::store::{Durability, RecoveryReport, Store, StoreConfig};

const GIB: f64 = (1u64 << 30) as f64;
const MIB: u64 = 1 << 20;
/// Flush (and run maintenance) after this many bytes appended.
const BATCH_BYTES: u64 = MIB;
/// Bytes of a segment one compaction step examines (the server's `COMPACTION_STEP_BYTES`).
const COMPACTION_STEP_BYTES: usize = 256 << 10;
/// How often the server's maintenance task runs (`MAINTENANCE_PERIOD` in server/src/node.rs).
const MAINTENANCE_PERIOD: Duration = Duration::from_millis(50);
/// A checkpoint interval that never comes.
const NEVER: u64 = u64::MAX / 4;

#[derive(Parser, Debug)]
#[command(
    name = "log-bench",
    about = "tern's durable log on the real disk: recovery time, compaction write amplification"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Time Store::open replaying G GiB of log (warm and cold cache), then with a checkpoint.
    Recovery(RecoveryArgs),
    /// Write amplification and space amplification of compaction under random overwrites.
    Compaction(CompactionArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// Parent of the temporary data directory (use a directory on the disk to measure).
    #[arg(long, default_value = "target/bench")]
    dir: PathBuf,
    /// Log segment size in MiB (ternd's --segment-size-mib).
    #[arg(long, default_value_t = 64)]
    segment_size_mib: u64,
    /// glommio locked I/O memory in KiB (must fit `ulimit -l`).
    #[arg(long, default_value_t = 512)]
    io_memory_kib: usize,
    /// Pin the executor to this CPU.
    #[arg(long)]
    cpu: Option<usize>,
}

#[derive(Args, Debug)]
struct RecoveryArgs {
    #[command(flatten)]
    common: Common,
    /// GiB of log to write (record bytes).
    #[arg(long, default_value_t = 1.0)]
    gib: f64,
    /// Bytes of each item's value.
    #[arg(long, default_value_t = 1024)]
    value_bytes: usize,
    /// Do not drop the page cache (measure warm reopens only).
    #[arg(long)]
    no_drop_caches: bool,
}

#[derive(Args, Debug)]
struct CompactionArgs {
    #[command(flatten)]
    common: Common,
    /// Items loaded (distinct keys).
    #[arg(long, default_value_t = 1_000_000)]
    items: u64,
    /// Bytes of each item's value.
    #[arg(long, default_value_t = 200)]
    value_bytes: usize,
    /// Overwrites of uniformly random keys, as a multiple of --items.
    #[arg(long, default_value_t = 3.0)]
    overwrites: f64,
    /// Compact a sealed segment once this fraction of it is dead (ternd's
    /// --compact-dead-ratio).
    #[arg(long, default_value_t = 0.5)]
    dead_ratio: f64,
    /// Checkpoint after this many MiB of log (ternd's --checkpoint-every-mib).
    #[arg(long, default_value_t = 512)]
    checkpoint_every_mib: u64,
    /// Seed of the overwrite sequence.
    #[arg(long, default_value_t = 0x7465_726e)]
    seed: u64,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Recovery(args) => recovery(args),
        Cmd::Compaction(args) => compaction(args),
    };
    if let Err(e) = result {
        eprintln!("log-bench: {e:#}");
        std::process::exit(1);
    }
}

// -------------------------------------------------------------------------------------
// Shared

/// A fresh, absolute data directory under `parent` (removed when dropped).
fn data_dir(parent: &Path, prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    // Absolute: glommio opens the directory for syncs by path.
    let parent = std::path::absolute(parent)?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)
        .with_context(|| format!("a data directory in {}", parent.display()))
}

/// Runs `f` in a glommio executor (the store's disk needs one).
fn in_executor<T, F, Fut>(common: &Common, f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let placement = match common.cpu {
        Some(cpu) => Placement::Fixed(cpu),
        None => Placement::Unbound,
    };
    LocalExecutorBuilder::new(placement)
        .name("log-bench")
        .io_memory(common.io_memory_kib << 10)
        .make()
        .map_err(|e| anyhow::anyhow!("starting a glommio executor: {e} (is `ulimit -l` large enough for --io-memory-kib?)"))?
        .run(f())
}

/// The index key of YCSB key `i` ("user000000000042"), as the server builds it.
fn index_key(i: u64, out: &mut Vec<u8>) {
    let pk = format!("user{i:012}");
    let k = KeyRef::S(&pk);
    out.clear();
    encode_index_key(partition_hash("usertable", k), k, None, out);
}

fn table_desc() -> TableDesc {
    TableDesc {
        table_id: 0,
        name: "usertable".into(),
        partition_key: KeyAttrDesc {
            name: "pk".into(),
            ty: KeyType::S,
        },
        sort_key: None,
        creation_time_ms: 0,
    }
}

/// Writes every pending chunk (one job at a time, as the shard's flusher does).
async fn flush_all(store: &mut Store<GlommioDisk>, disk: &GlommioDisk) -> anyhow::Result<()> {
    while let Some(job) = store.next_flush() {
        let result = run_job(disk, job).await;
        store.finish_flush(result);
    }
    if let Some(e) = store.failure() {
        bail!("the store failed: {e}");
    }
    Ok(())
}

/// Waits until everything before `pos` is synced (`settled_pos`), as the server's
/// `Core::settled` does before background work makes files refer to records: a sync is
/// requested (`Durability::None` syncs only on request and at segment rolls).
async fn settle(
    store: &mut Store<GlommioDisk>,
    disk: &GlommioDisk,
    pos: tern_storage::store::LogPos,
) -> anyhow::Result<()> {
    if !store.is_settled(pos)? {
        store.request_sync();
        flush_all(store, disk).await?;
    }
    if !store.is_settled(pos)? {
        bail!("the log is not synced up to {pos:?} after a requested sync");
    }
    Ok(())
}

/// `sync; echo 3 > /proc/sys/vm/drop_caches`; false when not allowed (not root).
fn drop_caches() -> bool {
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// Bytes of the files in `dir`: (apparent length, allocated on the device).
fn dir_bytes(dir: &Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut len = 0;
    let mut allocated = 0;
    for entry in std::fs::read_dir(dir)? {
        let meta = entry?.metadata()?;
        len += meta.len();
        allocated += meta.blocks() * 512;
    }
    Ok((len, allocated))
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

// -------------------------------------------------------------------------------------
// recovery

/// After dropping the page cache: reads every file of `dir` front to back with `read(2)`
/// in 1 MiB pieces (kernel readahead on). What a cold replay would cost in I/O if it read
/// the log sequentially. `None` when the cache could not be dropped.
fn cold_sequential_read(dir: &Path) -> anyhow::Result<Option<(u64, f64)>> {
    use std::io::Read;
    if !drop_caches() {
        return Ok(None);
    }
    let started = Instant::now();
    let mut buf = vec![0u8; MIB as usize];
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let mut f = std::fs::File::open(entry?.path())?;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    Ok(Some((total, secs(started.elapsed()))))
}

/// One timed `Store::open`.
#[derive(Debug, Clone)]
struct Reopen {
    cache: &'static str,
    report: RecoveryReport,
}

impl Reopen {
    fn s_per_gib(&self) -> Option<f64> {
        let gib = self.report.bytes_replayed as f64 / GIB;
        (gib > 0.0).then(|| secs(self.report.elapsed) / gib)
    }

    fn records_per_s(&self) -> f64 {
        self.report.records_replayed as f64 / secs(self.report.elapsed).max(1e-9)
    }

    fn to_json(&self) -> Json {
        json!({
            "cache": self.cache,
            "elapsed_s": secs(self.report.elapsed),
            "bytes_replayed": self.report.bytes_replayed,
            "records_replayed": self.report.records_replayed,
            "segments_replayed": self.report.segments_replayed,
            "records_per_s": self.records_per_s(),
            "s_per_gib_replayed": self.s_per_gib(),
            "items": self.report.items,
            "checkpoint": self.report.checkpoint,
        })
    }

    fn human(&self, what: &str) -> String {
        format!(
            "{what} ({} cache): {:.3} s, {} records / {:.2} GiB replayed ({:.2} M records/s{}), {} items",
            self.cache,
            secs(self.report.elapsed),
            self.report.records_replayed,
            self.report.bytes_replayed as f64 / GIB,
            self.records_per_s() / 1e6,
            self.s_per_gib()
                .map_or(String::new(), |s| format!(", {s:.3} s per GiB")),
            self.report.items,
        )
    }
}

/// Opens the store in `dir`, checks what it recovered, closes it again.
fn reopen(
    dir: &Path,
    cfg: &StoreConfig,
    cache: &'static str,
    items: u64,
) -> anyhow::Result<Reopen> {
    let disk = GlommioDisk::open(dir)?;
    let (store, report) = Store::open(disk, cfg.clone())?;
    if let Some(c) = &report.corruption {
        bail!("recovery found corruption: {c}");
    }
    if report.items != items {
        bail!("recovered {} items, {items} were written", report.items);
    }
    drop(store);
    Ok(Reopen { cache, report })
}

/// Warm reopen, then (if allowed) a cold one after dropping the page cache.
fn reopen_warm_and_cold(
    dir: &Path,
    cfg: &StoreConfig,
    items: u64,
    cold: bool,
) -> anyhow::Result<(Vec<Reopen>, bool)> {
    let mut out = vec![reopen(dir, cfg, "warm", items)?];
    let dropped = cold && drop_caches();
    if dropped {
        out.push(reopen(dir, cfg, "cold", items)?);
    }
    Ok((out, dropped))
}

fn recovery(args: RecoveryArgs) -> anyhow::Result<()> {
    if args.gib.is_nan() || args.gib <= 0.0 {
        bail!("--gib must be positive");
    }
    let dir = data_dir(&args.common.dir, "log-bench-recovery-")?;
    let path = dir.path().to_owned();
    let cfg = StoreConfig {
        segment_size: args.common.segment_size_mib * MIB,
        durability: Durability::None,
        checkpoint_every_bytes: NEVER,
        ..StoreConfig::default()
    };
    let target = (args.gib * GIB) as u64;
    let value = vec![0x5au8; args.value_bytes];

    // Write.
    let started = Instant::now();
    let (items, log_bytes) = in_executor(&args.common, || {
        let (path, cfg, value) = (path.clone(), cfg.clone(), value.clone());
        async move {
            let disk = GlommioDisk::open(&path)?;
            let (mut store, _) = Store::open(disk.clone(), cfg)?;
            let (t, _) = store.create_table(table_desc())?;
            let mut key = Vec::new();
            let mut items = 0u64;
            let mut since_flush = 0u64;
            while store.stats().client_bytes < target {
                index_key(items, &mut key);
                let before = store.stats().client_bytes;
                store.put(t, &key, &value, value.len() as u32)?;
                since_flush += store.stats().client_bytes - before;
                items += 1;
                if since_flush >= BATCH_BYTES {
                    flush_all(&mut store, &disk).await?;
                    since_flush = 0;
                }
            }
            flush_all(&mut store, &disk).await?;
            Ok((items, store.stats().client_bytes))
        }
    })?;
    let write_secs = secs(started.elapsed());
    let cold_wanted = !args.no_drop_caches;

    // Reopen replaying the whole log (GlommioDisk::open and Store::open are synchronous).
    let (replay, dropped) = reopen_warm_and_cold(&path, &cfg, items, cold_wanted)?;
    let sequential = if dropped {
        cold_sequential_read(&path)?
    } else {
        None
    };

    // A checkpoint of the same state, then reopen again.
    let (ckpt_bytes, ckpt_write_secs) = in_executor(&args.common, || {
        let (path, cfg) = (path.clone(), cfg.clone());
        async move {
            let disk = GlommioDisk::open(&path)?;
            let (mut store, _) = Store::open(disk.clone(), cfg)?;
            let started = Instant::now();
            let mut job = store.begin_checkpoint();
            settle(&mut store, &disk, job.settle_to).await?;
            let bytes = job.bytes.len() as u64;
            let result = disk
                .write_file(&job.file, std::mem::take(&mut job.bytes))
                .await;
            let failed = result.as_ref().err().map(|e| e.to_string());
            store.checkpoint_written(&job, result);
            if let Some(e) = failed {
                bail!("writing checkpoint {}: {e}", job.file);
            }
            Ok((bytes, secs(started.elapsed())))
        }
    })?;
    let (with_ckpt, _) = reopen_warm_and_cold(&path, &cfg, items, cold_wanted)?;
    let (files_bytes, _) = dir_bytes(&path)?;
    drop(dir);

    let summary = json!({
        "bench": "recovery",
        "gib": args.gib,
        "value_bytes": args.value_bytes,
        "segment_size_mib": args.common.segment_size_mib,
        "items": items,
        "log_bytes": log_bytes,
        "files_bytes": files_bytes,
        "write_s": write_secs,
        "caches_dropped": dropped,
        "replay": replay.iter().map(Reopen::to_json).collect::<Vec<_>>(),
        "cold_sequential_read": sequential.map(|(bytes, s)| json!({"bytes": bytes, "elapsed_s": s, "s_per_gib": s / (bytes as f64 / GIB)})),
        "checkpoint_bytes": ckpt_bytes,
        "checkpoint_write_s": ckpt_write_secs,
        "with_checkpoint": with_ckpt.iter().map(Reopen::to_json).collect::<Vec<_>>(),
        "target_s_per_gib": 1.0,
    });
    println!("{summary}");
    println!(
        "wrote {items} items of {} B: {:.2} GiB of log in {write_secs:.1} s; page cache {}",
        args.value_bytes,
        log_bytes as f64 / GIB,
        if dropped {
            "dropped before each cold reopen"
        } else if cold_wanted {
            "NOT dropped (not root?): warm reopens only"
        } else {
            "not dropped (--no-drop-caches)"
        }
    );
    for r in &replay {
        let verdict = match r.s_per_gib() {
            Some(s) if s <= 1.0 => " — target ≤ 1 s/GiB met",
            Some(_) => " — target ≤ 1 s/GiB NOT met",
            None => "",
        };
        println!("{}{verdict}", r.human("full replay"));
    }
    if let Some((bytes, s)) = sequential {
        println!(
            "for comparison, reading the same files cold and sequentially (read(2), readahead): {:.2} GiB in {s:.3} s, {:.3} s per GiB",
            bytes as f64 / GIB,
            s / (bytes as f64 / GIB)
        );
    }
    println!(
        "checkpoint: {:.1} MiB written in {ckpt_write_secs:.3} s",
        ckpt_bytes as f64 / MIB as f64
    );
    for r in &with_ckpt {
        println!("{}", r.human("reopen with checkpoint"));
    }
    Ok(())
}

// -------------------------------------------------------------------------------------
// compaction

/// splitmix64: enough for uniformly random keys.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((u128::from(z) * u128::from(n)) >> 64) as u64
    }
}

#[derive(Debug, Default)]
struct Maintenance {
    checkpoint_bytes: u64,
    compaction_time: Duration,
    ticks: u64,
}

/// One turn of the server's maintenance task (`run_maintenance` in server/src/node.rs):
/// a checkpoint if one is due, then the best compaction candidate, if any, compacted and
/// dropped. Returns whether a segment was compacted.
async fn maintenance_tick(
    store: &mut Store<GlommioDisk>,
    disk: &GlommioDisk,
    m: &mut Maintenance,
) -> anyhow::Result<bool> {
    m.ticks += 1;
    flush_all(store, disk).await?;
    if store.checkpoint_due() {
        let mut job = store.begin_checkpoint();
        settle(store, disk, job.settle_to).await?;
        m.checkpoint_bytes += job.bytes.len() as u64;
        let result = disk
            .write_file(&job.file, std::mem::take(&mut job.bytes))
            .await;
        store.checkpoint_written(&job, result);
    }
    let Some(segment) = store.compaction_candidate() else {
        return Ok(false);
    };
    let started = Instant::now();
    let mut cursor = Some(0u32);
    while let Some(at) = cursor {
        cursor = store.compact_step(segment, at, COMPACTION_STEP_BYTES)?;
        flush_all(store, disk).await?;
    }
    // The copies must be synced before the segment goes (the server's `compact`).
    settle(store, disk, store.appended_pos()).await?;
    store.drop_segment(segment)?;
    m.compaction_time += started.elapsed();
    Ok(true)
}

/// Writes, with maintenance ticks every `MAINTENANCE_PERIOD` of wall time in between (the
/// server's cadence), flushing every `BATCH_BYTES`.
struct Writer {
    since_flush: u64,
    last_tick: Instant,
    m: Maintenance,
}

impl Writer {
    async fn appended(
        &mut self,
        bytes: u64,
        store: &mut Store<GlommioDisk>,
        disk: &GlommioDisk,
    ) -> anyhow::Result<()> {
        self.since_flush += bytes;
        if self.since_flush < BATCH_BYTES {
            return Ok(());
        }
        self.since_flush = 0;
        flush_all(store, disk).await?;
        if self.last_tick.elapsed() >= MAINTENANCE_PERIOD {
            maintenance_tick(store, disk, &mut self.m).await?;
            self.last_tick = Instant::now();
        }
        Ok(())
    }

    /// Ticks until nothing is left to compact (the end of a phase).
    async fn settle(
        &mut self,
        store: &mut Store<GlommioDisk>,
        disk: &GlommioDisk,
    ) -> anyhow::Result<()> {
        while maintenance_tick(store, disk, &mut self.m).await? {}
        self.last_tick = Instant::now();
        Ok(())
    }
}

fn compaction(args: CompactionArgs) -> anyhow::Result<()> {
    if args.items == 0
        || !(0.0..=1.0).contains(&args.dead_ratio)
        || args.overwrites.is_nan()
        || args.overwrites < 0.0
    {
        bail!("--items must be positive, --dead-ratio within 0..=1, --overwrites ≥ 0");
    }
    let dir = data_dir(&args.common.dir, "log-bench-compaction-")?;
    let path = dir.path().to_owned();
    let segment_size = args.common.segment_size_mib * MIB;
    let cfg = StoreConfig {
        segment_size,
        durability: Durability::None,
        checkpoint_every_bytes: args.checkpoint_every_mib * MIB,
        compact_dead_ratio: args.dead_ratio,
        ..StoreConfig::default()
    };
    let overwrites = (args.overwrites * args.items as f64) as u64;
    let summary = in_executor(&args.common, || {
        let (path, cfg) = (path.clone(), cfg.clone());
        let (items, value_bytes, seed) = (args.items, args.value_bytes, args.seed);
        async move {
            let disk = GlommioDisk::open(&path)?;
            let (mut store, _) = Store::open(disk.clone(), cfg)?;
            let (t, _) = store.create_table(table_desc())?;
            let mut w = Writer {
                since_flush: 0,
                last_tick: Instant::now(),
                m: Maintenance::default(),
            };
            let mut key = Vec::new();
            let mut value = vec![0u8; value_bytes];
            let mut put = |store: &mut Store<GlommioDisk>, i: u64, version: u64| {
                index_key(i, &mut key);
                value[..8.min(value_bytes)]
                    .copy_from_slice(&version.to_le_bytes()[..8.min(value_bytes)]);
                let before = store.stats().client_bytes;
                store.put(t, &key, &value, value_bytes as u32)?;
                anyhow::Ok(store.stats().client_bytes - before)
            };
            // Load.
            let started = Instant::now();
            for i in 0..items {
                let n = put(&mut store, i, 0)?;
                w.appended(n, &mut store, &disk).await?;
            }
            w.settle(&mut store, &disk).await?;
            let load_secs = secs(started.elapsed());
            let after_load = store.stats().clone();
            // Overwrites.
            let mut rng = Rng(seed);
            let started = Instant::now();
            for n in 0..overwrites {
                let bytes = put(&mut store, rng.below(items), n + 1)?;
                w.appended(bytes, &mut store, &disk).await?;
            }
            w.settle(&mut store, &disk).await?;
            let overwrite_secs = secs(started.elapsed());
            let stats = store.stats().clone();
            let segments = store.segments();
            let live: u64 = segments.iter().map(|s| s.2).sum();
            let data: u64 = segments
                .iter()
                .map(|s| u64::from(s.1) - SEGMENT_HEADER_LEN as u64)
                .sum();
            let (files_len, files_allocated) = dir_bytes(&path)?;
            let wa = |client: u64, relocated: u64| (client + relocated) as f64 / client as f64;
            let phase_client = stats.client_bytes - after_load.client_bytes;
            let phase_relocated = stats.relocated_bytes - after_load.relocated_bytes;
            // Every segment is zero-filled once before use: device bytes include that.
            let device_bytes =
                stats.written_bytes + stats.segments_created * segment_size + w.m.checkpoint_bytes;
            Ok(json!({
                "bench": "compaction",
                "items": items,
                "value_bytes": value_bytes,
                "overwrites": overwrites,
                "dead_ratio": args.dead_ratio,
                "segment_size_mib": args.common.segment_size_mib,
                "load_s": load_secs,
                "overwrite_s": overwrite_secs,
                "overwrites_per_s": overwrites as f64 / overwrite_secs.max(1e-9),
                "compaction_s": secs(w.m.compaction_time),
                "maintenance_ticks": w.m.ticks,
                "client_bytes": stats.client_bytes,
                "relocated_bytes": stats.relocated_bytes,
                "write_amplification": wa(stats.client_bytes, stats.relocated_bytes),
                "write_amplification_overwrite_phase": (phase_client > 0)
                    .then(|| wa(phase_client, phase_relocated)),
                "device_bytes_written": device_bytes,
                "device_write_amplification": device_bytes as f64 / stats.client_bytes as f64,
                "segments_created": stats.segments_created,
                "segments_compacted": stats.segments_compacted,
                "segments_at_end": segments.len(),
                "checkpoints": stats.checkpoints,
                "checkpoint_bytes": w.m.checkpoint_bytes,
                "live_bytes": live,
                "data_bytes": data,
                "files_bytes": files_len,
                "files_allocated_bytes": files_allocated,
                "space_amplification_data": data as f64 / live as f64,
                "space_amplification_files": files_len as f64 / live as f64,
            }))
        }
    })?;
    drop(dir);
    println!("{summary}");
    let f = |k: &str| summary[k].as_f64().unwrap_or(f64::NAN);
    let u = |k: &str| summary[k].as_u64().unwrap_or(0);
    println!(
        "{} items of {} B, {} random overwrites ({:.0} k/s), dead ratio {}: write amplification {:.2} \
         (overwrite phase {:.2}; {:.0} MiB client, {:.0} MiB relocated), {} segments compacted",
        u("items"),
        u("value_bytes"),
        u("overwrites"),
        f("overwrites_per_s") / 1e3,
        args.dead_ratio,
        f("write_amplification"),
        f("write_amplification_overwrite_phase"),
        u("client_bytes") as f64 / MIB as f64,
        u("relocated_bytes") as f64 / MIB as f64,
        u("segments_compacted"),
    );
    println!(
        "space: {:.0} MiB live, {:.0} MiB of records in {} segments ({:.2}×), {:.0} MiB of files ({:.2}×); \
         device writes incl. zero-fill and {} checkpoints: {:.2}× client bytes",
        u("live_bytes") as f64 / MIB as f64,
        u("data_bytes") as f64 / MIB as f64,
        u("segments_at_end"),
        f("space_amplification_data"),
        u("files_bytes") as f64 / MIB as f64,
        f("space_amplification_files"),
        u("checkpoints"),
        f("device_write_amplification"),
    );
    Ok(())
}
