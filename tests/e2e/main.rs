//! End-to-end tests on a real control plane (kube-apiserver, controller manager, scheduler, etcd,
//! KWOK nodes) and a real trace backend (Jaeger), built from source by tests/cluster.
//!
//! One cluster serves every case (starting it once takes seconds; building it cold, minutes).
//! Cases run one after another and report like libtest; the exit status says if any failed.
//! `EVENTSPAN_E2E=skip` skips them all, loudly, for quick local iterations; CI never sets it.

mod cluster;
mod record;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use cluster::Cluster;

type Case = (&'static str, fn(&Cluster) -> Result<(), String>);

const CASES: &[Case] = &[
    (
        "cluster_answers_with_real_components",
        record::cluster_answers_with_real_components,
    ),
    (
        "deployment_events_are_recorded_and_replay_into_one_trace",
        record::deployment_events_are_recorded_and_replay_into_one_trace,
    ),
];

fn main() {
    if std::env::var("EVENTSPAN_E2E").as_deref() == Ok("skip") {
        println!(
            "\nEND-TO-END TESTS SKIPPED (EVENTSPAN_E2E=skip): {} cases not run\n",
            CASES.len()
        );
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let cases: Vec<&Case> = CASES
        .iter()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} end-to-end tests", cases.len());
    if cases.is_empty() {
        return;
    }
    let started = Instant::now();
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start the local cluster: {e}");
            std::process::exit(1);
        }
    };
    println!("cluster up in {:.1}s", started.elapsed().as_secs_f64());
    let mut failed = Vec::new();
    for (name, case) in cases {
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| case(&cluster))).unwrap_or_else(|panic| {
            Err(panic
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "panicked".into()))
        });
        match result {
            Ok(()) => println!("test {name} ... ok ({:.1}s)", t.elapsed().as_secs_f64()),
            Err(reason) => {
                println!(
                    "test {name} ... FAILED ({:.1}s)\n  {reason}",
                    t.elapsed().as_secs_f64()
                );
                failed.push(*name);
            }
        }
    }
    drop(cluster);
    if failed.is_empty() {
        println!(
            "\ntest result: ok. all end-to-end tests passed in {:.1}s\n",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("\ntest result: FAILED. failures: {}\n", failed.join(", "));
        std::process::exit(1);
    }
}
