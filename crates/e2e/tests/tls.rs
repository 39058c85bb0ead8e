//! TLS on the real cluster: certificates renewed and the authority rotated under a client
//! workload with no member restarted, and a running plaintext ensemble moved to TLS in place.

mod common;

use common::workload::{Report, Workload};
use common::{client, wait_for, TestNamespace};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Pod UIDs and their ZooKeeper containers' restart counts: unchanged means no member restarted.
async fn incarnations(ns: &TestNamespace) -> BTreeMap<String, (String, i32)> {
    let pods: Api<Pod> = ns.api();
    pods.list(&ListParams::default().labels("app.kubernetes.io/instance=zk"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            let restarts = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map(|c| c.iter().map(|c| c.restart_count).sum())
                .unwrap_or(0);
            (p.name_any(), (p.uid().unwrap_or_default(), restarts))
        })
        .collect()
}

fn check(case: &str, report: &Report, missing: &[u64], started: Instant) {
    common::fault_row(case, report, missing.len(), started.elapsed(), "none");
    assert!(missing.is_empty(), "{case}: acknowledged writes lost: {missing:?}");
    assert_eq!(report.sessions_expired, 0, "{case}: a session expired");
}

async fn tls_status(ns: &TestNamespace) -> zkop_api::TlsStatus {
    ns.clusters()
        .get("zk")
        .await
        .unwrap()
        .status
        .and_then(|s| s.tls)
        .unwrap_or_default()
}

/// Certificates of two minutes and an authority of five: several member certificate renewals
/// and a rotation of the authority (trusted beside, then signing, then the old one dropped)
/// happen while the workload writes; members serve each new certificate without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_the_authority_rotate_without_restarts() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-tls-rotation").await;
    let mut spec = common::small_cluster(3, zkop_api::DEFAULT_VERSION);
    spec["tls"] = json!({"certificateLifetimeSeconds": 120, "caLifetimeSeconds": 300});
    ns.create_cluster("zk", spec).await.unwrap();
    ns.wait_settled("zk", 3).await;
    assert_eq!(tls_status(&ns).await.phase, "tls");
    let before = incarnations(&ns).await;
    let mark = ns.event_mark("zk").await;
    let workload = Workload::start(&ns.endpoint("zk").await).await;
    let started = Instant::now();

    // The authority rotates at two thirds of its five minutes; member certificates every 80 s.
    let rotated = ns
        .wait_for_event("zk", "CertificateAuthorityRotated", &mark, Duration::from_secs(480))
        .await;
    eprintln!(
        "rotation done after {:.0} s: {rotated}",
        started.elapsed().as_secs_f64()
    );
    let events: Vec<String> = ns.events("zk").await.into_iter().map(|(reason, _)| reason).collect();
    let renewals = events.iter().filter(|r| *r == "CertificateRenewed").count();
    assert!(renewals >= 3, "several renewals: {events:?}");
    for step in ["CertificateAuthorityRotating", "CertificateAuthoritySwitched"] {
        assert!(events.iter().any(|r| r == step), "{step} happened: {events:?}");
    }
    wait_for(
        Duration::from_secs(60),
        "every member to serve the current certificate",
        || async { tls_status(&ns).await.serving_current_certificate.as_deref() == Some("3/3") },
    )
    .await;
    let (report, missing) = workload.finish().await;
    check(
        "member certificates renewed and the authority rotated (120 s / 300 s lifetimes)",
        &report,
        &missing,
        started,
    );
    assert_eq!(incarnations(&ns).await, before, "no member was restarted");
}

/// A plaintext ensemble moves to TLS in place: three rolling restarts (unification, TLS between
/// members, TLS only), then the plaintext client port moves to 127.0.0.1 by reconfiguration.
/// A plaintext client writes until the TLS port is up, a TLS client from then on; nothing is
/// lost and no session expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_ensemble_moves_to_tls_in_place() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-tls-migration").await;
    let mut spec = common::small_cluster(3, zkop_api::DEFAULT_VERSION);
    spec["tls"] = json!({"enabled": false, "clients": [common::TEST_CLIENT]});
    ns.create_cluster("zk", spec).await.unwrap();
    ns.wait_settled("zk", 3).await;
    assert_eq!(tls_status(&ns).await.phase, "plaintext");
    let plaintext = Workload::start(&ns.endpoint("zk").await).await;
    let started = Instant::now();

    ns.patch_spec("zk", json!({"tls": {"enabled": true}})).await.unwrap();
    let clusters = ns.clusters();
    let phases = std::sync::Mutex::new(vec!["plaintext".to_string()]);
    let seen = |phase: &str| {
        let mut phases = phases.lock().unwrap();
        if phases.last().map(String::as_str) != Some(phase) {
            phases.push(phase.to_string());
        }
    };
    wait_for(
        Duration::from_secs(300),
        "the TLS client port (phase quorum-tls)",
        || async {
            let phase = tls_status(&ns).await.phase;
            seen(&phase);
            phase == "quorum-tls"
        },
    )
    .await;
    // Clients move to the TLS port while plaintext still serves them.
    let secure = Workload::start(&ns.endpoint("zk").await).await;
    let (report, missing) = plaintext.finish().await;
    check(
        "plaintext client during the migration to TLS",
        &report,
        &missing,
        started,
    );
    wait_for(Duration::from_secs(420), "TLS only, settled", || async {
        let zk = clusters.get("zk").await.unwrap();
        let phase = tls_status(&ns).await.phase;
        seen(&phase);
        phase == "tls" && common::fully_available(&zk) && zk.status.as_ref().is_some_and(|s| s.operation.is_none())
    })
    .await;
    assert_eq!(
        *phases.lock().unwrap(),
        vec!["plaintext", "unified", "quorum-tls", "tls"],
        "one step at a time"
    );
    ns.wait_settled("zk", 3).await;
    let (_, config) = ns.kubectl(&["exec", "zk-0", "--", "/opt/zookeeper/bin/zkCli.sh", "config"]);
    assert_eq!(
        config.matches(";127.0.0.1:2181").count(),
        3,
        "plaintext on 127.0.0.1 only:\n{config}"
    );
    // Every member serves on its plaintext port, now on 127.0.0.1 (its readiness probe asks
    // there). ZooKeeper cannot move a listening client port live: committed while it ran, the
    // new line closed the port ("Error while reconfiguring ... Address already in use") and every
    // member went NotReady until its liveness probe restarted it; the operator now restarts
    // each member right after committing its new line.
    for pod in ["zk-0", "zk-1", "zk-2"] {
        let (ok, out) = ns.kubectl(&["exec", pod, "-c", "zookeeper", "--", "zk-agent", "probe", "ready"]);
        assert!(ok, "{pod} does not serve on its plaintext port: {out}");
    }
    let (report, missing) = secure.finish().await;
    check("plaintext ensemble moved to TLS in place", &report, &missing, started);
    // No ZooKeeper container restarted on its own (the liveness probes did, before).
    let restarted: Vec<String> = incarnations(&ns)
        .await
        .into_iter()
        .filter(|(_, (_, restarts))| *restarts > 0)
        .map(|(pod, (_, restarts))| format!("{pod} ({restarts})"))
        .collect();
    assert!(
        restarted.is_empty(),
        "containers restarted by the kubelet: {restarted:?}"
    );
}
