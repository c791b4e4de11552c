//! Memory the engine holds per tracked object and per open span, measured with a counting
//! allocator (bytes live on the heap, not RSS).
//!
//! `cargo bench --bench memory`

#[path = "../tests/workload/gen.rs"]
mod workload;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use eventspan::engine::model::{
    ObjectMeta, ObjectState, Outcome, OutcomeKind, OwnerRef, SpecChange,
};
use eventspan::engine::time::Timestamp;
use eventspan::engine::{Engine, EngineConfig};
use workload::WorkloadConfig;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Pods of realistic name lengths, each owned by one of 1,000 ReplicaSets of 1,000 Deployments.
fn pod(i: usize) -> ObjectMeta {
    ObjectMeta {
        uid: format!("6f1c2a8e-{:04x}-4c1d-9b7e-{:012x}", i % 0xffff, i),
        kind: "Pod".into(),
        api_version: "v1".into(),
        namespace: format!("team-{}", i % 20),
        name: format!("checkout-service-7d4b9c6f5-{:05x}", i),
        generation: 1,
        labels: vec![
            ("app".into(), "checkout-service".into()),
            ("pod-template-hash".into(), "7d4b9c6f5".into()),
        ],
        owners: vec![OwnerRef {
            kind: "ReplicaSet".into(),
            api_version: "apps/v1".into(),
            name: format!("checkout-service-7d4b9c6f5-{}", i % 1000),
            uid: format!("1a2b3c4d-0000-4000-8000-{:012x}", i % 1000),
            controller: true,
        }],
        spec_changes: vec![SpecChange {
            manager: "kube-controller-manager".into(),
            operation: "Update".into(),
            time: Some(Timestamp::from_unix_secs(1_795_000_000)),
        }],
        created: Some(Timestamp::from_unix_secs(1_795_000_000)),
        deleting: None,
        traceparent: None,
        template: None,
        scale_target: None,
        // Pods are watched with their status: a Ready pod, as most are.
        state: Some(ObjectState {
            observed_generation: 1,
            outcome: Some(Outcome {
                kind: OutcomeKind::Done,
                reason: "Ready".into(),
                message: String::new(),
            }),
            since: None,
        }),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; without it (`cargo test --all-targets`) keep it quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n = if quick { 2_000 } else { 200_000 };

    // No cap may evict here: this measures what an object costs.
    let mut engine = Engine::new(EngineConfig {
        max_objects: usize::MAX,
        max_object_bytes: usize::MAX,
        ..EngineConfig::default()
    });
    let pods: Vec<ObjectMeta> = (0..n).map(pod).collect();
    let before = live();
    for (i, p) in pods.iter().enumerate() {
        engine.upsert_object(
            p,
            Timestamp::from_unix_secs(1_795_000_000 + (i / 1000) as i64),
        );
    }
    let objects = engine.stats().objects;
    let bytes = live() - before;
    let counted = engine.stats().object_bytes;
    println!(
        "object table: {objects} objects ({n} pods + their ReplicaSets), {bytes} bytes live, {:.0} bytes per object; the byte cap counts {counted} ({:.2} of live)",
        bytes as f64 / objects as f64,
        counted as f64 / bytes as f64
    );
    assert!(
        bytes as f64 / objects as f64 <= 1024.0,
        "memory per tracked object above 1 KiB"
    );
    drop(engine);

    // Peak open state while a workload is in flight (nothing flushed until its horizon passes).
    let cfg = WorkloadConfig {
        deployments: if quick { 20 } else { 500 },
        pods_per_deployment: 10,
        ..Default::default()
    };
    let w = workload::generate(&cfg);
    let before = live();
    let mut engine = Engine::new(EngineConfig::default());
    let mut peak = 0isize;
    let mut peak_stats = engine.stats();
    for change in &w.changes {
        engine.apply(change.clone());
        engine.drain_finished().for_each(drop);
        if live() - before > peak {
            peak = live() - before;
            peak_stats = engine.stats();
        }
    }
    let end = engine.stats();
    println!(
        "workload {}x{} ({} events): {} objects at the end; peak {} bytes live with {} objects, {} open spans, {} held events, {} tracked events",
        cfg.deployments,
        cfg.pods_per_deployment,
        w.events,
        end.objects,
        peak,
        peak_stats.objects,
        peak_stats.open_spans,
        peak_stats.held_now,
        peak_stats.tracked_events
    );
}
