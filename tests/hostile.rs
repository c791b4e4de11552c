//! The engine under hostile input: a few hundred generated cases per run (see
//! `hostile/gen.rs` for the attacks and the properties), and every case the generator ever
//! found, kept in `hostile/regressions/`. `cargo run --release --example fuzz -- --minutes 10`
//! runs the same generator for as long as asked.

#[path = "hostile/gen.rs"]
mod generator;

use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;

/// A case that takes longer than this has hung: no input may make the engine loop.
const HANG: Duration = Duration::from_secs(60);

/// Runs a case on a thread of its own, so a hang fails the test instead of blocking it.
fn check_in_time(ops: Vec<generator::Op>) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(8 << 20)
        .spawn(move || {
            let _ = tx.send(generator::check(&ops).map(|_| ()));
        })
        .expect("thread");
    match rx.recv_timeout(HANG) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("no result within {HANG:?}: a hang")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("the case panicked".into()),
    }
}

fn ops() -> impl Strategy<Value = Vec<generator::Op>> {
    prop::collection::vec(any::<(u8, u8, u8, u16)>(), 1..300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn hostile_streams_keep_every_property(ops in ops()) {
        check_in_time(ops).map_err(TestCaseError::fail)?;
    }
}

/// Each file: one case, an op per line as `op a b c`.
#[test]
fn every_case_found_so_far_still_holds() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile/regressions");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("regressions folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ops"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the regression cases are in {dir}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        let ops = generator::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Err(e) = check_in_time(ops) {
            panic!("{}: {e}", file.display());
        }
    }
}

/// The properties can fail: the two events that used to overflow the stack (each a controller
/// message naming its own pod) are refused and counted, not just survived.
#[test]
fn a_self_naming_pod_event_is_refused_and_counted() {
    // op 4: an event with a uid of its own; a=0: shop; b=2: a Pod; c: "Created pod: <itself>"
    // in the pod's own namespace (1536: count 6; 1548: count u32::MAX).
    let ops = vec![(4, 0, 2, 1536), (4, 0, 2, 1548)];
    let stats = generator::check(&ops).expect("properties hold");
    assert_eq!(
        stats.rejected(eventspan::engine::Rejection::SelfReference),
        2,
        "{stats:?}"
    );
}

/// `HOSTILE_CASE=path cargo test --test hostile debug_case -- --nocapture` prints a stored case's
/// inputs and spans.
#[test]
fn debug_case() {
    let Ok(path) = std::env::var("HOSTILE_CASE") else {
        return;
    };
    let ops = generator::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
    generator::dump(&ops);
}
