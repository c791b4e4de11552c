//! Runs the hostile-input generator of `tests/hostile/` for as long as asked:
//!
//! ```text
//! cargo run --release --example fuzz -- --minutes 10 [--seed N] [--max-ops 400]
//! ```
//!
//! Each case is a random list of ops checked against the same properties as `cargo test --test
//! hostile`. A failing case is written to `tests/hostile/regressions/found-<seed>-<n>.ops` (commit
//! it: the test suite replays every file there) and the run goes on; the exit status is 1 if any
//! case failed. A case that does not finish within a minute counts as a hang.

#[path = "../tests/workload/gen.rs"]
mod workload;

#[path = "../tests/hostile/gen.rs"]
mod generator;

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use workload::Rng;

const HANG: Duration = Duration::from_secs(60);

fn flag(args: &[String], name: &str) -> Option<u64> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let minutes = flag(&args, "--minutes").unwrap_or(1);
    let seed = flag(&args, "--seed").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let max_ops = flag(&args, "--max-ops").unwrap_or(400).max(1);
    let until = Instant::now() + Duration::from_secs(minutes * 60);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/regressions");
    let mut rng = Rng(seed);
    let (mut cases, mut failures, mut ops_total) = (0u64, 0u64, 0u64);
    println!("fuzz: seed {seed}, {minutes} min, up to {max_ops} ops per case");
    while Instant::now() < until {
        let len = 1 + rng.next_u64() % max_ops;
        let ops: Vec<generator::Op> = (0..len)
            .map(|_| {
                let r = rng.next_u64();
                (r as u8, (r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u16)
            })
            .collect();
        cases += 1;
        ops_total += len;
        let (tx, rx) = mpsc::channel();
        let case = ops.clone();
        std::thread::spawn(move || {
            let _ = tx.send(generator::check(&case).map(|_| ()));
        });
        let verdict = match rx.recv_timeout(HANG) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("no result within {HANG:?}")),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("panicked".into()),
        };
        if let Err(reason) = verdict {
            failures += 1;
            let file = dir.join(format!("found-{seed}-{cases}.ops"));
            let text = format!("# {reason}\n{}", generator::format(&ops));
            match std::fs::write(&file, text) {
                Ok(()) => println!("case {cases}: {reason}\n  saved as {}", file.display()),
                Err(e) => println!("case {cases}: {reason}\n  could not save it: {e}"),
            }
        }
    }
    println!("fuzz: {cases} cases, {ops_total} ops, {failures} failed");
    if failures == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}
