//! Crash tests of a replicated store (the storage log as the Raft log) on the simulated
//! disk. A Raft-like driver appends entries (sometimes replacing an uncommitted suffix
//! with a newer term, as a new leader does), advances the commit index, applies
//! committed entries once they are durable locally (raft-rs hands over only persisted
//! committed entries), runs flushes, checkpoints and compactions in production's order,
//! and crashes at random points, losing unsynced writes and tearing the last one.
//!
//! After each recovery:
//! * the applied state is exactly the committed entries applied in order, through the
//!   recovered applied index, which is at least the last durable commit and never past
//!   the cluster's commit;
//! * the Raft log from its first index is what some prefix of the appends made — one
//!   that includes every append that was durable: nothing persisted (and so perhaps
//!   acknowledged to a leader) is lost, nothing half-appended is visible;
//! * the hard state is at least the last durable one.
//!
//! `TERN_RAFT_CRASH_SEEDS` (default 2000, ~15 s) scales it; a failure names its seed.
//! Checked to fail when compaction relocates a replaced entry's record, when recovery
//! follows an older relocated copy, and when a checkpoint is written before the log is
//! durable through the state it names.

use std::collections::BTreeMap;
use std::ops::Bound;

use tern_storage::format::{EntryData, HardState, RecordKind};
use tern_storage::sim::{SimDisk, SplitMix};
use tern_storage::store::{Applied, LogPos, Store, StoreConfig};

mod common;
use common::{IoLane, desc};

/// Table name → key → value.
type State = BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>;

const TABLES: [&str; 2] = ["alpha", "beta"];

/// One entry as the driver made it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    term: u64,
    kind: RecordKind,
    table_id: u32,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Entry {
    fn data(&self) -> EntryData<'_> {
        EntryData {
            kind: self.kind,
            table_id: self.table_id,
            size_bytes: self.value.len() as u32 * u32::from(self.kind == RecordKind::Put),
            key: &self.key,
            value: &self.value,
        }
    }
}

/// The model's apply, mirroring what DynamoDB semantics ask of the store: writes to a
/// missing table do nothing, a CreateTable whose name or id is taken does nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    state: State,
    ids: BTreeMap<u32, String>,
    next_id: u32,
}

impl Model {
    fn apply(&mut self, e: &Entry) {
        match e.kind {
            RecordKind::Put | RecordKind::Delete => {
                let Some(name) = self.ids.get(&e.table_id) else {
                    return;
                };
                let t = self.state.get_mut(name).expect("named tables exist");
                if e.kind == RecordKind::Put {
                    t.insert(e.key.clone(), e.value.clone());
                } else {
                    t.remove(&e.key);
                }
            }
            RecordKind::CreateTable => {
                let d = tern_storage::catalog::TableDesc::decode(&e.value).expect("desc");
                if !self.state.contains_key(&d.name) && e.table_id >= self.next_id.max(1) {
                    self.state.insert(d.name.clone(), BTreeMap::new());
                    self.ids.insert(e.table_id, d.name);
                    self.next_id = e.table_id + 1;
                }
            }
            RecordKind::DeleteTable => {
                self.next_id = self.next_id.max(e.table_id + 1);
                if let Some(name) = self.ids.remove(&e.table_id) {
                    self.state.remove(&name);
                }
            }
            _ => {}
        }
    }
}

fn config(seed: u64) -> StoreConfig {
    StoreConfig {
        segment_size: 4096 + (seed % 3) * 4096,
        checkpoint_every_bytes: if seed.is_multiple_of(2) {
            5000
        } else {
            u64::MAX / 2
        },
        compact_dead_ratio: 0.3,
        replicated: true,
        raft_retained_entries: 3 + seed % 20,
        ..StoreConfig::default()
    }
}

fn snapshot(store: &Store<SimDisk>) -> State {
    let mut m = State::new();
    for t in store.tables() {
        let items = store
            .range(t.desc.table_id, Bound::Unbounded, Bound::Unbounded)
            .expect("readable")
            .map(|i| i.expect("a record"))
            .map(|i| (i.key.to_vec(), i.bytes.to_vec()))
            .collect();
        m.insert(t.desc.name.clone(), items);
    }
    m
}

