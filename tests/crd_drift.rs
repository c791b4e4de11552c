//! The checked-in CRDs are exactly what `eventspan crd` prints: the kustomize base's and the Helm
//! chart's (Helm installs a chart's CRDs from real files in its crds/ directory, which a template
//! cannot fill from outside the chart, so the chart carries a copy).
//!
//! Regenerate each with `cargo run -- crd > FILE`.

const CHECKED_IN: [&str; 2] = [
    "crds/tracesessions.eventspan.dev.yaml",
    "deploy/chart/eventspan/crds/tracesessions.eventspan.dev.yaml",
];

#[test]
fn checked_in_crds_match_the_binary() {
    let generated = eventspan::operator::crd::crd_yaml();
    for file in CHECKED_IN {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let checked_in =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file} holds the CRD: {e}"));
        assert!(
            checked_in == generated,
            "{file} is stale: run `cargo run -- crd > {path}`"
        );
    }
}

#[test]
fn crd_carries_status_printer_columns_and_validation() {
    let yaml = eventspan::operator::crd::crd_yaml();
    let crd: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(
        version["subresources"]["status"].is_object(),
        "status subresource"
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Ready",
            "Reason",
            "Phase",
            "Spans",
            "Traces",
            "Last Trace",
            "Age"
        ]
    );
    // The Ready column is the condition `kubectl wait --for=condition=Ready` waits for.
    assert_eq!(
        version["additionalPrinterColumns"][0]["jsonPath"],
        r#".status.conditions[?(@.type=="Ready")].status"#
    );
    // A session without a status yet reads as not observed (kstatus: InProgress, not Current).
    assert_eq!(
        version["schema"]["openAPIV3Schema"]["properties"]["status"]["default"],
        serde_json::json!({"observedGeneration": 0})
    );
    let conditions =
        &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "ts");
}

#[test]
fn trace_links_are_restricted_to_http_by_the_schema() {
    let yaml = eventspan::operator::crd::crd_yaml();
    let crd: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let rules = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        ["traceUrlTemplate"]["x-kubernetes-validations"];
    let rules: Vec<&str> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&r"self.matches('^https?://[^/?#\\s]+')"),
        "{rules:?}"
    );
}
