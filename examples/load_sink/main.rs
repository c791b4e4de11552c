//! The cluster-load benchmark's OTLP receiver and its report (`tests/cluster/load` runs both).
//!
//! ```text
//! cargo run --example load_sink -- serve --listen 127.0.0.1:4318 --out spans.jsonl
//! cargo run --example load_sink -- report --spans spans.jsonl --expected expected.txt \
//!     --measures measures.txt
//! ```
//!
//! `serve` records every span received over OTLP/HTTP (protobuf, gzip or not) with its arrival
//! time; `GET /stats` says how many so far. `report` prints one Markdown table: the operator's
//! CPU, memory and API requests from the measurement file (see `measure.rs`), and from the spans
//! completeness, structure, misparenting, duplicates and event-to-export latency.

mod analysis;
mod events;
mod measure;
mod receiver;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use analysis::{Analysis, Expected, SpanRecord, quantile};
use measure::Measures;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive OTLP/HTTP spans and record them.
    Serve {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the benchmark's table.
    Report {
        #[arg(long)]
        spans: PathBuf,
        /// `KIND NAME GENERATION PODS` per rollout the churn made.
        #[arg(long)]
        expected: PathBuf,
        #[arg(long)]
        measures: PathBuf,
        /// `kubectl get events -o json` at the end: splits latency into the controllers'
        /// event write delay and the operator's part.
        #[arg(long)]
        events: Option<PathBuf>,
    },
}

