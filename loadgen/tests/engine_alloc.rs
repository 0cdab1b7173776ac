//! The hot path does not allocate: a run of many operations allocates a bounded number of
//! times (setup, templates, one recorder per interval), not once per operation.
#![allow(unsafe_code)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use support::{ops_run, serial, spec};
use tern_loadgen::engine;
use tern_loadgen::fake::{FakeConfig, FakeServer};
use tern_loadgen::proto::ProtocolKind;
use tern_loadgen::workload::{Mix, ValueSize};

/// Counts every allocation of the process.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract for `dealloc` is passed through.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations of a whole run (setup included) of `ops` operations.
fn allocations(protocol: ProtocolKind, mix: Mix, ops: u64) -> u64 {
    let server = FakeServer::start(FakeConfig::new(protocol)).expect("fake server");
    let mut workload = spec(mix, 100_000);
    workload.value = ValueSize::Range { min: 50, max: 150 };
    let mut config = ops_run(&server.target(), protocol, workload, ops);
    config.depth = 32;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let report = engine::run(&config).expect("run");
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(report.total.ops, ops);
    allocations
}

/// Allocations per operation beyond the fixed cost of a run: the difference between a
/// long and a short run.
fn allocations_per_op(protocol: ProtocolKind, mix: Mix) -> f64 {
    let (short, long) = (50_000, 250_000);
    let fixed = allocations(protocol, mix, short);
    let total = allocations(protocol, mix, long);
    total.saturating_sub(fixed) as f64 / (long - short) as f64
}

#[test]
fn the_hot_path_does_not_allocate_per_operation() {
    let _serial = serial();
    for (protocol, mix) in [
        (ProtocolKind::Tern, Mix::YcsbA),
        (ProtocolKind::Tern, Mix::YcsbF),
        (ProtocolKind::Resp, Mix::YcsbA),
    ] {
        // Setup, ~100 PutItem templates (one per value size) and the recorders cost the
        // same in both runs; one allocation per op would make this 1.
        let per_op = allocations_per_op(protocol, mix);
        eprintln!("{protocol} {mix}: {per_op:.4} allocations per operation");
        assert!(
            per_op < 0.01,
            "{protocol} {mix}: {per_op:.3} allocations per operation"
        );
    }
}
