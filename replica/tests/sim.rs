//! Deterministic simulation of one shard's Raft group: three replicas (the three AZs)
//! running `tern_replica::Replica` — the code production runs — over a simulated
//! network that delays, reorders, duplicates and drops messages and is cut by
//! partitions, with crashes that lose whatever a replica had not persisted. Every
//! choice comes from one seed, printed when an assertion fails.
//!
//! Asserted throughout, against a model:
//! * election safety: at most one leader per term;
//! * state machine safety: every replica applies the same entry at each index;
//! * an acknowledged proposal is the entry applied at its index; a lost one is never
//!   applied anywhere.
//!
//! Asserted once the faults stop and the group settles:
//! * every acknowledged proposal is applied on all three replicas (nothing
//!   acknowledged is lost, whatever crashed);
//! * the group makes progress again (a client retrying at the leader gets a proposal
//!   acknowledged).
//!
//! It runs twice: over `MemLog` (3,000 seeds: the consensus logic alone) and over the
//! production log, `StoreLog` — each replica's replicated `Store` on its own simulated
//! disk, group commits run as flush jobs, checkpoints and compaction in production's
//! order, crashes through `SimDisk::crash` (losing unsynced writes, tearing the last) and
//! recovery through `Store::open`. There the replicas' stores must also end equal, and
//! equal to the committed entries applied in order.
//!
//! `TERN_RAFT_SEEDS` (default 3000) and `TERN_RAFT_STORE_SEEDS` (default 1000) scale
//! them; `TERN_RAFT_SEED=N` runs one seed of each.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::rc::Rc;

use raft::eraftpb::{EntryType, Message};
use raft::{GetEntriesContext, Storage};
use tern_replica::{Committed, MemLog, ProposeError, Replica, ReplicaLog, Resolution, StoreLog};
use tern_storage::format::{EntryData, RecordKind};
use tern_storage::maintenance::{Maintenance, Task};
use tern_storage::sim::{SimDisk, SplitMix};
use tern_storage::store::{Store, StoreConfig};

use common::TABLE;

/// What a replica's log lives on, as the simulation sees it.
trait Backend: Sized {
    type Log: ReplicaLog;
    /// A new group member's empty disk.
    fn new_disk(seed: u64) -> Self;
    /// Opens the log on this disk; also returns the index its state machine holds.
    fn open(&self) -> (Self::Log, u64);
    /// Makes everything the log holds durable (one group commit).
    fn persist(&mut self, log: &Self::Log);
    /// What survives a crash.
    fn crash(&self, rng: &mut SplitMix) -> Self;
    /// Applies a committed entry to the state machine the log backs.
    fn apply(&mut self, log: &Self::Log, c: &Committed);
    /// Background upkeep (checkpoints, compaction), one round.
    fn upkeep(&mut self, _log: &Self::Log) {}
    /// A client's proposal, and the token a proposal's data carries.
    fn data(token: u64) -> Vec<u8>;
    fn token(data: &[u8]) -> Option<u64>;
}

/// The consensus logic alone: the log in memory, its clone at each persist the disk.
struct MemDisk(MemLog);

impl Backend for MemDisk {
    type Log = MemLog;
    fn new_disk(_seed: u64) -> MemDisk {
        MemDisk(MemLog::new(&IDS))
    }
    fn open(&self) -> (MemLog, u64) {
        (self.0.clone(), 0)
    }
    fn persist(&mut self, log: &MemLog) {
        self.0 = log.clone();
    }
    fn crash(&self, _rng: &mut SplitMix) -> MemDisk {
        MemDisk(self.0.clone())
    }
    fn apply(&mut self, _log: &MemLog, _c: &Committed) {}
    fn data(token: u64) -> Vec<u8> {
        token.to_le_bytes().to_vec()
    }
    fn token(data: &[u8]) -> Option<u64> {
        <[u8; 8]>::try_from(data).ok().map(u64::from_le_bytes)
    }
}

/// Production's log: a replicated store on a simulated disk.
struct StoreDisk {
    disk: SimDisk,
    cfg: StoreConfig,
    maintenance: Maintenance,
}

fn run_job(disk: &SimDisk, job: tern_storage::store::FlushJob) -> std::io::Result<()> {
    futures_lite::future::block_on(tern_storage::flush::run_job(disk, job))
}