#[derive(Debug, thiserror::Error)]
enum ReportError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {source}")]
    Span {
        path: String,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Expected(String),
    #[error(transparent)]
    Measures(#[from] measure::ParseError),
    #[error("{path}: not an Event list: {source}")]
    Events {
        path: String,
        source: serde_json::Error,
    },
}

/// What the API server's copy of the Events adds to the table.
#[derive(Debug, Default)]
struct EventFigures {
    /// Seconds from happening to being written, by reporting component.
    write_delays: std::collections::BTreeMap<String, Vec<f64>>,
    /// Receive time minus the time the API server had the span's event, ms, sorted.
    after_write_ms: Vec<f64>,
    /// Spans whose event was found (events expire after an hour, or may be gone).
    matched: usize,
}

impl EventFigures {
    fn of(
        events: &std::collections::HashMap<String, events::Written>,
        spans: &[SpanRecord],
    ) -> Self {
        let mut seen = std::collections::HashSet::new();
        // First receipts only, as the other latencies; the file is in arrival order.
        let mut after_write_ms: Vec<f64> = spans
            .iter()
            .filter(|s| seen.insert((s.trace.as_str(), s.span.as_str())))
            .filter_map(|s| {
                let e = events.get(s.attrs.get("k8s.event.name")?)?;
                Some(s.received_ns as f64 / 1e6 - e.written * 1e3)
            })
            .collect();
        after_write_ms.sort_by(f64::total_cmp);
        EventFigures {
            write_delays: events::write_delays(events),
            matched: after_write_ms.len(),
            after_write_ms,
        }
    }
}

fn read(path: &PathBuf) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn report(
    spans: &PathBuf,
    expected: &PathBuf,
    measures: &PathBuf,
    events: Option<&PathBuf>,
) -> Result<String, ReportError> {
    let records = read(spans)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<SpanRecord>(l).map_err(|source| ReportError::Span {
                path: spans.display().to_string(),
                line: i + 1,
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let expected = Expected::parse_all(&read(expected)?).map_err(ReportError::Expected)?;
    let measures = Measures::parse(&read(measures)?)?;
    let (events, published) = match events {
        Some(path) => {
            let text = read(path)?;
            let bad = |source| ReportError::Events {
                path: path.display().to_string(),
                source,
            };
            let list = events::parse(&text).map_err(bad)?;
            let published = events::pod_reasons(&text).map_err(bad)?;
            (Some(EventFigures::of(&list, &records)), Some(published))
        }
        None => (None, None),
    };
    let analysis = analysis::analyse(&records, &expected, published.as_ref());
    Ok(table(&measures, &analysis, events.as_ref()))
}

const NA: &str = "n/a";

fn mib(kb: Option<u64>) -> String {
    kb.map_or(NA.into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0))
}

fn ms(v: Option<f64>) -> String {
    v.map_or(NA.into(), |v| format!("{:.0} ms", v))
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        return NA.into();
    }
    format!("{:.1}%", 100.0 * part as f64 / whole as f64)
}

/// The table: one row per figure, Markdown.
fn table(m: &Measures, a: &Analysis, ev: Option<&EventFigures>) -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |what: &str, value: String| rows.push((what.into(), value));
    let params: Vec<String> = m.params.iter().map(|(k, v)| format!("{k} {v}")).collect();
    row("run", params.join(", "));
    let window = m.window_s();
    row(
        "window (churn start until spans stopped coming)",
        window.map_or(NA.into(), |w| format!("{w:.0} s")),
    );
    let (op, kcm) = (m.cpu_s("operator"), m.cpu_s("kube-controller-manager"));
    row(
        "operator CPU",
        match (op, window) {
            (Some(op), Some(w)) if w > 0.0 => {
                format!("{op:.2} s ({:.1}% of a core)", 100.0 * op / w)
            }
            _ => NA.into(),
        },
    );
    row(
        "kube-controller-manager CPU; operator / KCM",
        match (op, kcm) {
            (Some(op), Some(kcm)) if kcm > 0.0 => format!("{kcm:.2} s; {:.2}", op / kcm),
            (_, Some(kcm)) => format!("{kcm:.2} s; {NA}"),
            _ => NA.into(),
        },
    );
    let (base, peak, steady) = (m.rss_baseline_kb(), m.rss_peak_kb(), m.rss_steady_kb());
    row(
        "operator RSS: baseline / peak / steady",
        format!("{} / {} / {}", mib(base), mib(peak), mib(steady)),
    );
    let per_pod = |kb: Option<u64>| match (kb, base, m.pods) {
        (Some(kb), Some(base), Some(pods)) if pods > 0 => {
            format!("{:.1} KiB", (kb as f64 - base as f64) / pods as f64)
        }
        _ => NA.into(),
    };
    row(
        &format!(
            "RSS over baseline per watched pod ({} pods): steady / peak",
            m.pods.map_or(NA.into(), |p| p.to_string())
        ),
        format!("{} / {}", per_pod(steady), per_pod(peak)),
    );
    let mut verbs = Vec::new();
    let mut total = 0;
    for schema in m.api.keys() {
        if let Some(n) = m.api_requests(schema) {
            total += n;
            verbs.push(format!(
                "{} {n}",
                schema.trim_start_matches("eventspan-load-")
            ));
        }
    }
    row(
        "operator API requests (APF, by flow schema)",
        if verbs.is_empty() {
            NA.into()
        } else {
            format!("{total}: {}", verbs.join(", "))
        },
    );
    row(
        "status writes (patch tracesessions/status)",
        match (m.api_requests("eventspan-load-status"), window) {
            (Some(n), Some(w)) if w > 0.0 => format!("{n} ({:.1}/min)", n as f64 * 60.0 / w),
            _ => NA.into(),
        },
    );
    for (what, lat) in [
        ("receive − span end", &a.latency_end_ms),
        ("receive − event time (span start)", &a.latency_start_ms),
    ] {
        row(
            &format!("event-to-export latency ({what}): p50 / p99 / max"),
            format!(
                "{} / {} / {}",
                ms(quantile(lat, 0.5)),
                ms(quantile(lat, 0.99)),
                ms(lat.last().copied())
            ),
        );
    }
    if let Some(ev) = ev {
        row(
            &format!(
                "export latency once the API server had the event (receive − its write, ±1 s; {} spans): p50 / p99 / max",
                ev.matched
            ),
            format!(
                "{} / {} / {}",
                ms(quantile(&ev.after_write_ms, 0.5)),
                ms(quantile(&ev.after_write_ms, 0.99)),
                ms(ev.after_write_ms.last().copied())
            ),
        );
        let delays: Vec<String> = ev
            .write_delays
            .iter()
            .map(|(component, d)| {
                let s = |q| quantile(d, q).map_or(NA.into(), |v| format!("{v:.0}"));
                format!("{component} {} / {} s", s(0.5), s(0.99))
            })
            .collect();
        row(
            "controllers' event write delay (creationTimestamp − event time, events seen once): p50 / p99",
            delays.join("; "),
        );
    }
    row(
        "rollouts traced / expected",
        format!(
            "{} / {} ({})",
            a.traced,
            a.expected,
            percent(a.traced, a.expected)
        ),
    );
    row(
        "rollouts with the FULL structure",
        format!(
            "{} of {} expected ({})",
            a.full_structure,
            a.expected,
            percent(a.full_structure, a.expected)
        ),
    );
    row(
        "MISPARENTED pod spans",
        format!(
            "{} (pod spans with no creating span above them: {})",
            a.misparented, a.unanchored_pod_spans
        ),
    );
    let spr = &a.spans_per_rollout;
    row(
        "spans per traced rollout: mean (min–max)",
        if spr.is_empty() {
            NA.into()
        } else {
            format!(
                "{:.1} ({}–{})",
                spr.iter().sum::<usize>() as f64 / spr.len() as f64,
                spr.iter().min().unwrap_or(&0),
                spr.iter().max().unwrap_or(&0)
            )
        },
    );
    row(
        "spans received / unique / duplicates; orphans",
        format!(
            "{} / {} / {}; {}",
            a.receipts, a.unique_spans, a.duplicates, a.orphans
        ),
    );
    row(
        "traces: all / not an expected rollout",
        format!("{} / {}", a.traces, a.other_traces),
    );
    let metric = |name: &str| m.metrics.get(name).map_or(NA.into(), |v| format!("{v:.0}"));
    row(
        "operator: events received / spans exported / dropped",
        format!(
            "{} / {} / {}",
            metric("eventspan_events_received_total"),
            metric("eventspan_spans_exported_total"),
            metric("eventspan_spans_dropped_total")
        ),
    );
    row(
        "operator: events held for a parent / placed by owner after the window",
        format!(
            "{} / {}",
            metric("eventspan_engine_held_total"),
            metric("eventspan_engine_held_expired_total")
        ),
    );

    let mut out = String::from("| figure | value |\n|---|---|\n");
    for (what, value) in rows {
        let _ = writeln!(out, "| {what} | {value} |");
    }
    if !a.shortfalls.is_empty() {
        let _ = writeln!(
            out,
            "\nWhat the rollouts without the full structure lack (each pod event missing under its \
             creation span, by where it went):"
        );
        for (what, n) in &a.shortfalls {
            let _ = writeln!(out, "- {what}: {n}");
        }
    }
    let lists = [
        ("expected rollouts without a trace", &a.missing),
        ("rollouts without the full structure", &a.not_full),
        ("misparented spans", &a.misparented_examples),
    ];
    for (what, list) in lists.iter().filter(|(_, l)| !l.is_empty()) {
        let _ = writeln!(out, "\nFirst {what}:");
        for item in *list {
            let _ = writeln!(out, "- {item}");
        }
    }
    out
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Serve { listen, out } => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(receiver::serve(listen, &out))
                    .map_err(|e| e.to_string())
            }),
        Command::Report {
            spans,
            expected,
            measures,
            events,
        } => report(&spans, &expected, &measures, events.as_ref())
            .map(|t| print!("{t}"))
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load_sink: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_every_figure_and_the_faults() {
        let mut b = analysis::tests::Builder::new();
        b.rollout("t1", "web", 1, &["web-a"]);
        let expected = vec![
            Expected {
                kind: "Deployment".into(),
                name: "web".into(),
                generation: 1,
                pods: 1,
            },
            Expected {
                kind: "Deployment".into(),
                name: "web".into(),
                generation: 2,
                pods: 1,
            },
        ];
        let m = Measures::parse(
            "mark churn_start 0\nmark churn_end 30\nmark drained 60\nclk_tck 100\n\
             cpu operator start 0\ncpu operator end 300\n\
             cpu kube-controller-manager start 0\ncpu kube-controller-manager end 1200\n\
             api eventspan-load-status end 10\napi eventspan-load-list end 5\n\
             rss 0 10240\nrss 40 20480\npods 10\n\
             metric eventspan_engine_held_total 7\nmetric eventspan_engine_held_expired_total 3\n",
        )
        .unwrap();
        let t = table(&m, &analysis::analyse(&b.spans, &expected, None), None);
        for want in [
            "| operator CPU | 3.00 s (5.0% of a core) |",
            "| kube-controller-manager CPU; operator / KCM | 12.00 s; 0.25 |",
            "| operator RSS: baseline / peak / steady | 10.0 MiB / 20.0 MiB / 20.0 MiB |",
            "steady / peak | 1024.0 KiB / 1024.0 KiB |",
            "| 15: list 5, status 10 |",
            "| status writes (patch tracesessions/status) | 10 (10.0/min) |",
            "| rollouts traced / expected | 1 / 2 (50.0%) |",
            "| rollouts with the FULL structure | 1 of 2 expected (50.0%) |",
            "(receive − span end): p50 / p99 / max | 5500 ms / 5500 ms / 5500 ms |",
            "(span start)): p50 / p99 / max | 6000 ms / 6000 ms / 6000 ms |",
            "- Deployment web gen 2",
            "after the window | 7 / 3 |",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
    }

    #[test]
    fn latency_after_the_write_uses_each_spans_event() {
        let span = |id: &str, event: &str, received_s: u64| SpanRecord {
            trace: "t".into(),
            span: id.into(),
            received_ns: received_s * 1_000_000_000,
            attrs: [("k8s.event.name".to_string(), event.to_string())].into(),
            ..SpanRecord::default()
        };
        let written = |at: f64| events::Written {
            component: "replicaset-controller".into(),
            happened: 100.0,
            repeated: false,
            written: at,
        };
        let list = [
            ("a".to_string(), written(300.0)),
            ("b".to_string(), written(110.0)),
        ]
        .into();
        // b's span twice (only its first receipt counts), and a span whose event is gone.
        let spans = [
            span("1", "a", 306),
            span("2", "b", 111),
            span("2", "b", 150),
            span("3", "gone", 1),
        ];
        let f = EventFigures::of(&list, &spans);
        assert_eq!(f.after_write_ms, vec![1000.0, 6000.0]);
        assert_eq!(f.matched, 2);
        assert_eq!(f.write_delays["replicaset-controller"], vec![10.0, 200.0]);
        let m = Measures::default();
        let t = table(&m, &Analysis::default(), Some(&f));
        assert!(
            t.contains("2 spans): p50 / p99 / max | 1000 ms / 6000 ms / 6000 ms |"),
            "{t}"
        );
        assert!(t.contains("| replicaset-controller 10 / 200 s |"), "{t}");
    }
}
