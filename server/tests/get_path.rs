//! The GetItem read path does not decode, re-encode or copy the item into a new buffer:
//! a hit allocates nothing at all inside `Core::dispatch`, and the reply body is the very
//! bytes the client put.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use tern_protocol::frame::{
    FLAG_FOUND, FLAG_RESPONSE, NO_SHARD_HINT, Opcode, parse_frame, write_frame,
};
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

/// Counts allocations made by the current thread while counting is on.
struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every method forwards to the system allocator unchanged; the only addition is
// a thread-local counter (const-initialized Cells: no allocation, no destructor).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    let result = f();
    COUNTING.with(|c| c.set(false));
    (result, ALLOCATIONS.with(Cell::get))
}

fn frame(opcode: Opcode, id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, opcode, 0, id, NO_SHARD_HINT, &[body]);
    out
}

async fn run(core: &std::rc::Rc<Core>, bytes: &[u8]) -> Vec<u8> {
    let (f, _) = parse_frame(bytes).unwrap().unwrap();
    let mut out = Vec::new();
    match core.dispatch(f, &mut out) {
        Outcome::Done => out,
        Outcome::Later(fut) => fut.await,
        Outcome::Durable { pos, .. } => {
            core.durable(pos).await.unwrap();
            out
        }
        Outcome::Forward(_) | Outcome::Malformed => panic!("one shard serves everything"),
    }
}

#[test]
fn get_item_hit_allocates_nothing_and_returns_the_put_bytes() {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(512 * 1024)
        .spawn(|| async {
            let (req_tx, _req_rx) = MeshBuilder::<Request, _>::full(1, 16).join().await.unwrap();
            let (rep_tx, _rep_rx) = MeshBuilder::<Reply, _>::full(1, 16).join().await.unwrap();
            let data = tempfile::tempdir().unwrap();
            // Durability none: a put is acknowledged at once, and this test looks at the
            // read path only (a read of a not-yet-durable item is deferred by design).
            let config = StoreConfig {
                segment_size: 8 << 20,
                durability: Durability::None,
                ..StoreConfig::default()
            };
            let (shard, _) = Shard::open(0, data.path(), config, Default::default()).unwrap();
            let core = Core::new(
                Topology::new("t".into(), 0, vec![(0, 0)]),
                Mesh::new(0, req_tx, rep_tx),
                shard,
                ShardCacheState::new(&CacheSettings::for_tests(), 1),
            );

            let create = encode(&CreateTableRequest {
                name: "users".into(),
                key_schema: KeySchema {
                    partition: KeyAttr {
                        name: "id".into(),
                        ty: ScalarType::S,
                    },
                    sort: None,
                },
            });
            run(&core, &frame(Opcode::CreateTable, 1, &create)).await;
            let item = Item::from_attrs([
                ("id".to_owned(), Value::S("user-42".into())),
                ("bio".to_owned(), Value::S("x".repeat(100))),
                ("n".to_owned(), Value::N(7.into())),
            ])
            .encode();
            let put = encode(&PutItemRequest {
                table: "users".into(),
                item: item.clone(),
                return_values: ReturnValues::None,
            });
            run(&core, &frame(Opcode::PutItem, 2, &put)).await;

            let key = Item::from_attrs([("id".to_owned(), Value::S("user-42".into()))]).encode();
            let get = frame(
                Opcode::GetItem,
                3,
                &encode(&GetItemRequest {
                    table: "users".into(),
                    key,
                    consistent_read: false,
                }),
            );
            let mut out = Vec::with_capacity(64 * 1024);
            // Warm up once (first use of the scratch buffer), then measure.
            let (f, _) = parse_frame(&get).unwrap().unwrap();
            assert!(matches!(core.dispatch(f, &mut out), Outcome::Done));
            out.clear();
            let (outcome, allocations) = allocations_during(|| core.dispatch(f, &mut out));
            assert!(matches!(outcome, Outcome::Done));
            assert_eq!(allocations, 0, "a GetItem hit must not allocate");

            let (reply, used) = parse_frame(&out).unwrap().unwrap();
            assert_eq!(used, out.len());
            assert_eq!(reply.header.flags, FLAG_RESPONSE | FLAG_FOUND);
            assert_eq!(reply.header.request_id, 3);
            assert_eq!(
                reply.body,
                item.as_slice(),
                "the reply body is the stored, client-encoded item"
            );

            // Neither does a strongly consistent read (the store's path: no cache fill).
            let key = Item::from_attrs([("id".to_owned(), Value::S("user-42".into()))]).encode();
            let strong = frame(
                Opcode::GetItem,
                6,
                &encode(&GetItemRequest {
                    table: "users".into(),
                    key,
                    consistent_read: true,
                }),
            );
            let (f, _) = parse_frame(&strong).unwrap().unwrap();
            out.clear();
            let (_, allocations) = allocations_during(|| core.dispatch(f, &mut out));
            assert_eq!(allocations, 0, "a consistent GetItem must not allocate");
            let (reply, _) = parse_frame(&out).unwrap().unwrap();
            assert_eq!(reply.body, item.as_slice());

            // A miss allocates nothing either, once its negative entry is cached (the
            // first miss fills it) and when read consistently.
            let missing = Item::from_attrs([("id".to_owned(), Value::S("nobody".into()))]).encode();
            for consistent_read in [false, true] {
                let get = frame(
                    Opcode::GetItem,
                    4,
                    &encode(&GetItemRequest {
                        table: "users".into(),
                        key: missing.clone(),
                        consistent_read,
                    }),
                );
                let (f, _) = parse_frame(&get).unwrap().unwrap();
                out.clear();
                core.dispatch(f, &mut out);
                out.clear();
                let (_, allocations) = allocations_during(|| core.dispatch(f, &mut out));
                assert_eq!(allocations, 0, "a GetItem miss must not allocate");
                let (reply, _) = parse_frame(&out).unwrap().unwrap();
                assert_eq!(reply.header.flags, FLAG_RESPONSE);
                assert!(reply.body.is_empty());
            }

            // The counter does count: a PutItem copies the item into the store.
            let put = frame(Opcode::PutItem, 5, &put);
            let (f, _) = parse_frame(&put).unwrap().unwrap();
            out.clear();
            let (_, allocations) = allocations_during(|| core.dispatch(f, &mut out));
            assert!(
                allocations > 0,
                "the counting allocator sees the store's copy"
            );
        })
        .unwrap()
        .join()
        .unwrap();
}