impl Backend for StoreDisk {
    type Log = StoreLog<SimDisk>;
    fn new_disk(seed: u64) -> StoreDisk {
        StoreDisk {
            disk: SimDisk::new(),
            cfg: StoreConfig {
                segment_size: 4096 + (seed % 3) * 4096,
                checkpoint_every_bytes: 2000,
                compact_dead_ratio: 0.3,
                replicated: true,
                ..StoreConfig::default()
            },
            maintenance: Maintenance::new(700),
        }
    }
    fn open(&self) -> (StoreLog<SimDisk>, u64) {
        let (store, report) =
            Store::open(self.disk.clone(), self.cfg.clone()).expect("recovery I/O");
        assert!(
            report.corruption.is_none(),
            "a crash is not corruption: {report:?}"
        );
        let applied = store.raft_applied();
        (StoreLog::new(Rc::new(RefCell::new(store)), &IDS), applied)
    }
    fn persist(&mut self, log: &StoreLog<SimDisk>) {
        let mut store = log.store().borrow_mut();
        store.request_sync();
        while let Some(job) = store.next_flush() {
            let r = run_job(&self.disk, job);
            store.finish_flush(r);
        }
        assert!(
            store.failure().is_none(),
            "the simulated disk does not fail"
        );
    }
    fn crash(&self, rng: &mut SplitMix) -> StoreDisk {
        StoreDisk {
            disk: self.disk.crash(rng),
            cfg: self.cfg.clone(),
            maintenance: Maintenance::new(700),
        }
    }
    fn apply(&mut self, log: &StoreLog<SimDisk>, c: &Committed) {
        log.store()
            .borrow_mut()
            .apply_entry(c.index)
            .expect("apply");
    }
    fn upkeep(&mut self, log: &StoreLog<SimDisk>) {
        let store = log.store();
        for _ in 0..100 {
            let task = self.maintenance.step(&mut store.borrow_mut());
            match task {
                Task::AwaitSettled(_) => self.persist(log),
                Task::WriteCheckpoint(job) => {
                    use tern_storage::disk::Disk;
                    let r = futures_lite::future::block_on(
                        self.disk.write_file(&job.file, job.bytes.clone()),
                    );
                    self.maintenance
                        .checkpoint_written(&mut store.borrow_mut(), &job, r);
                }
                Task::Yield => {}
                Task::RoundDone { error } => {
                    assert!(error.is_none(), "upkeep failed: {error:?}");
                    return;
                }
            }
        }
    }
    /// Puts to the shared table; every 40th proposal (re)creates it.
    fn data(token: u64) -> Vec<u8> {
        if token % 40 == 1 {
            common::create_table()
        } else {
            let key = [&(token % 8).to_be_bytes()[..], b"k"].concat();
            common::entry(RecordKind::Put, &key, &token.to_le_bytes())
        }
    }
    fn token(data: &[u8]) -> Option<u64> {
        let d = EntryData::decode(data).ok()?;
        match d.kind {
            RecordKind::Put => <[u8; 8]>::try_from(d.value).ok().map(u64::from_le_bytes),
            _ => None,
        }
    }
}

/// A store's items, for comparing replicas.
fn store_items(log: &StoreLog<SimDisk>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let store = log.store().borrow();
    let Ok(_) = store.table(TABLE) else {
        return BTreeMap::new();
    };
    store
        .range(TABLE, Bound::Unbounded, Bound::Unbounded)
        .expect("readable")
        .map(|i| i.expect("a record"))
        .map(|i| (i.key.to_vec(), i.bytes.to_vec()))
        .collect()
}

const IDS: [u64; 3] = [1, 2, 3];

struct Node<B: Backend> {
    replica: Replica<B::Log>,
    /// What survives a crash.
    disk: B,
    /// The newest Ready appended and not yet persisted.
    unpersisted: Option<u64>,
    /// The state machine: the data of every entry applied, in index order from 1.
    applied: Vec<Vec<u8>>,
}

impl<B: Backend> Node<B> {
    /// Starts a replica on `disk`; `applied` is what the state machine applied before
    /// (the entries through the index the log says are kept).
    fn start(id: u64, disk: B, seed: u64, mut applied: Vec<Vec<u8>>) -> Node<B> {
        let (log, held) = disk.open();
        applied.truncate(held as usize);
        // Recovery applies every entry it knows committed, including some the replica
        // had not handed over yet: the state machine has them now.
        if (applied.len() as u64) < held {
            let from = applied.len() as u64 + 1;
            let entries = log
                .entries(from, held + 1, None, GetEntriesContext::empty(false))
                .expect("entries the store applied are retained");
            applied.extend(entries.into_iter().map(|e| match e.get_entry_type() {
                EntryType::EntryNormal => e.data.to_vec(),
                _ => Vec::new(),
            }));
        }
        Node {
            replica: Replica::new(id, log, held, seed).expect("a replica starts"),
            disk,
            unpersisted: None,
            applied,
        }
    }
}

