//! `eventspan replay` as a user runs it: files, standard input, bad input, exit status.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn eventspan(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventspan"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("eventspan runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn scenario(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/scenarios/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn replays_a_file_and_standard_input_alike() {
    let path = format!("{}/tests/scenarios/job.jsonl", env!("CARGO_MANIFEST_DIR"));
    let from_file = eventspan(&["replay", &path], None);
    assert!(from_file.status.success(), "{}", text(&from_file.stderr));
    let from_stdin = eventspan(&["replay", "-"], Some(&scenario("job.jsonl")));
    assert_eq!(from_file.stdout, from_stdin.stdout);
    let tree = text(&from_file.stdout);
    assert!(tree.starts_with("trace "), "{tree}");
    assert!(
        tree.contains("Job.SuccessfulCreate [job-controller]"),
        "{tree}"
    );
}

#[test]
fn malformed_lines_are_reported_and_skipped_without_losing_the_rest() {
    let mut lines: Vec<String> = scenario("job.jsonl").lines().map(String::from).collect();
    lines.insert(
        3,
        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Event\"".into(),
    ); // truncated
    lines.insert(6, "not json at all".into());
    lines.insert(9, r#"{"type":"ADDED","object":{"apiVersion":"v1","kind":"Event","metadata":{"name":"x","uid":"e"}}}"#.into());
    let output = eventspan(&["replay"], Some(&lines.join("\n")));
    assert_eq!(
        output.status.code(),
        Some(1),
        "skipped input must show in the exit status"
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("line 4: skipped"), "{stderr}");
    assert!(
        stderr.contains("line 7: skipped: expected a JSON object"),
        "{stderr}"
    );
    assert!(
        stderr.contains("line 10: skipped: event x names no involved object"),
        "{stderr}"
    );
    assert!(stderr.contains("3 input value(s) skipped"), "{stderr}");
    let clean = eventspan(&["replay"], Some(&scenario("job.jsonl")));
    assert_eq!(
        output.stdout, clean.stdout,
        "good lines give the same traces as without the bad ones"
    );
}

#[test]
fn unreadable_input_is_an_error() {
    let output = eventspan(&["replay", "/nonexistent/recording.jsonl"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("cannot read /nonexistent/recording.jsonl"));
}

#[test]
fn bad_options_are_rejected_with_a_reason() {
    let output = eventspan(&["replay", "--window", "5 parsecs"], None);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("invalid duration"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn otlp_json_lines_are_requests_one_per_trace() {
    let output = eventspan(
        &["replay", "--output", "otlp-json"],
        Some(&scenario("deployment-rollout.jsonl")),
    );
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "two generations, two traces");
    for line in lines {
        let request: serde_json::Value = serde_json::from_str(line).unwrap();
        let spans: Vec<&serde_json::Value> = request["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rs| rs["scopeSpans"][0]["spans"].as_array().unwrap())
            .collect();
        let trace_ids: std::collections::HashSet<&str> = spans
            .iter()
            .map(|s| s["traceId"].as_str().unwrap())
            .collect();
        assert_eq!(trace_ids.len(), 1);
        assert!(
            spans
                .iter()
                .all(|s| s["spanId"].as_str().unwrap().len() == 16)
        );
        assert!(spans.iter().all(|s| s["startTimeUnixNano"].is_string()));
    }
    let again = eventspan(
        &["replay", "--output", "otlp-json"],
        Some(&scenario("deployment-rollout.jsonl")),
    );
    assert_eq!(
        output.stdout, again.stdout,
        "byte-identical output for the same input"
    );
}

#[test]
fn multi_document_yaml_is_read_like_json() {
    let docs: Vec<String> = scenario("job.jsonl")
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            serde_saphyr::to_string(&v).unwrap()
        })
        .collect();
    let yaml = docs.join("---\n");
    let from_yaml = eventspan(&["replay"], Some(&yaml));
    assert!(from_yaml.status.success(), "{}", text(&from_yaml.stderr));
    let from_json = eventspan(&["replay"], Some(&scenario("job.jsonl")));
    assert_eq!(text(&from_yaml.stdout), text(&from_json.stdout));
}

#[test]
fn a_bad_destination_entry_stops_the_operator_before_it_starts() {
    let out = eventspan(&["run", "--exporter-deny", "10.1.0.0/8"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--exporter-deny") && err.contains("the network is 10.0.0.0/8"),
        "{err}"
    );
    // From the environment, comma-separated, as the Deployment would set it.
    let out = Command::new(env!("CARGO_BIN_EXE_eventspan"))
        .arg("run")
        .env("EVENTSPAN_EXPORTER_ALLOW", "10.0.0.0/8,*.corp*.example")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("\"*.corp*.example\""), "{err}");
}

/// The real Flux recording: every span of a Flux controller's event carries the commit it
/// reconciled (`vcs.ref.head.revision`) and the branch (`vcs.ref.head.name`); no other span does.
#[test]
fn flux_events_carry_the_git_revision() {
    let out = eventspan(
        &["replay", "--output", "otlp-json", "-"],
        Some(&scenario("recorded/flux/flux.jsonl")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut revisions = std::collections::BTreeMap::<String, usize>::new();
    for line in text(&out.stdout).lines() {
        let request: serde_json::Value = serde_json::from_str(line).unwrap();
        let spans = request["resourceSpans"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
            .flat_map(|ss| ss["spans"].as_array().unwrap());
        for span in spans {
            let attr = |key: &str| {
                span["attributes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["key"] == key)
                    .and_then(|a| a["value"]["stringValue"].as_str())
                    .map(str::to_string)
            };
            let flux = matches!(
                span["name"].as_str().unwrap().split('.').next(),
                Some("GitRepository" | "Kustomization")
            ) && attr("k8s.event.reason").is_some_and(|r| r != "GitOperationSucceeded");
            match attr("vcs.ref.head.revision") {
                Some(revision) => {
                    assert!(flux, "{span}");
                    assert_eq!(attr("vcs.ref.head.name").as_deref(), Some("main"));
                    *revisions.entry(revision).or_default() += 1;
                }
                None => assert!(!flux, "no revision on {span}"),
            }
        }
    }
    // Two commits: each stored by source-controller and applied by kustomize-controller
    // (applied, health checked, reconciled), and the report of the apply is also the root of
    // the rollout it caused (in the Deployment's trace).
    let want: std::collections::BTreeMap<String, usize> = [
        ("0bc35622f0a4fdb59b9285f5113d738bb7a8170d".to_string(), 5),
        ("17dc35ed57f2d32cf93e1fbcb6baf1ab2a4f60e6".to_string(), 5),
    ]
    .into();
    assert_eq!(revisions, want);
}
