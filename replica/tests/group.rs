//! The shard driver (`tern_replica::Group`) as production runs it, three of them over
//! simulated disks and a lossy, reordering network: writes proposed at whoever leads,
//! flush jobs as group commits, the leader crashed again and again (losing unsynced
//! writes) and recovered through `Store::open`. Checked: every acknowledged write is in
//! all three stores after the faults stop, no write reported lost is anywhere, the
//! stores end identical, and every replica reported each applied write (so its cache
//! could be written through; a replica that installed a snapshot refills from its store).
//! With 16 applied entries retained, replicas that fall behind are caught up by
//! snapshots, installed crash-safely. `TERN_GROUP_SEEDS` (default 1000) scales it.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use raft::eraftpb::Message;
use tern_replica::{Group, Resolution};
use tern_storage::format::RecordKind;
use tern_storage::sim::{SimDisk, SplitMix};
use tern_storage::store::Applied;

use common::{IDS, create_table, entry};

fn key(token: u64) -> Vec<u8> {
    [&token.to_be_bytes()[..], b"k"].concat()
}

fn put(token: u64) -> Vec<u8> {
    entry(RecordKind::Put, &key(token), &token.to_le_bytes())
}

struct Node {
    disk: SimDisk,
    group: Group<SimDisk>,
    /// Keys whose Put this replica reported applied.
    applied_puts: HashSet<Vec<u8>>,
    /// Its upkeep lane (checkpoints complete snapshot installs).
    lane: tern_storage::maintenance::Maintenance,
}

impl Node {
    fn open(id: u64, disk: SimDisk, seed: u64) -> Node {
        let (disk, group) = common::open(id, disk, &IDS, seed);
        Node {
            disk,
            group,
            applied_puts: HashSet::new(),
            lane: tern_storage::maintenance::Maintenance::new(4096),
        }
    }

    fn flush(&mut self) {
        common::flush(&self.group, &self.disk);
        common::upkeep(&self.group, &self.disk, &mut self.lane);
    }

    fn items(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        common::items(&self.group)
    }
}

struct World {
    seed: u64,
    rng: SplitMix,
    nodes: Vec<Node>,
    net: Vec<Message>,
    acked: HashMap<u64, u64>,
    lost: HashSet<u64>,
    /// Tokens proposed as Puts (the others created the table).
    puts: HashSet<u64>,
    next_token: u64,
    table_created: bool,
    crashes: u64,
    snapshots: u64,
}