struct World<B: Backend> {
    rng: SplitMix,
    seed: u64,
    nodes: Vec<Node<B>>,
    /// In flight: (from, to, message).
    net: Vec<(u64, u64, Message)>,
    /// Replica ids cut off from the others (a partition isolates them).
    isolated: HashSet<u64>,
    /// The entry every replica applies at each index: (term, data).
    model: BTreeMap<u64, (u64, Vec<u8>)>,
    leaders: HashMap<u64, u64>,
    next_token: u64,
    acked: HashMap<u64, u64>,
    lost: HashSet<u64>,
    stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    proposed: u64,
    acked: u64,
    lost: u64,
    crashes: u64,
    elections: u64,
}

impl<B: Backend> World<B> {
    fn new(seed: u64) -> World<B> {
        World {
            rng: SplitMix(seed),
            seed,
            nodes: IDS
                .iter()
                .map(|&id| Node::start(id, B::new_disk(seed), seed, Vec::new()))
                .collect(),
            net: Vec::new(),
            isolated: HashSet::new(),
            model: BTreeMap::new(),
            leaders: HashMap::new(),
            next_token: 1,
            acked: HashMap::new(),
            lost: HashSet::new(),
            stats: Stats::default(),
        }
    }

    fn idx(id: u64) -> usize {
        (id - 1) as usize
    }

    /// Performs everything the replica's Readies ask for, except persisting (a separate
    /// event, as a group commit is).
    fn drain(&mut self, id: u64) {
        loop {
            let out = self.nodes[Self::idx(id)]
                .replica
                .poll()
                .expect("a memory log never fails");
            if out.is_empty() {
                break;
            }
            for m in out.messages {
                self.net.push((id, m.to, m));
            }
            if let Some(n) = out.persist {
                self.nodes[Self::idx(id)].unpersisted = Some(n);
            }
            let mut last = None;
            for c in out.committed {
                let node = &mut self.nodes[Self::idx(id)];
                assert_eq!(
                    c.index,
                    node.applied.len() as u64 + 1,
                    "seed {}: replica {id} applies in order",
                    self.seed
                );
                node.applied.push(c.data.clone());
                node.disk.apply(node.replica.log(), &c);
                let seen = self
                    .model
                    .entry(c.index)
                    .or_insert((c.term, c.data.clone()));
                assert_eq!(
                    *seen,
                    (c.term, c.data),
                    "seed {}: replica {id} applied a different entry at {}",
                    self.seed,
                    c.index
                );
                last = Some(c.index);
            }
            if let Some(last) = last {
                self.nodes[Self::idx(id)].replica.applied(last);
            }
            for r in out.resolved {
                match r {
                    Resolution::Applied { token, index } => {
                        assert_eq!(
                            self.model.get(&index).map(|e| &e.1),
                            Some(&B::data(token)),
                            "seed {}: proposal {token} acknowledged at {index}, which holds another entry",
                            self.seed
                        );
                        assert!(self.acked.insert(token, index).is_none());
                        self.stats.acked += 1;
                    }
                    Resolution::Lost { token } => {
                        self.lost.insert(token);
                        self.stats.lost += 1;
                    }
                    Resolution::Unknown { .. } => unreachable!("no snapshots in this simulation"),
                }
            }
        }
        self.check_leaders();
    }

    fn check_leaders(&mut self) {
        for n in &self.nodes {
            if n.replica.is_leader() {
                let (_, term) = n.replica.leader();
                let id = n.replica.id();
                let first = *self.leaders.entry(term).or_insert_with(|| {
                    self.stats.elections += 1;
                    id
                });
                assert_eq!(
                    first, id,
                    "seed {}: two leaders in term {term}: {first} and {id}",
                    self.seed
                );
            }
        }
    }

    fn persist(&mut self, id: u64) {
        let node = &mut self.nodes[Self::idx(id)];
        let Some(number) = node.unpersisted.take() else {
            return;
        };
        node.disk.persist(node.replica.log());
        let held = node.replica.on_persisted(number);
        for m in held {
            self.net.push((id, m.to, m));
        }
        self.drain(id);
    }