/// What differs between two states, briefly (values by their first 8 bytes).
fn diff(got: &State, want: &State) -> String {
    let short = |v: &[u8]| format!("{:?}/{}", &v[..v.len().min(8)], v.len());
    let mut out = Vec::new();
    for name in got
        .keys()
        .chain(want.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        match (got.get(name), want.get(name)) {
            (Some(g), Some(w)) => {
                for k in g
                    .keys()
                    .chain(w.keys())
                    .collect::<std::collections::BTreeSet<_>>()
                {
                    let (a, b) = (g.get(k), w.get(k));
                    if a != b {
                        out.push(format!(
                            "{name} {k:?}: got {:?} want {:?}",
                            a.map(|v| short(v)),
                            b.map(|v| short(v))
                        ));
                    }
                }
            }
            (g, w) => out.push(format!(
                "table {name}: got {} want {}",
                g.is_some(),
                w.is_some()
            )),
        }
    }
    out.join("; ")
}

/// The Raft log a sequence of appends makes (index i at `[i - 1]`).
fn view(appends: &[(u64, Entry, LogPos)]) -> Vec<Entry> {
    let mut log: Vec<Entry> = Vec::new();
    for (index, e, _) in appends {
        log.truncate(*index as usize - 1);
        log.push(e.clone());
    }
    log
}

struct Run {
    seed: u64,
    rng: SplitMix,
    disk: SimDisk,
    store: Store<SimDisk>,
    /// Entries the whole (imagined) cluster committed: fixed forever.
    committed: Vec<Entry>,
    /// The log as recovery found it, then every append since, with the position that
    /// must be durable for it to count as persisted.
    base_log: Vec<(u64, Entry, LogPos)>,
    appends: Vec<(u64, Entry, LogPos)>,
    /// Hard states set since recovery, with their positions.
    hard_states: Vec<(HardState, LogPos)>,
    base_hard_state: HardState,
    term: u64,
    next_table_id: u32,
    io: IoLane,
    crashes: u64,
    forgotten: u64,
    checkpoints_used: u64,
}

impl Run {
    fn current_log(&self) -> Vec<Entry> {
        let mut all = self.base_log.clone();
        all.extend(self.appends.iter().cloned());
        view(&all)
    }

    fn new_entry(&mut self, n: u64) -> Entry {
        let name = TABLES[self.rng.below(2) as usize];
        let id = self.store.table_id(name);
        let roll = self.rng.below(100);
        let (kind, table_id, key, value) = match id {
            None if roll < 50 => {
                let id = self.next_table_id;
                self.next_table_id += 1;
                let mut d = desc(name);
                d.table_id = id;
                (RecordKind::CreateTable, id, vec![], d.encode())
            }
            Some(id) if roll < 3 => (RecordKind::DeleteTable, id, vec![], vec![]),
            _ if roll < 8 => (RecordKind::RaftEntry, 0, vec![], vec![0]),
            id => {
                // Writes to a table that may be gone by the time they apply, as a
                // leader's proposals can be.
                let id = id.unwrap_or(self.next_table_id.saturating_sub(1).max(1));
                let mut key = (self.rng.below(4) * 0x1111_1111_1111_1111)
                    .to_be_bytes()
                    .to_vec();
                key.push(self.rng.below(3) as u8);
                if roll < 35 {
                    (RecordKind::Delete, id, key, vec![])
                } else {
                    let mut value = n.to_le_bytes().to_vec();
                    value.resize(8 + self.rng.below(200) as usize, (n % 251) as u8);
                    (RecordKind::Put, id, key, value)
                }
            }
        };
        Entry {
            term: self.term,
            kind,
            table_id,
            key,
            value,
        }
    }

    /// Appends a few entries from a random start after the local commit: committed
    /// content where the cluster committed, new entries (of a newer term when they
    /// replace some) after.
    fn append_step(&mut self, n: u64) {
        let hs = self.store.raft_hard_state();
        let last = self.store.raft_last();
        let low = hs.commit.max(self.store.raft_applied()) + 1;
        let mut start = low + self.rng.below(last + 2 - low);
        // A leader's append finds where this log parts from the committed one (Raft's
        // log matching) and replaces from there.
        let log = self.current_log();
        if let Some(d) = (low..=last.min(self.committed.len() as u64))
            .find(|&i| log[i as usize - 1] != self.committed[i as usize - 1])
        {
            start = start.min(d);
        }
        if start <= last && start > self.committed.len() as u64 {
            self.term += 1;
        }
        let count = 1 + self.rng.below(4);
        let mut batch = Vec::new();
        for i in start..start + count {
            let e = match self.committed.get(i as usize - 1) {
                Some(c) => c.clone(),
                None => self.new_entry(n),
            };
            batch.push((i, e));
        }
        let pos = self
            .store
            .append_entries(batch.iter().map(|(i, e)| (e.term, *i, e.data())))
            .expect("append");
        for (i, e) in batch {
            self.appends.push((i, e, pos));
        }
    }

