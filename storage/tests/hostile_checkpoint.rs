//! Recovery never trusts a checkpoint's numbers: a checkpoint whose CRCs are right but
//! whose offsets, lengths, segment ids, counts or table ids are wrong (a bug in an older
//! build, a hostile file, a flip that happens to keep the CRC) must make recovery report
//! a typed corruption or fall back, never panic, index out of bounds or wrap; and a store
//! that does open must answer every read with data or a typed error.
//!
//! Each case rewrites one field of a real checkpoint (or random bytes of its body), fixes
//! both CRCs, and recovers. `TERN_HOSTILE_CASES` (default 3000) scales the random part.

use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};

use tern_storage::checkpoint::CHECKPOINT_HEADER_LEN;
use tern_storage::disk::Disk;
use tern_storage::format::{EntryData, HardState, RecordKind, parse_checkpoint_file_name};
use tern_storage::sim::{SimDisk, SplitMix};
use tern_storage::store::{Store, StoreConfig};

mod common;
use common::{block_on, desc, flush_all};

fn config() -> StoreConfig {
    StoreConfig {
        segment_size: 8192,
        checkpoint_every_bytes: u64::MAX / 2,
        ..StoreConfig::default()
    }
}

fn replica_config() -> StoreConfig {
    StoreConfig {
        replicated: true,
        raft_retained_entries: 20,
        ..config()
    }
}

/// The same shape for a replica: entries appended, some replaced by a newer term,
/// committed and applied, a compaction, a checkpoint (with its Raft section), entries
/// after it.
fn build_replicated() -> (SimDisk, String) {
    let disk = SimDisk::new();
    let (mut store, _) = Store::open(disk.clone(), replica_config()).unwrap();
    let mut d = desc("alpha");
    d.table_id = 1;
    let create = d.encode();
    let mut next = 1u64;
    let append = common::append_entry;
    append(&mut store, next, 1, RecordKind::CreateTable, &[], &create);
    next += 1;
    for i in 0..150u64 {
        let k = [&(i % 40).to_be_bytes()[..], b"key"].concat();
        let value = vec![(i % 251) as u8; 40 + (i as usize % 90)];
        let kind = if i % 9 == 0 {
            RecordKind::Delete
        } else {
            RecordKind::Put
        };
        let v: &[u8] = if kind == RecordKind::Put { &value } else { &[] };
        append(&mut store, next, 1 + i / 50, kind, &k, v);
        next += 1;
        if i % 10 == 9 {
            flush_all(&mut store, &disk);
            let commit = next - 3;
            store
                .set_hard_state(HardState {
                    term: 1 + i / 50,
                    vote: 1,
                    commit,
                })
                .unwrap();
            while store.raft_applied() < commit {
                let e = store.raft_applied() + 1;
                store.apply_entry(e).unwrap();
            }
        }
    }
    // A newer term replaces the unapplied suffix.
    let from = store.raft_applied() + 1;
    append(&mut store, from, 9, RecordKind::Put, b"replaced-key", b"v");
    flush_all(&mut store, &disk);
    let _ = store.set_conf_state(b"\x01\0\0\0\0\0\0\0conf");
    let job = store.begin_checkpoint();
    flush_all(&mut store, &disk);
    block_on(disk.write_file(&job.file, job.bytes.clone())).unwrap();
    store.checkpoint_written(&job, Ok(()));
    append(
        &mut store,
        from + 1,
        9,
        RecordKind::Put,
        b"after-the-ckpt",
        b"v",
    );
    flush_all(&mut store, &disk);
    (disk, job.file)
}

/// A store with two tables over several segments, a compacted segment, a checkpoint and
/// writes after it; returns the disk and the checkpoint's name.
fn build() -> (SimDisk, String) {
    let disk = SimDisk::new();
    let (mut store, _) = Store::open(disk.clone(), config()).unwrap();
    let (a, _) = store.create_table(desc("alpha")).unwrap();
    let (b, _) = store.create_table(desc("beta")).unwrap();
    let key = |i: u64| {
        let mut k = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .to_be_bytes()
            .to_vec();
        k.extend_from_slice(format!("key{i}").as_bytes());
        k
    };
    for i in 0..120u64 {
        let t = if i % 3 == 0 { b } else { a };
        let value = vec![(i % 251) as u8; 40 + (i as usize % 90)];
        store.put(t, &key(i), &value, value.len() as u32).unwrap();
        if i % 7 == 0 {
            store.delete(t, &key(i / 2)).unwrap();
        }
    }
    flush_all(&mut store, &disk);
    // Overwrite early keys so an early segment is mostly dead, then compact it.
    for i in 0..40u64 {
        let t = if i % 3 == 0 { b } else { a };
        store.put(t, &key(i), b"again", 5).unwrap();
    }
    flush_all(&mut store, &disk);
    if let Some(seg) = store.compaction_candidate() {
        let mut cursor = Some(0);
        while let Some(at) = cursor {
            cursor = store.compact_step(seg, at, 4096).unwrap();
        }
        flush_all(&mut store, &disk);
        store.drop_segment(seg).unwrap();
    }
    let job = store.begin_checkpoint();
    flush_all(&mut store, &disk);
    block_on(disk.write_file(&job.file, job.bytes.clone())).unwrap();
    store.checkpoint_written(&job, Ok(()));
    for i in 200..230u64 {
        store.put(a, &key(i), b"after", 5).unwrap();
    }
    flush_all(&mut store, &disk);
    (disk, job.file)
}

