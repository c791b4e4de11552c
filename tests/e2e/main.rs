//! End-to-end tests on a real control plane (kube-apiserver, controller manager, scheduler, etcd,
//! KWOK nodes) and a real trace backend (Jaeger), built from source by tests/cluster.
//!
//! One cluster serves every case (starting it once takes seconds; building it cold, minutes).
//! Cases run one after another and report like libtest; the exit status says if any failed.
//! `EVENTSPAN_E2E=skip` skips them all, loudly, for quick local iterations; CI never sets it.

mod cluster;
mod collector;
mod faults;
mod flux;
mod helm;
mod hpa;
mod karpenter;
mod kstatus;
mod live;
mod operator;
mod receiver;
mod record;
mod sessions;
mod tenants;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::time::Instant;

use cluster::Cluster;
use operator::Operator;

/// What the cases share: the cluster, and the operator once a case needs it.
pub struct World {
    pub cluster: Cluster,
    operator: OnceLock<Result<Operator, String>>,
}

impl World {
    pub fn operator(&self) -> Result<&Operator, String> {
        self.operator
            .get_or_init(|| Operator::start(&self.cluster))
            .as_ref()
            .map_err(|e| format!("operator: {e}"))
    }
}

type Case = (&'static str, fn(&World) -> Result<(), String>);

const CASES: &[Case] = &[
    ("cluster_answers_with_real_components", |w| {
        record::cluster_answers_with_real_components(&w.cluster)
    }),
    (
        "deployment_events_are_recorded_and_replay_into_one_trace",
        |w| record::deployment_events_are_recorded_and_replay_into_one_trace(&w.cluster),
    ),
    (
        "rollout_is_traced_into_status_and_jaeger",
        sessions::rollout_is_traced_into_status_and_jaeger,
    ),
    (
        "deploy_manifests_and_samples_validate",
        sessions::deploy_manifests_and_samples_validate,
    ),
    (
        "gitops_apply_is_idempotent_and_health_is_standard",
        sessions::gitops_apply_is_idempotent_and_health_is_standard,
    ),
    (
        "sessions_compute_to_the_kstatus_they_mean",
        kstatus::sessions_compute_to_the_kstatus_they_mean,
    ),
    (
        "sessions_share_watches_and_get_their_own_traces",
        sessions::sessions_share_watches_and_get_their_own_traces,
    ),
    (
        "a_long_window_delays_only_its_own_session",
        sessions::a_long_window_delays_only_its_own_session,
    ),
    (
        "edits_take_effect_and_deletion_cleans_up",
        sessions::edits_take_effect_and_deletion_cleans_up,
    ),
    (
        "suspend_and_resume_keep_the_status",
        sessions::suspend_and_resume_keep_the_status,
    ),
    (
        "invalid_sessions_are_reported_and_others_keep_working",
        sessions::invalid_sessions_are_reported_and_others_keep_working,
    ),
    (
        "exporter_outage_is_buffered_and_recovered",
        sessions::exporter_outage_is_buffered_and_recovered,
    ),
    (
        "traceparent_annotated_rollout_joins_the_pipeline_trace",
        sessions::traceparent_annotated_rollout_joins_the_pipeline_trace,
    ),
    (
        "hostile_tenant_input_is_contained",
        tenants::hostile_tenant_input_is_contained,
    ),
    // Flux (issue 15): each starts Flux's controllers and stops them again.
    (
        "kustomization_waits_for_the_session_it_applies",
        flux::kustomization_waits_for_the_session_it_applies,
    ),
    (
        "commit_is_traced_to_ready_pods",
        flux::commit_is_traced_to_ready_pods,
    ),
    (
        "kustomization_root_kind_gets_a_trace_per_revision",
        flux::kustomization_root_kind_gets_a_trace_per_revision,
    ),
    (
        "rollout_reaches_jaeger_and_files_through_the_collector",
        collector::rollout_reaches_jaeger_and_files_through_the_collector,
    ),
    (
        "helm_chart_lints_and_renders_the_kustomize_base",
        helm::helm_chart_lints_and_renders_the_kustomize_base,
    ),
    (
        "helm_template_passes_a_server_side_dry_run",
        helm::helm_template_passes_a_server_side_dry_run,
    ),
    (
        "helm_install_waits_and_uninstall_removes_all_but_the_crd",
        helm::helm_install_waits_and_uninstall_removes_all_but_the_crd,
    ),
    // Faults mid-rollout (issue 12): each restores the shared operator and the cluster.
    (
        "sigkill_mid_rollout_loses_and_repeats_nothing",
        faults::sigkill_mid_rollout_loses_and_repeats_nothing,
    ),
    (
        "sigterm_mid_rollout_hands_over",
        faults::sigterm_mid_rollout_hands_over,
    ),
    (
        "leader_handover_mid_rollout",
        faults::leader_handover_mid_rollout,
    ),
    (
        "apiserver_outage_mid_rollout",
        faults::apiserver_outage_mid_rollout,
    ),
    (
        "expired_watch_relists_without_duplicates",
        faults::expired_watch_relists_without_duplicates,
    ),
    (
        "watch_shows_rollouts_live_and_exits_as_rollout_status",
        live::watch_shows_rollouts_live_and_exits_as_rollout_status,
    ),
    (
        "hpa_scale_is_rooted_at_the_hpa_and_exemplars_lead_to_it",
        hpa::hpa_scale_is_rooted_at_the_hpa_and_exemplars_lead_to_it,
    ),
    (
        "pod_waiting_for_a_karpenter_node_holds_its_nodeclaim",
        karpenter::pod_waiting_for_a_karpenter_node_holds_its_nodeclaim,
    ),
    // Last: it stops the shared operator.
    (
        "leader_election_hands_over",
        sessions::leader_election_hands_over,
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
    let world = World {
        cluster,
        operator: OnceLock::new(),
    };
    println!("cluster up in {:.1}s", started.elapsed().as_secs_f64());
    let mut failed = Vec::new();
    for &&(name, case) in &cases {
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| case(&world))).unwrap_or_else(|panic| {
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
                failed.push((name, reason));
            }
        }
    }
    if let Some(Ok(operator)) = world.operator.get()
        && let Err(e) = operator.terminate()
    {
        println!("operator shutdown: {e}");
        failed.push(("operator_shuts_down_cleanly", e));
    }
    drop(world);
    let passed = cases.len().saturating_sub(failed.len());
    let summary = format!(
        "{passed} passed; {} failed; 0 ignored; 0 measured; 0 filtered out; finished in {:.1}s",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        println!("\ntest result: ok. {summary}\n");
    } else {
        // Each reason again here: a CI log may keep only its tail.
        let names: Vec<&str> = failed.iter().map(|(name, _)| *name).collect();
        println!("\nfailures: {}", names.join(", "));
        for (name, reason) in &failed {
            println!("  {name}: {reason}");
        }
        println!("test result: FAILED. {summary}\n");
        std::process::exit(1);
    }
}