    /// The cluster commits up to some entry of this log; the replica learns it.
    fn commit_step(&mut self) {
        let last = self.store.raft_last();
        let hs = self.store.raft_hard_state();
        let log = self.current_log();
        let committed = self.committed.len() as u64;
        if last <= hs.commit {
            return;
        }
        // A follower commits only what matches its leader's log (Raft's rule: up to
        // the last entry the leader's append confirmed).
        let matching = (hs.commit + 1..=last.min(committed))
            .find(|&i| log[i as usize - 1] != self.committed[i as usize - 1])
            .map_or(last, |d| d - 1);
        if matching <= hs.commit {
            return;
        }
        let to = hs.commit + 1 + self.rng.below(matching - hs.commit);
        for i in committed..to {
            self.committed.push(log[i as usize].clone());
        }
        let hs = HardState {
            term: self.term,
            vote: 1,
            commit: to,
        };
        let pos = self.store.set_hard_state(hs).expect("hard state");
        self.hard_states.push((hs, pos));
    }

    /// Applies committed entries that are durable here (what raft-rs hands over).
    fn apply_step(&mut self) {
        let hs = self.store.raft_hard_state();
        while self.store.raft_applied() < hs.commit {
            let e = self.store.raft_applied() + 1;
            let end = self
                .appends
                .iter()
                .rev()
                .find(|(i, _, _)| *i == e)
                .map_or(LogPos::default(), |(_, _, p)| *p);
            if !self.store.is_durable(end).expect("usable") {
                break;
            }
            let applied = self.store.apply_entry(e).expect("apply");
            if let Applied::Put { slot, .. } = applied {
                assert_eq!(
                    self.store.item_at(slot).expect("item"),
                    &self.committed[e as usize - 1].value[..]
                );
            }
        }
    }

    fn flush_step(&mut self) {
        self.io.flush_step(&mut self.store, &self.disk);
    }

    fn maintenance_step(&mut self) {
        self.io.maintenance_step(&mut self.store, &self.disk);
    }

