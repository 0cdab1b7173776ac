//! Replacing a dead AZ node with an empty one, through the shard driver: node 3 of
//! {1, 2, 3} dies for good; node 4 joins with an empty store (Raft conf change, catch-up
//! from the leader: with 16 applied entries retained, by a snapshot that also carries
//! the configuration), node 3 is removed; every write acknowledged before and after
//! is on 1, 2 and 4; node 4 keeps its membership across a crash, and the group survives
//! losing its leader afterwards (a quorum of {1, 2, 4}).

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Message};
use tern_replica::{Group, Resolution};
use tern_storage::format::RecordKind;
use tern_storage::sim::{SimDisk, SplitMix};

use common::{create_table, entry};

fn key(n: u64) -> Vec<u8> {
    [&n.to_be_bytes()[..], b"k"].concat()
}

fn change(ty: ConfChangeType, node: u64) -> ConfChangeV2 {
    let mut single = ConfChangeSingle::default();
    single.set_change_type(ty);
    single.node_id = node;
    ConfChangeV2 {
        changes: vec![single].into(),
        ..ConfChangeV2::default()
    }
}

struct Node {
    disk: SimDisk,
    group: Group<SimDisk>,
    /// Its upkeep lane: checkpoints complete snapshot installs.
    lane: tern_storage::maintenance::Maintenance,
}

fn open(id: u64, disk: SimDisk, voters: &[u64]) -> Node {
    let (disk, group) = common::open(id, disk, voters, id);
    Node {
        disk,
        group,
        lane: tern_storage::maintenance::Maintenance::new(4096),
    }
}

struct Cluster {
    nodes: HashMap<u64, Node>,
    net: Vec<Message>,
    acked: HashSet<u64>,
    next_token: u64,
}

impl Cluster {
    fn drive(&mut self, id: u64) {
        let Some(n) = self.nodes.get_mut(&id) else {
            return;
        };
        let p = n.group.drive().expect("the store does not fail");
        for r in p.resolved {
            if let Resolution::Applied { token, .. } = r {
                self.acked.insert(token);
            }
        }
        self.net.extend(p.messages);
    }

    /// One round: every node ticks, flushes, and every message in flight is delivered
    /// (to live nodes; the dead and the removed hear nothing).
    fn round(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in &ids {
            self.nodes.get_mut(id).unwrap().group.tick();
            self.drive(*id);
        }
        for _ in 0..50 {
            for id in &ids {
                let n = self.nodes.get_mut(id).unwrap();
                common::flush(&n.group, &n.disk);
                common::upkeep(&n.group, &n.disk, &mut n.lane);
                self.drive(*id);
            }
            if self.net.is_empty() {
                break;
            }
            for m in std::mem::take(&mut self.net) {
                let to = m.to;
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.group.step(m);
                    self.drive(to);
                }
            }
        }
    }

    fn leader(&self) -> Option<u64> {
        self.nodes
            .values()
            .find(|n| n.group.replica().is_leader())
            .map(|n| n.group.replica().id())
    }

    fn until(&mut self, what: &str, cond: impl Fn(&Cluster) -> bool) {
        for _ in 0..300 {
            if cond(self) {
                return;
            }
            self.round();
        }
        panic!("never: {what}");
    }

    /// Proposes at the leader until it is acknowledged.
    fn write(&mut self, data: Vec<u8>) {
        let token = self.next_token;
        self.next_token += 1;
        self.until("a leader", |c| c.leader().is_some());
        for _ in 0..20 {
            let l = self.leader().expect("leader");
            if self
                .nodes
                .get_mut(&l)
                .unwrap()
                .group
                .propose(token, data.clone())
                .is_ok()
            {
                self.drive(l);
                let t = token;
                for _ in 0..50 {
                    if self.acked.contains(&t) {
                        return;
                    }
                    self.round();
                }
            }
            self.round();
        }
        panic!("write {token} never acknowledged");
    }

    fn conf_change(&mut self, cc: ConfChangeV2, want: Vec<u64>) {
        let token = self.next_token;
        self.next_token += 1;
        for _ in 0..50 {
            self.until("a leader", |c| c.leader().is_some());
            let l = self.leader().unwrap();
            if self.nodes.get(&l).unwrap().group.replica().voters() == want {
                return;
            }
            if self
                .nodes
                .get_mut(&l)
                .unwrap()
                .group
                .propose_conf_change(token, cc.clone())
                .is_ok()
            {
                self.drive(l);
            }
            for _ in 0..20 {
                self.round();
            }
        }
        panic!("the configuration never became {want:?}");
    }

    fn items(&self, id: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
        common::items(&self.nodes[&id].group)
    }
}