    fn tick(&mut self, id: u64) {
        self.nodes[Self::idx(id)].replica.tick();
        self.drain(id);
    }

    fn deliver(&mut self, at: usize) {
        let (from, to, m) = self.net.swap_remove(at);

        if self.isolated.contains(&from) != self.isolated.contains(&to) {
            return;
        }
        if !IDS.contains(&to) {
            return;
        }
        self.nodes[Self::idx(to)].replica.step(m);
        self.drain(to);
    }

    /// A client's write at replica `id`: whether the replica took it.
    fn propose(&mut self, id: u64) -> Result<u64, ProposeError> {
        let token = self.next_token;
        self.next_token += 1;
        let r = self.nodes[Self::idx(id)]
            .replica
            .propose(token, B::data(token));
        if r.is_ok() {
            self.stats.proposed += 1;
        }

        self.drain(id);
        r.map(|()| token)
    }

    fn crash(&mut self, id: u64) {
        self.stats.crashes += 1;
        let disk = self.nodes[Self::idx(id)].disk.crash(&mut self.rng);
        let applied = std::mem::take(&mut self.nodes[Self::idx(id)].applied);
        let restart_seed = self.rng.next_u64();
        let before = applied.len();
        self.nodes[Self::idx(id)] = Node::start(id, disk, restart_seed, applied);
        // What recovery applied on its own is what every replica applies there.
        let node = &self.nodes[Self::idx(id)];
        for (i, data) in node.applied.iter().enumerate().skip(before) {
            let index = i as u64 + 1;
            let term = node.replica.log().term(index).expect("retained");
            let seen = self.model.entry(index).or_insert((term, data.clone()));
            assert_eq!(
                *seen,
                (term, data.clone()),
                "seed {}: replica {id}'s recovery applied a different entry at {index}",
                self.seed
            );
        }
        // Messages to and from the old process die with its connections.
        self.net.retain(|(f, t, _)| *f != id && *t != id);
        self.drain(id);
    }

    fn random_id(&mut self) -> u64 {
        IDS[self.rng.below(3) as usize]
    }

    /// One random event of the faulty phase.
    fn step_faulty(&mut self) {
        let roll = self.rng.below(100);
        match roll {
            0..=39 if !self.net.is_empty() => {
                let at = self.rng.below(self.net.len() as u64) as usize;
                if self.rng.chance(3) {
                    let copy = self.net[at].clone();
                    self.net.push(copy);
                }
                self.deliver(at);
            }
            40..=44 if !self.net.is_empty() => {
                let at = self.rng.below(self.net.len() as u64) as usize;
                self.net.swap_remove(at);
            }
            45..=64 => {
                let id = self.random_id();
                self.tick(id);
            }
            65..=79 => {
                let id = self.random_id();
                self.persist(id);
            }
            80..=93 => {
                let id = self.random_id();
                let _ = self.propose(id);
            }
            94..=95 => {
                let id = self.random_id();
                self.crash(id);
            }
            96 if self.rng.chance(50) => {
                let id = self.random_id();
                let node = &mut self.nodes[Self::idx(id)];
                node.disk.upkeep(node.replica.log());
            }
            96..=97 => {
                self.isolated.clear();
                if self.rng.chance(50) {
                    let id = self.random_id();
                    self.isolated.insert(id);
                }
            }
            _ => {
                let id = self.random_id();
                self.tick(id);
            }
        }
    }

    /// Fault-free rounds: every replica ticks and persists, every message is delivered.
    fn settle_round(&mut self) {
        for id in IDS {
            self.tick(id);
            self.persist(id);
        }
        while !self.net.is_empty() {
            self.deliver(0);
            for id in IDS {
                self.persist(id);
            }
        }
    }

    /// Every replica follows one leader in one term, and has applied all it committed.
    fn settled(&self) -> bool {
        let (leader, term) = self.nodes[0].replica.leader();
        if leader == 0 || !self.nodes[Self::idx(leader)].replica.is_leader() {
            return false;
        }
        let commit = self.nodes[Self::idx(leader)].replica.commit();
        self.nodes.iter().all(|n| {
            n.replica.leader() == (leader, term)
                && n.replica.commit() == commit
                && n.applied.len() as u64 == commit
        })
    }