/// Where a checkpoint's fields are (see checkpoint.rs's layout).
struct Layout {
    segment_count: usize,
    /// Body offsets of every `u32` and `u64` field after the segments: (offset, width).
    fields: Vec<(usize, usize)>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn layout(ckpt: &[u8]) -> Layout {
    let flags = u32_at(ckpt, 12);
    let table_count = u32_at(ckpt, 36) as usize;
    let segment_count = u32_at(ckpt, 40) as usize;
    let body = &ckpt[CHECKPOINT_HEADER_LEN..];
    let mut fields = Vec::new();
    let mut at = segment_count * 8;
    for _ in 0..table_count {
        fields.push((at, 4));
        let desc_len = u32_at(body, at) as usize;
        at += 4 + desc_len;
        fields.push((at, 8));
        let count = u64::from_le_bytes(body[at..at + 8].try_into().unwrap()) as usize;
        at += 8;
        for _ in 0..count {
            fields.push((at, 2));
            let key_len = u16::from_le_bytes([body[at], body[at + 1]]) as usize;
            at += 2 + key_len;
            for _ in 0..4 {
                fields.push((at, 4));
                at += 4;
            }
        }
    }
    if flags & 1 != 0 {
        // applied, applied_term, log_first, log_prev_term, hard state (3 × u64).
        for _ in 0..7 {
            fields.push((at, 8));
            at += 8;
        }
        fields.push((at, 4));
        let conf_len = u32_at(body, at) as usize;
        at += 4 + conf_len;
        fields.push((at, 4));
        let voided = u32_at(body, at) as usize;
        at += 4;
        for _ in 0..voided * 2 {
            fields.push((at, 4));
            at += 4;
        }
    }
    assert_eq!(at, body.len(), "the test's layout walk matches the format");
    Layout {
        segment_count,
        fields,
    }
}

/// Recomputes both CRCs, as a file that is wrong but well-formed would have them.
fn reseal(ckpt: &mut [u8]) {
    let body_crc = crc32fast::hash(&ckpt[CHECKPOINT_HEADER_LEN..]);
    ckpt[48..52].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&ckpt[..60]);
    ckpt[60..64].copy_from_slice(&header_crc.to_le_bytes());
}

/// Values that break offset arithmetic.
fn nasty(rng: &mut SplitMix, width: usize, old: u64) -> u64 {
    let max = if width == 8 {
        u64::MAX
    } else {
        (1u64 << (width * 8)) - 1
    };
    match rng.below(9) {
        0 => 0,
        1 => 1,
        2 => max,
        3 => max - 1,
        4 => old.wrapping_add(1) & max,
        5 => old.wrapping_sub(1) & max,
        6 => old.wrapping_add(rng.below(100_000)) & max,
        7 => 8192 + rng.below(64),
        _ => rng.next_u64() & max,
    }
}

