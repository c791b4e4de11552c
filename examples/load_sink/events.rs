//! The Events as the API server held them at the end (`kubectl get events -o json`): when each
//! was written (`creationTimestamp`) against when it happened. A controller's event recorder
//! shares the controller's client rate limit, so under churn it writes its events late; a span
//! cannot be exported before its event exists, so this splits the latency into the cluster's
//! part and the operator's.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::Event;

/// One Event: seconds since the epoch (the API server's timestamps have second granularity,
/// except `eventTime`).
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub component: String,
    /// When its latest occurrence happened: `lastTimestamp`, else `eventTime`, else
    /// `firstTimestamp`.
    pub happened: f64,
    /// Seen more than once: when the update was written is unknown.
    pub repeated: bool,
    /// When the API server had its latest occurrence: `creationTimestamp`, or for a repeated
    /// event its `lastTimestamp` if later (the update is written then or after).
    pub written: f64,
}

fn secs(t: &k8s_openapi::jiff::Timestamp) -> f64 {
    t.as_nanosecond() as f64 / 1e9
}

/// The Events of an Event list's JSON.
fn items(json: &str) -> Result<Vec<Event>, serde_json::Error> {
    // `kubectl get -o json` says `kind: List`, which k8s_openapi::List<Event> refuses.
    #[derive(serde::Deserialize)]
    struct Items {
        items: Vec<Event>,
    }
    Ok(serde_json::from_str::<Items>(json)?.items)
}

/// Events by name, from an Event list's JSON.
pub fn parse(json: &str) -> Result<HashMap<String, Written>, serde_json::Error> {
    Ok(items(json)?
        .into_iter()
        .filter_map(|e| {
            let name = e.metadata.name?;
            let created = secs(&e.metadata.creation_timestamp?.0);
            let happened = e
                .last_timestamp
                .map(|t| secs(&t.0))
                .or(e.event_time.map(|t| secs(&t.0)))
                .or(e.first_timestamp.map(|t| secs(&t.0)))?;
            let repeated = e.count.unwrap_or(1) > 1 || e.series.is_some();
            let component = e
                .reporting_component
                .filter(|c| !c.is_empty())
                .or(e.source.and_then(|s| s.component))
                .unwrap_or_else(|| "unknown".into());
            Some((
                name,
                Written {
                    component,
                    happened,
                    repeated,
                    written: created.max(happened),
                },
            ))
        })
        .collect())
}

/// The (pod, reason) of every Event about a pod in an Event list's JSON: what the cluster
/// published, to tell an event it never published from one eventspan lost.
pub fn pod_reasons(json: &str) -> Result<HashSet<(String, String)>, serde_json::Error> {
    Ok(items(json)?
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Pod"))
        .filter_map(|e| Some((e.involved_object.name?, e.reason?)))
        .collect())
}

/// Seconds from happening to being written, by reporting component, sorted; events seen once
/// only (a repeat's update time is not kept).
pub fn write_delays(events: &HashMap<String, Written>) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in events.values().filter(|e| !e.repeated) {
        out.entry(e.component.clone())
            .or_default()
            .push(e.written - e.happened);
    }
    for v in out.values_mut() {
        v.sort_by(f64::total_cmp);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_time_and_event_time_come_from_the_list() {
        let json = r#"{"apiVersion":"v1","kind":"List","metadata":{},"items":[
          {"metadata":{"name":"rs.1","creationTimestamp":"2026-12-02T00:14:36Z"},
           "involvedObject":{},"firstTimestamp":"2026-12-02T00:10:01Z",
           "lastTimestamp":"2026-12-02T00:10:01Z","source":{"component":"replicaset-controller"}},
          {"metadata":{"name":"pod.2","creationTimestamp":"2026-12-02T00:10:00Z"},
           "involvedObject":{},"firstTimestamp":"2026-12-02T00:10:00Z",
           "lastTimestamp":"2026-12-02T00:10:30Z","count":4,"reportingComponent":"kwok_controller"}
        ]}"#;
        let events = parse(json).unwrap();
        let rs = &events["rs.1"];
        assert_eq!(rs.component, "replicaset-controller");
        assert_eq!(rs.written - rs.happened, 275.0);
        // A repeat: its last occurrence was written no earlier than it happened, and when is not
        // known, so it gives no write delay.
        let pod = &events["pod.2"];
        assert!(pod.repeated);
        assert_eq!(pod.written - 1_796_170_230.0, 0.0, "{pod:?}");
        let delays = write_delays(&events);
        assert_eq!(delays["replicaset-controller"], vec![275.0]);
        assert!(!delays.contains_key("kwok_controller"));
        assert!(parse("{").is_err());
        let pods = pod_reasons(
            r#"{"items":[{"metadata":{},"involvedObject":{"kind":"Pod","name":"web-a"},"reason":"Pulled"},
                         {"metadata":{},"involvedObject":{"kind":"ReplicaSet","name":"web"},"reason":"SuccessfulCreate"}]}"#,
        )
        .unwrap();
        assert_eq!(
            pods.into_iter().collect::<Vec<_>>(),
            vec![("web-a".to_string(), "Pulled".to_string())]
        );
    }
}