#[test]
fn a_dead_node_is_replaced_by_an_empty_one() {
    let voters = [1, 2, 3];
    let mut c = Cluster {
        nodes: voters
            .iter()
            .map(|&id| (id, open(id, SimDisk::new(), &voters)))
            .collect(),
        net: Vec::new(),
        acked: HashSet::new(),
        next_token: 1,
    };
    c.write(create_table());
    let mut want = BTreeMap::new();
    for n in 0..50u64 {
        c.write(entry(RecordKind::Put, &key(n), &n.to_le_bytes()));
        want.insert(key(n), n.to_le_bytes().to_vec());
    }

    // Node 3 dies for good; node 4 starts empty, with the group's bootstrap voters:
    // it replays the configuration changes from the leader's log (while the log still
    // reaches back to its start; past that a snapshot carries the configuration).
    c.nodes.remove(&3);
    c.nodes.insert(4, open(4, SimDisk::new(), &voters));
    // The leader's log no longer reaches entry 1: node 4 is caught up by a snapshot.
    let l = c.leader().unwrap();
    assert!(c.nodes[&l].group.store().borrow().raft_first() > 1);
    c.conf_change(change(ConfChangeType::AddNode, 4), vec![1, 2, 3, 4]);
    c.conf_change(change(ConfChangeType::RemoveNode, 3), vec![1, 2, 4]);
    for n in 50..100u64 {
        c.write(entry(RecordKind::Put, &key(n), &n.to_le_bytes()));
        want.insert(key(n), n.to_le_bytes().to_vec());
    }
    c.until("every member applied everything", |c| {
        let l = c.leader().unwrap();
        let commit = c.nodes[&l].group.replica().commit();
        c.nodes
            .values()
            .all(|n| n.group.store().borrow().raft_applied() == commit)
    });
    for id in [1, 2, 4] {
        assert_eq!(c.items(id), want, "node {id}");
        assert_eq!(
            c.nodes[&id].group.replica().voters(),
            vec![1, 2, 4],
            "node {id}"
        );
    }

    // Node 4 crashes and restarts: still a member (its configuration was recorded).
    let mut rng = SplitMix(4);
    let image = c.nodes[&4].disk.crash(&mut rng);
    c.nodes.insert(4, open(4, image, &voters));
    c.round();
    assert_eq!(c.nodes[&4].group.replica().voters(), vec![1, 2, 4]);

    // The leader dies: {the other two} elect one and take writes.
    let l = c.leader().unwrap();
    c.nodes.remove(&l);
    for n in 100..110u64 {
        c.write(entry(RecordKind::Put, &key(n), &n.to_le_bytes()));
        want.insert(key(n), n.to_le_bytes().to_vec());
    }
    c.until("the survivors applied everything", |c| {
        let Some(l) = c.leader() else { return false };
        let commit = c.nodes[&l].group.replica().commit();
        c.nodes
            .values()
            .all(|n| n.group.store().borrow().raft_applied() == commit)
    });
    for &id in c.nodes.keys() {
        assert_eq!(c.items(id), want, "node {id} after the leader died");
    }
}