    fn crash_and_check(&mut self) {
        let seed = self.seed;
        self.crashes += 1;
        let durable = self.store.durable_pos();
        let durable_appends = self
            .appends
            .iter()
            .take_while(|(_, _, p)| *p <= durable)
            .count();
        let durable_hs = self
            .hard_states
            .iter()
            .take_while(|(_, p)| *p <= durable)
            .last()
            .map_or(self.base_hard_state, |(h, _)| *h);
        let image = self.disk.crash(&mut self.rng);
        let (store, report) =
            Store::open(image.clone(), self.store.config().clone()).expect("recovery I/O");
        assert!(
            report.corruption.is_none(),
            "seed {seed}: a crash is not corruption: {report:?}"
        );
        assert!(report.bad_checkpoints.is_empty(), "seed {seed}: {report:?}");
        self.checkpoints_used += report.checkpoint.is_some() as u64;
        store.check_invariants();

        // The hard state and the applied prefix.
        let hs = store.raft_hard_state();
        let applied = store.raft_applied();
        assert!(
            hs.term >= durable_hs.term,
            "seed {seed}: term went back: {hs:?} < {durable_hs:?}"
        );
        assert!(
            applied >= durable_hs.commit && applied <= self.committed.len() as u64,
            "seed {seed}: applied {applied}, durable commit {}, cluster commit {}",
            durable_hs.commit,
            self.committed.len()
        );
        let mut model = Model::default();
        for e in &self.committed[..applied as usize] {
            model.apply(e);
        }
        let got_state = snapshot(&store);
        if got_state != model.state {
            // Say which prefix the state is, if any (a stale or a lost step), and the
            // table-level entries (the key-level ones are in the diff).
            let same_as = (0..=self.committed.len()).find(|&a| {
                let mut m = Model::default();
                self.committed[..a].iter().for_each(|e| m.apply(e));
                m.state == got_state
            });
            let tables: Vec<String> = self.committed[..applied as usize]
                .iter()
                .enumerate()
                .filter(|(_, e)| e.key.is_empty())
                .map(|(i, e)| format!("{}:{:?}:t{}", i + 1, e.kind, e.table_id))
                .collect();
            panic!(
                "seed {seed}: state after applying {applied} differs (it is the state after {same_as:?}): {}\nreport {report:?}\nlog {}..={}, hard state {hs:?}, durable {durable_hs:?}\ntable entries {}",
                diff(&got_state, &model.state),
                store.raft_first(),
                store.raft_last(),
                tables.join(" ")
            );
        }
        // The log: the view of some prefix of the appends that includes the durable ones.
        let (first, last) = (store.raft_first(), store.raft_last());
        self.forgotten = self.forgotten.max(first - 1);
        let got: Vec<Entry> = (first..=last)
            .map(|i| {
                let (term, d) = store.raft_entry(i).expect("entry");
                Entry {
                    term,
                    kind: d.kind,
                    table_id: d.table_id,
                    key: d.key.to_vec(),
                    value: d.value.to_vec(),
                }
            })
            .collect();
        let mut all = self.base_log.clone();
        all.extend(self.appends[..durable_appends].iter().cloned());
        let mut matched = None;
        for k in durable_appends..=self.appends.len() {
            if k > durable_appends {
                all.push(self.appends[k - 1].clone());
            }
            let v = view(&all);
            if v.len() as u64 == last && v[(first - 1) as usize..] == got[..] {
                matched = Some(k);
                break;
            }
        }
        assert!(
            matched.is_some(),
            "seed {seed}: recovered log {first}..={last} is no prefix of the appends including the {durable_appends} durable of {}",
            self.appends.len()
        );
        // Entries this replica knows are committed are the cluster's; others may be
        // stale ones a leader will replace.
        for (i, e) in got.iter().enumerate() {
            let index = first as usize + i;
            if index as u64 > hs.commit {
                break;
            }
            if let Some(c) = self.committed.get(index - 1) {
                assert_eq!(e, c, "seed {seed}: committed entry {index} changed");
            }
        }
        // Go on from what was recovered.
        let log = view(&all);
        self.base_log = log
            .into_iter()
            .enumerate()
            .map(|(i, e)| (i as u64 + 1, e, LogPos::default()))
            .collect();
        self.appends.clear();
        self.hard_states.clear();
        self.base_hard_state = hs;
        self.term = self.term.max(hs.term) + 1;
        self.disk = image;
        self.store = store;
        self.io.reset();
    }
}

fn run_seed(seed: u64) -> Run {
    let mut rng = SplitMix(seed);
    let disk = SimDisk::new();
    let (store, _) = Store::open(disk.clone(), config(seed)).expect("open");
    let mut run = Run {
        seed,
        rng: SplitMix(rng.next_u64()),
        disk,
        store,
        committed: Vec::new(),
        base_log: Vec::new(),
        appends: Vec::new(),
        hard_states: Vec::new(),
        base_hard_state: HardState::default(),
        term: 1,
        next_table_id: 1,
        io: IoLane::new(700),
        crashes: 0,
        forgotten: 0,
        checkpoints_used: 0,
    };
    let mut n = 0;
    for _ in 0..3 + rng.below(4) {
        for _ in 0..20 + run.rng.below(300) {
            n += 1;
            match run.rng.below(10) {
                0..=2 => run.append_step(n),
                3 => run.commit_step(),
                4 => run.apply_step(),
                5..=7 => run.flush_step(),
                _ => run.maintenance_step(),
            }
            run.store.check_invariants();
        }
        run.crash_and_check();
    }
    run
}

#[test]
fn a_replica_log_survives_random_crashes() {
    let seeds: u64 = std::env::var("TERN_RAFT_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let (mut crashes, mut forgotten, mut ckpts, mut compactions, mut committed) = (0, 0, 0, 0, 0);
    for seed in 0..seeds {
        let run = run_seed(seed);
        crashes += run.crashes;
        forgotten += u64::from(run.forgotten > 0);
        ckpts += run.checkpoints_used;
        compactions += run.io.maintenance.counts().1;
        committed += run.committed.len() as u64;
    }
    println!(
        "seeds={seeds} crashes={crashes} committed={committed} seeds_forgetting={forgotten} checkpoints_used={ckpts} compactions={compactions}"
    );
    // The run must reach the paths it is for.
    assert!(
        forgotten > seeds / 4,
        "too few seeds forgot entries: {forgotten}"
    );
    assert!(
        ckpts > 0 && compactions > 0,
        "checkpoints {ckpts}, compactions {compactions}"
    );
}