impl World {
    fn node(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    fn drive(&mut self, id: u64) {
        let seed = self.seed;
        let p = self
            .node(id)
            .group
            .drive()
            .expect("the store does not fail");
        for a in &p.applied {
            match &a.effect {
                Applied::Put { slot, .. } => {
                    // The item is the token; the key follows from it.
                    let item = self
                        .node(id)
                        .group
                        .store()
                        .borrow()
                        .item_at(*slot)
                        .expect("item")
                        .to_vec();
                    let token = u64::from_le_bytes(item.try_into().expect("8-byte items"));
                    self.node(id).applied_puts.insert(key(token));
                }
                Applied::CreateTable { result: Ok(()), .. } => self.table_created = true,
                _ => {}
            }
        }
        for r in p.resolved {
            match r {
                Resolution::Applied { token, index } => {
                    assert!(
                        self.acked.insert(token, index).is_none(),
                        "seed {seed}: {token} acked twice"
                    );
                }
                Resolution::Lost { token } => {
                    self.lost.insert(token);
                }
                Resolution::Unknown { .. } => {}
            }
        }
        if p.snapshot.is_some() {
            self.snapshots += 1;
            // The state was replaced wholesale: a cache would be dropped and refilled.
            let keys = common::items(&self.node(id).group).into_keys().collect();
            self.node(id).applied_puts = keys;
        }
        self.net.extend(p.messages);
    }

    fn leader(&self) -> Option<u64> {
        self.nodes
            .iter()
            .find(|n| n.group.replica().is_leader())
            .map(|n| n.group.replica().id())
    }

    fn step(&mut self) {
        let id = IDS[self.rng.below(3) as usize];
        match self.rng.below(100) {
            0..=44 if self.net.is_empty() => {
                self.node(id).group.tick();
                self.drive(id);
            }
            0..=44 => {
                let at = self.rng.below(self.net.len() as u64) as usize;
                let m = self.net.swap_remove(at);
                if self.rng.chance(5) {
                    return; // dropped
                }
                let to = m.to;
                if IDS.contains(&to) {
                    self.node(to).group.step(m);
                    self.drive(to);
                }
            }
            45..=64 => {
                self.node(id).group.tick();
                self.drive(id);
            }
            65..=84 => {
                self.node(id).flush();
                self.drive(id);
            }
            85..=98 => {
                if let Some(l) = self.leader() {
                    let token = self.next_token;
                    self.next_token += 1;
                    let data = if self.table_created {
                        self.puts.insert(token);
                        put(token)
                    } else {
                        create_table()
                    };
                    if self.node(l).group.propose(token, data).is_ok() {
                        self.drive(l);
                    }
                }
            }
            _ => {
                // 1 %: crash the leader (or anyone): unsynced writes are lost.
                let victim = self.leader().unwrap_or(id);
                self.crashes += 1;
                let image = self.nodes[(victim - 1) as usize].disk.crash(&mut self.rng);
                let seed = self.rng.next_u64();
                let applied_puts = std::mem::take(&mut self.node(victim).applied_puts);
                *self.node(victim) = Node::open(victim, image, seed);
                // What it applied before stays applied (its cache was written then).
                self.node(victim).applied_puts = applied_puts;
                self.net.retain(|m| m.to != victim && m.from != victim);
                self.drive(victim);
            }
        }
    }

    fn settle(&mut self) {
        for _ in 0..400 {
            for id in IDS {
                self.node(id).group.tick();
                self.drive(id);
                self.node(id).flush();
                self.drive(id);
            }
            while let Some(m) = self.net.pop() {
                let to = m.to;
                self.node(to).group.step(m);
                self.drive(to);
                self.node(to).flush();
                self.drive(to);
            }
            let Some(l) = self.leader() else { continue };
            let commit = self.node(l).group.replica().commit();
            if self
                .nodes
                .iter()
                .all(|n| n.group.store().borrow().raft_applied() == commit)
            {
                return;
            }
        }
        panic!("seed {}: the group did not settle", self.seed);
    }
}

#[test]
fn the_shard_driver_keeps_every_acknowledged_write_on_every_replica() {
    let seeds: u64 = std::env::var("TERN_GROUP_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let (mut acked, mut crashes, mut snapshots) = (0, 0, 0);
    for seed in 0..seeds {
        let mut w = World {
            seed,
            rng: SplitMix(seed),
            nodes: IDS
                .iter()
                .map(|&id| Node::open(id, SimDisk::new(), seed))
                .collect(),
            net: Vec::new(),
            acked: HashMap::new(),
            lost: HashSet::new(),
            puts: HashSet::new(),
            next_token: 1,
            table_created: false,
            crashes: 0,
            snapshots: 0,
        };
        for _ in 0..1500 {
            w.step();
        }
        w.settle();
        let items = w.nodes[0].items();
        for n in &w.nodes {
            assert_eq!(n.items(), items, "seed {seed}: replicas differ");
            n.group.store().borrow().check_invariants();
        }
        let mut acked_puts = 0;
        for &token in w.acked.keys().filter(|t| w.puts.contains(t)) {
            let k = key(token);
            assert_eq!(
                items.get(&k),
                Some(&token.to_le_bytes().to_vec()),
                "seed {seed}: acknowledged write {token} is missing"
            );
            for n in &w.nodes {
                assert!(
                    n.applied_puts.contains(&k),
                    "seed {seed}: replica {} never reported {token} applied",
                    n.group.replica().id()
                );
            }
            acked_puts += 1;
        }
        for &t in &w.lost {
            assert!(
                !items.contains_key(&key(t)),
                "seed {seed}: lost proposal {t} applied"
            );
        }
        acked += acked_puts as u64;
        crashes += w.crashes;
        snapshots += w.snapshots;
    }
    eprintln!(
        "group sim: {seeds} seeds, {acked} acknowledged writes, {crashes} crashes, {snapshots} snapshots installed"
    );
    assert!(acked > seeds && crashes > seeds && snapshots > seeds / 10);
}
