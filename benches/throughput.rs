//! Throughput of the correlation engine alone and of replay end to end (parse, correlate,
//! encode OTLP/JSON), on the synthetic rollout workload.
//!
//! `cargo bench --bench throughput`; figures in events per second are in README's performance
//! section.

#[path = "../tests/workload/gen.rs"]
mod workload;

/// The allocator the eventspan binary uses, so the figures are the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventspan::engine::{Engine, EngineConfig};
use eventspan::replay;
use workload::WorkloadConfig;

fn workload() -> (WorkloadConfig, workload::Workload) {
    let cfg = WorkloadConfig {
        deployments: 200,
        pods_per_deployment: 10,
        ..Default::default()
    };
    let w = workload::generate(&cfg);
    (cfg, w)
}

fn engine(c: &mut Criterion) {
    let (_, w) = workload();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(w.events));
    group.sample_size(20);
    group.bench_function("rollouts_200x10", |b| {
        // Input cloning (setup) and dropping the produced spans (criterion drops routine
        // outputs after timing) are outside the measurement: this is the engine alone.
        b.iter_batched(
            || w.changes.clone(),
            |changes| {
                let mut engine = Engine::new(EngineConfig::default());
                let mut spans = Vec::with_capacity(changes.len());
                for change in changes {
                    engine.apply(change);
                    spans.extend(engine.drain_finished());
                }
                engine.finish();
                spans.extend(engine.drain_finished());
                spans
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn replay_end_to_end(c: &mut Criterion) {
    let (_, w) = workload();
    let input = workload::to_json_lines(&w);
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(w.events));
    group.sample_size(10);
    group.bench_function("otlp_json_200x10", |b| {
        b.iter(|| {
            // As the CLI runs: the input read as a stream, each trace written once it settled.
            let writer = replay::StreamedOtlpJson::new(ByteCount(0));
            let skipped = |bad| panic!("skipped {bad:?}");
            replay::stream_otlp_json(input.as_bytes(), EngineConfig::default(), writer, skipped)
                .unwrap()
                .1
                .0
        })
    });
    group.finish();
}

/// Counts what would be written: the output's cost without a terminal or disk in the figure.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

criterion_group!(benches, engine, replay_end_to_end);
criterion_main!(benches);
