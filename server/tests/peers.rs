//! The peer transport over loopback: three nodes' `Peers` on one glommio executor
//! (each with its own listener), messages both ways on every pair, a peer with the wrong
//! secret and raw garbage refused while the others keep talking, and a restarted node
//! redialled. Bounded waits (a hang guard, not a timing assertion).

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::LocalExecutorBuilder;
use glommio::net::TcpListener;
use raft::eraftpb::{Message, MessageType};
use tern_server::peers::{PeerConfig, Peers};

const SECRET: &[u8] = b"a-cluster-secret-of-some-length";

type Got = Rc<RefCell<Vec<(u64, u64, u32, u64)>>>; // (at, from, shard, term)

fn msg(from: u64, to: u64, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = term;
    m
}

fn start(
    id: u64,
    listener: TcpListener,
    addrs: &HashMap<u64, SocketAddr>,
    secret: &[u8],
    got: &Got,
) -> Rc<Peers> {
    let peers = addrs
        .iter()
        .filter(|(k, _)| **k != id)
        .map(|(k, v)| (*k, *v))
        .collect();
    let sink = got.clone();
    Peers::start(
        PeerConfig {
            id,
            secret: secret.to_vec(),
            peers,
        },
        listener,
        Rc::new(move |from, batch| {
            for e in batch {
                let tern_replica::peer::Payload::Raft(msg) = e.body else {
                    panic!("only Raft messages are sent here");
                };
                sink.borrow_mut().push((id, from, e.shard, msg.term));
            }
        }),
    )
    .expect("starts")
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn peers_authenticate_exchange_batches_and_survive_abuse_and_restarts() {
    LocalExecutorBuilder::default()
        .spawn(|| async {
            let listeners: Vec<TcpListener> = (0..3)
                .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
                .collect();
            let addrs: HashMap<u64, SocketAddr> = listeners
                .iter()
                .enumerate()
                .map(|(i, l)| (i as u64 + 1, l.local_addr().expect("addr")))
                .collect();
            let got: Got = Rc::new(RefCell::new(Vec::new()));
            let mut nodes: Vec<Rc<Peers>> = Vec::new();
            for (i, l) in listeners.into_iter().enumerate() {
                nodes.push(start(i as u64 + 1, l, &addrs, SECRET, &got));
            }
            wait_for("all pairs connected", || {
                nodes[0].connected(2)
                    && nodes[0].connected(3)
                    && nodes[1].connected(3)
                    && nodes[2].connected(1)
            })
            .await;

            // Every pair, both directions, several shards, many messages per batch.
            for from in 1..=3u64 {
                for to in 1..=3u64 {
                    if from != to {
                        for shard in 0..4u32 {
                            for term in 0..50u64 {
                                nodes[(from - 1) as usize].send(to, shard, msg(from, to, term));
                            }
                        }
                    }
                }
            }
            wait_for("every message delivered", || {
                got.borrow().len() == 6 * 4 * 50
            })
            .await;
            {
                let g = got.borrow();
                for from in 1..=3u64 {
                    for to in 1..=3u64 {
                        if from == to {
                            continue;
                        }
                        for shard in 0..4u32 {
                            // In order, per sender and shard.
                            let terms: Vec<u64> = g
                                .iter()
                                .filter(|(at, f, s, _)| *at == to && *f == from && *s == shard)
                                .map(|m| m.3)
                                .collect();
                            assert_eq!(
                                terms,
                                (0..50).collect::<Vec<_>>(),
                                "{from} -> {to} shard {shard}"
                            );
                        }
                    }
                }
            }

            // A peer without the secret, and raw garbage, at node 3's port: refused.
            let failed_before = nodes[2].stats().handshakes_failed;
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let mut wrong_addrs = addrs.clone();
            wrong_addrs.insert(1, listener.local_addr().unwrap());
            let impostor = {
                let peers = [(3u64, addrs[&3])].into_iter().collect();
                Peers::start(
                    PeerConfig {
                        id: 1,
                        secret: b"not-the-cluster-secret!!".to_vec(),
                        peers,
                    },
                    listener,
                    Rc::new(|_, _| panic!("the impostor is sent nothing")),
                )
                .expect("starts")
            };
            // A blocking client on its own thread (this executor must keep running to
            // answer it), with its own bounds.
            let garbage = addrs[&3];
            let garbage = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(garbage).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut hello = [0u8; 50];
                let _ = s.read_exact(&mut hello);
                let _ = s.write_all(&[0xFF; 4096]);
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest); // closed by node 3
            });
            wait_for("node 3 refused the impostor and the garbage", || {
                nodes[2].stats().handshakes_failed >= failed_before + 2
            })
            .await;
            impostor.close().await;
            garbage.join().expect("garbage client");
            // Node 3 still talks to node 1.
            got.borrow_mut().clear();
            nodes[0].send(3, 7, msg(1, 3, 999));
            wait_for("delivery after the abuse", || {
                got.borrow().contains(&(3, 1, 7, 999))
            })
            .await;

            // Node 2 restarts on its port: node 1 redials it.
            nodes[1].close().await;
            wait_for("node 1 saw node 2 go", || !nodes[0].connected(2)).await;
            let listener = TcpListener::bind(addrs[&2]).expect("rebind node 2's port");
            nodes[1] = start(2, listener, &addrs, SECRET, &got);
            wait_for("node 1 redialled node 2", || {
                nodes[0].connected(2) && nodes[1].connected(3)
            })
            .await;
            got.borrow_mut().clear();
            nodes[0].send(2, 1, msg(1, 2, 5));
            nodes[1].send(1, 1, msg(2, 1, 6));
            wait_for("delivery after the restart", || got.borrow().len() == 2).await;
            for n in &nodes {
                n.close().await;
            }
        })
        .expect("executor")
        .join()
        .expect("test body");
}