    fn leader(&self) -> Option<u64> {
        self.settled().then(|| self.nodes[0].replica.leader().0)
    }
}

fn run_seed<B: Backend>(seed: u64) -> World<B> {
    let mut w = World::<B>::new(seed);
    let steps = 1000 + w.rng.below(3000);
    for _ in 0..steps {
        w.step_faulty();
    }
    // Faults stop: heal, and let the group settle.
    w.isolated.clear();
    let mut rounds = 0;
    while !w.settled() {
        w.settle_round();
        rounds += 1;
        assert!(rounds < 500, "seed {seed}: the healed group did not settle");
    }
    // It makes progress again: a client proposing at the leader, and proposing anew
    // when its proposal is refused or lost, gets one acknowledged.
    let mut token = None;
    let mut rounds = 0;
    loop {
        if let Some(t) = token
            && w.acked.contains_key(&t)
            && w.settled()
        {
            break;
        }
        if token.is_none_or(|t| w.lost.contains(&t))
            && let Some(leader) = w.leader()
        {
            token = w.propose(leader).ok();
        }
        w.settle_round();
        rounds += 1;
        assert!(
            rounds < 500,
            "seed {seed}: no proposal acknowledged after healing"
        );
    }
    for (&token, &index) in &w.acked {
        for n in &w.nodes {
            assert_eq!(
                n.applied.get((index - 1) as usize),
                Some(&B::data(token)),
                "seed {seed}: acknowledged proposal {token} (index {index}) missing on replica {}",
                n.replica.id()
            );
        }
    }
    for n in &w.nodes {
        for data in &n.applied {
            if let Some(token) = B::token(data) {
                assert!(
                    !w.lost.contains(&token),
                    "seed {seed}: proposal {token} reported lost but applied on replica {}",
                    n.replica.id()
                );
            }
        }
    }
    w
}

fn seeds(var: &str, default: u64) -> Vec<u64> {
    match std::env::var("TERN_RAFT_SEED") {
        Ok(s) => vec![s.parse().expect("TERN_RAFT_SEED is a number")],
        Err(_) => {
            let n = std::env::var(var)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(default);
            (0..n).collect()
        }
    }
}

fn add(total: &mut Stats, s: &Stats) {
    total.proposed += s.proposed;
    total.acked += s.acked;
    total.lost += s.lost;
    total.crashes += s.crashes;
    total.elections += s.elections;
}

#[test]
fn raft_groups_keep_every_acknowledged_write_through_faults() {
    let seeds = seeds("TERN_RAFT_SEEDS", 3000);
    let mut total = Stats::default();
    for seed in seeds.iter().copied() {
        add(&mut total, &run_seed::<MemDisk>(seed).stats);
    }
    eprintln!("raft sim: {} seeds, {total:?}", seeds.len());
    // The faults and the work actually happened.
    assert!(total.acked > 0 && total.crashes > 0 && total.elections > seeds.len() as u64);
}

/// The same over production's log: the replicated store on simulated disks.
#[test]
fn replicated_stores_agree_and_keep_every_acknowledged_write() {
    let seeds = seeds("TERN_RAFT_STORE_SEEDS", 1000);
    let mut total = Stats::default();
    let mut checkpoints = 0;
    for seed in seeds.iter().copied() {
        let w = run_seed::<StoreDisk>(seed);
        add(&mut total, &w.stats);
        // The three stores hold the same items: the committed entries applied in order.
        let mut want: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut exists = false;
        let applied = &w.nodes[0].applied;
        // Empty: a new leader's entry (or a configuration change).
        for data in applied.iter().filter(|d| !d.is_empty()) {
            let d = EntryData::decode(data).expect("entry data");
            match d.kind {
                RecordKind::CreateTable => exists = true,
                RecordKind::Put if exists => {
                    want.insert(d.key.to_vec(), d.value.to_vec());
                }
                _ => {}
            }
        }
        for n in &w.nodes {
            assert_eq!(
                store_items(n.replica.log()),
                want,
                "seed {seed}: replica {} holds other items",
                n.replica.id()
            );
            n.replica.log().store().borrow().check_invariants();
            checkpoints += n.disk.maintenance.counts().0;
        }
    }
    eprintln!(
        "raft store sim: {} seeds, {total:?}, checkpoints {checkpoints}",
        seeds.len()
    );
    assert!(total.acked > 0 && total.crashes > 0 && checkpoints > 0);
}