/// The durable-ack path: parking a reply frame until its position is durable, releasing
/// it into its connection's deferred buffer and the transport taking that buffer, in
/// steady state (after the arena, the queue and the buffers have grown once), allocates
/// nothing per request.
#[test]
fn parking_and_releasing_durable_acks_allocates_nothing_in_steady_state() {
    use tern_server::acks::AckQueue;
    use tern_server::service::{ConnCtx, Wakeup};
    use tern_storage::store::LogPos;

    let wakeup = Wakeup::new();
    let conns: Vec<_> = (0..4).map(|i| ConnCtx::new(i, wakeup.clone())).collect();
    let mut dirty = Vec::with_capacity(conns.len());
    let mut acks = AckQueue::default();
    let mut sent = Vec::with_capacity(64 * 1024);
    let mut reply = Vec::new();
    write_frame(
        &mut reply,
        Opcode::PutItem,
        FLAG_RESPONSE,
        9,
        NO_SHARD_HINT,
        &[&[0u8; 16]],
    );
    // One group commit: 64 writes park, one flush releases them all, the transport takes
    // every dirty connection's replies.
    let mut round = |pos: &mut u64| {
        for i in 0..64 {
            let c = &conns[i % conns.len()];
            c.begin_deferred();
            *pos += 100;
            acks.push(c, LogPos(*pos), &reply, Opcode::PutItem, 9);
        }
        let released = acks.release(LogPos(*pos));
        wakeup.take_dirty(&mut dirty);
        for c in dirty.drain(..) {
            sent.clear();
            c.take_deferred(&mut sent);
            assert!(!sent.is_empty());
        }
        released
    };
    let mut pos = 0;
    for _ in 0..16 {
        assert_eq!(round(&mut pos), 64);
    }
    let (released, allocations) =
        allocations_during(|| (0..100).map(|_| round(&mut pos)).sum::<usize>());
    assert_eq!(released, 6400);
    assert_eq!(allocations, 0, "the durable-ack path allocated");
}