fn set(bytes: &mut [u8], at: usize, width: usize, v: u64) {
    bytes[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

/// Recovers from `disk` with `ckpt` in place of the checkpoint and reads everything.
/// Returns whether recovery found corruption.
fn recover_with(
    disk: &SimDisk,
    name: &str,
    ckpt: Vec<u8>,
    rng: &mut SplitMix,
    cfg: &StoreConfig,
) -> bool {
    let image = disk.crash(rng);
    block_on(image.write_file(name, ckpt)).unwrap();
    let (mut store, report) = Store::open(image.clone(), cfg.clone()).expect("recovery I/O");
    if report.corruption.is_some() {
        assert!(
            store.check_usable().is_err(),
            "a corrupt store serves nothing"
        );
        return true;
    }
    // It opened: every read answers (an item or a typed error), and the background work
    // a server would run next does not panic either.
    let tables: Vec<u32> = store.tables().map(|t| t.desc.table_id).collect();
    for t in tables {
        let keys: Vec<Vec<u8>> = match store.range(t, Bound::Unbounded, Bound::Unbounded) {
            Ok(items) => items
                .filter_map(|i| i.ok())
                .map(|i| i.key.to_vec())
                .collect(),
            Err(_) => Vec::new(),
        };
        for k in keys {
            let _ = store.get(t, &k);
        }
        if let Ok(items) = store.range(t, Bound::Unbounded, Bound::Unbounded) {
            let _ = items.rev().count();
        }
    }
    if store.is_replicated() {
        // The Raft log it recovered reads back, and takes the next entry.
        let (first, last) = (store.raft_first(), store.raft_last());
        for i in first.saturating_sub(1)..=last {
            let _ = store.raft_term(i);
            if i >= first {
                let _ = store.raft_entry(i);
            }
        }
        let data = EntryData {
            kind: RecordKind::Put,
            table_id: 1,
            size_bytes: 1,
            key: b"one-more-key",
            value: b"v",
        };
        let term = store
            .raft_term(last)
            .unwrap_or(0)
            .max(store.raft_hard_state().term);
        let _ = store.append_entries([(term, last + 1, data)]);
    }
    if let Some(seg) = store.compaction_candidate() {
        let _ = store.compact_step(seg, 0, 1 << 20);
    }
    let _ = store.begin_checkpoint();
    flush_all(&mut store, &image);
    false
}

fn run_case(disk: &SimDisk, name: &str, ckpt: Vec<u8>, what: &str, rng: &mut SplitMix) -> bool {
    let cfg = if u32_at(&ckpt, 12) & 1 != 0 || ckpt.len() < 16 {
        replica_config()
    } else {
        config()
    };
    match catch_unwind(AssertUnwindSafe(|| {
        recover_with(disk, name, ckpt, rng, &cfg)
    })) {
        Ok(corrupt) => corrupt,
        Err(_) => panic!("recovery panicked on a checkpoint with {what}"),
    }
}

#[test]
fn a_well_formed_but_wrong_checkpoint_is_a_typed_error_never_a_panic() {
    hostile(build());
}

/// A replica's checkpoint, whose Raft section (applied, first entry, terms, hard state,
/// configuration, replaced records) recovery must not trust either.
#[test]
fn a_well_formed_but_wrong_replica_checkpoint_is_a_typed_error_never_a_panic() {
    hostile(build_replicated());
}

fn hostile((disk, name): (SimDisk, String)) {
    assert!(parse_checkpoint_file_name(&name).is_some());
    let original = disk.contents(&name).expect("checkpoint written");
    let mut rng = SplitMix(0x5EED);
    // The untouched checkpoint recovers cleanly.
    assert!(!run_case(
        &disk,
        &name,
        original.clone(),
        "no change",
        &mut rng
    ));

    let lay = layout(&original);
    let mut corrupt = 0;
    let mut cases = 0;
    // Header fields: replay_from (u64 at 16), next_index (u64 at 24), next_table_id,
    // table_count, segment_count (u32 at 32, 36, 40).
    for (at, width) in [(16, 8), (24, 8), (32, 4), (36, 4), (40, 4)] {
        for _ in 0..40 {
            let mut c = original.clone();
            let old = if width == 8 {
                u64::from_le_bytes(c[at..at + 8].try_into().unwrap())
            } else {
                u32_at(&c, at) as u64
            };
            set(&mut c, at, width, nasty(&mut rng, width, old));
            reseal(&mut c);
            corrupt +=
                run_case(&disk, &name, c, &format!("header field at {at}"), &mut rng) as usize;
            cases += 1;
        }
    }
    // replay_from pointing into every segment at odd offsets.
    for segment in 0..8u64 {
        for offset in [0u64, 1, 63, 64, 65, 4000, 8191, 8192, 8193, u32::MAX as u64] {
            let mut c = original.clone();
            set(&mut c, 16, 8, (segment << 32) | offset);
            reseal(&mut c);
            let what = format!("replay_from segment {segment} offset {offset}");
            corrupt += run_case(&disk, &name, c, &what, &mut rng) as usize;
            cases += 1;
        }
    }
    // Every segment entry (id, end) and every table / entry field.
    let body = CHECKPOINT_HEADER_LEN;
    let mut fields: Vec<(usize, usize)> = (0..lay.segment_count * 2).map(|i| (i * 4, 4)).collect();
    fields.extend(lay.fields.iter().copied());
    for (at, width) in fields {
        for _ in 0..3 {
            let mut c = original.clone();
            let old = match width {
                2 => u16::from_le_bytes([c[body + at], c[body + at + 1]]) as u64,
                4 => u32_at(&c, body + at) as u64,
                _ => u64::from_le_bytes(c[body + at..body + at + 8].try_into().unwrap()),
            };
            set(&mut c, body + at, width, nasty(&mut rng, width, old));
            reseal(&mut c);
            let what = format!("body field at {at} ({width} bytes)");
            corrupt += run_case(&disk, &name, c, &what, &mut rng) as usize;
            cases += 1;
        }
    }
    // Random byte damage anywhere in the body, CRCs fixed.
    let random: usize = std::env::var("TERN_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    for case in 0..random {
        let mut c = original.clone();
        for _ in 0..1 + rng.below(4) {
            let at = body + rng.below((c.len() - body) as u64) as usize;
            c[at] = rng.next_u64() as u8;
        }
        if case % 10 == 0 {
            let cut = body + rng.below((c.len() - body) as u64) as usize;
            c.truncate(cut);
            let len = (c.len() - body) as u32;
            c[44..48].copy_from_slice(&len.to_le_bytes());
        }
        reseal(&mut c);
        corrupt += run_case(&disk, &name, c, &format!("random case {case}"), &mut rng) as usize;
        cases += 1;
    }
    eprintln!("hostile checkpoints: {cases} cases, {corrupt} reported as corruption");
    assert!(corrupt > 0, "some damage must be caught");
}
