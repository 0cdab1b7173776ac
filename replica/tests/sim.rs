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
//! `TERN_RAFT_SEEDS` (default 3000) scales it; `TERN_RAFT_SEED=N` runs one seed.

use std::collections::{BTreeMap, HashMap, HashSet};

use raft::eraftpb::Message;
use tern_replica::{MemLog, ProposeError, Replica, Resolution};
use tern_storage::sim::SplitMix;

const IDS: [u64; 3] = [1, 2, 3];

struct Node {
    replica: Replica<MemLog>,
    /// The log as of the last persist: what survives a crash.
    disk: MemLog,
    /// The newest Ready appended and not yet persisted.
    unpersisted: Option<u64>,
    /// The state machine: the data of every entry applied, in index order from 1.
    applied: Vec<Vec<u8>>,
}

impl Node {
    fn start(id: u64, disk: MemLog, seed: u64) -> Node {
        Node {
            replica: Replica::new(id, disk.clone(), 0, seed).expect("a replica starts"),
            disk,
            unpersisted: None,
            applied: Vec::new(),
        }
    }
}

struct World {
    rng: SplitMix,
    seed: u64,
    nodes: Vec<Node>,
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

fn token_data(token: u64) -> Vec<u8> {
    token.to_le_bytes().to_vec()
}

impl World {
    fn new(seed: u64) -> World {
        let disk = MemLog::new(&IDS);
        World {
            rng: SplitMix(seed),
            seed,
            nodes: IDS
                .iter()
                .map(|&id| Node::start(id, disk.clone(), seed))
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
            let out = self.nodes[Self::idx(id)].replica.poll();
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
                            Some(&token_data(token)),
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
        node.disk = node.replica.log().clone();
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
            .propose(token, token_data(token));
        if r.is_ok() {
            self.stats.proposed += 1;
        }

        self.drain(id);
        r.map(|()| token)
    }

    fn crash(&mut self, id: u64) {
        self.stats.crashes += 1;
        let disk = self.nodes[Self::idx(id)].disk.clone();
        let restart_seed = self.rng.next_u64();
        self.nodes[Self::idx(id)] = Node::start(id, disk, restart_seed);
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

fn run_seed(seed: u64) -> Stats {
    let mut w = World::new(seed);
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
                Some(&token_data(token)),
                "seed {seed}: acknowledged proposal {token} (index {index}) missing on replica {}",
                n.replica.id()
            );
        }
    }
    for n in &w.nodes {
        for data in &n.applied {
            if let Ok(raw) = <[u8; 8]>::try_from(&data[..]) {
                let token = u64::from_le_bytes(raw);
                assert!(
                    !w.lost.contains(&token),
                    "seed {seed}: proposal {token} reported lost but applied on replica {}",
                    n.replica.id()
                );
            }
        }
    }
    w.stats
}

#[test]
fn raft_groups_keep_every_acknowledged_write_through_faults() {
    let seeds: Vec<u64> = match std::env::var("TERN_RAFT_SEED") {
        Ok(s) => vec![s.parse().expect("TERN_RAFT_SEED is a number")],
        Err(_) => {
            let n = std::env::var("TERN_RAFT_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(3000);
            (0..n).collect()
        }
    };
    let mut total = Stats::default();
    for seed in seeds.iter().copied() {
        let s = run_seed(seed);
        total.proposed += s.proposed;
        total.acked += s.acked;
        total.lost += s.lost;
        total.crashes += s.crashes;
        total.elections += s.elections;
    }
    eprintln!("raft sim: {} seeds, {total:?}", seeds.len());
    // The faults and the work actually happened.
    assert!(total.acked > 0 && total.crashes > 0 && total.elections > seeds.len() as u64);
}
