//! Day-2 operations under a client workload, on the local cluster, side by side in one run:
//! the operator's rolling restart (leader last) and scaling 3 -> 5 -> 3, against the plain
//! StatefulSet's RollingUpdate restart (the seed's approach: static server list, readiness =
//! the JVM answers). Each row: the client-observed write stall (largest gap between two
//! acknowledged writes), leader elections (zxid epochs), duration, expired sessions, lost writes.
//!
//! Rerun: make bench-day2   (cargo bench -p e2e --bench day2)

#[path = "../tests/common/mod.rs"]
mod common;

use common::workload::{Report, Workload};
use common::{client, TestNamespace};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};

struct Row {
    name: String,
    report: Report,
    lost: usize,
    duration: Duration,
}

#[tokio::main]
async fn main() {
    let client = client().await;
    let mut rows = Vec::new();

    let ns = TestNamespace::new(&client, "bench-day2-operator").await;
    ns.create_cluster("zk", common::small_cluster(3, "3.9.4"))
        .await
        .unwrap();
    ns.wait_settled("zk", 3).await;
    let connect = ns.endpoint("zk").await;

    rows.push(
        measure(
            "operator: rolling restart on request (leader last)",
            &connect,
            || async {
                let annotation = json!({"metadata": {"annotations": {zkop_api::RESTART_ANNOTATION: "bench"}}});
                ns.clusters()
                    .patch("zk", &PatchParams::default(), &Patch::Merge(annotation))
                    .await
                    .unwrap();
                let before = ns.pod_uids("zk").await;
                common::wait_for(common::SETTLE, "every member restarted", || async {
                    let now = ns.pod_uids("zk").await;
                    now.len() == 3 && now.iter().all(|(name, uid)| before.get(name) != Some(uid))
                })
                .await;
                ns.wait_settled("zk", 3).await;
            },
        )
        .await,
    );
    rows.push(
        measure(
            "operator: scale 3 -> 5 -> 3 (dynamic reconfiguration)",
            &connect,
            || async {
                ns.patch_spec("zk", json!({"replicas": 5})).await.unwrap();
                ns.wait_settled("zk", 5).await;
                ns.patch_spec("zk", json!({"replicas": 3})).await.unwrap();
                ns.wait_settled("zk", 3).await;
            },
        )
        .await,
    );

    let seed = TestNamespace::new(&client, "bench-day2-statefulset").await;
    let (ok, out) = seed.kubectl_stdin(&["apply", "-f", "-"], &common::seed_statefulset(&seed.name));
    assert!(ok, "{out}");
    common::wait_for(common::SETTLE, "the plain StatefulSet to serve", || async {
        (0..3).all(|i| {
            seed.kubectl(&["exec", &format!("seed-{i}"), "--", "zk-agent", "probe", "ready"])
                .0
        })
    })
    .await;
    let seed_connect = seed.plaintext_endpoint("seed", "app", "seed").await;
    rows.push(
        measure(
            "plain StatefulSet: kubectl rollout restart (RollingUpdate)",
            &seed_connect,
            || async {
                let (ok, out) = seed.kubectl(&["rollout", "restart", "statefulset/seed"]);
                assert!(ok, "{out}");
                let (ok, out) = seed.kubectl(&["rollout", "status", "statefulset/seed", "--timeout=420s"]);
                assert!(ok, "{out}");
                common::wait_for(common::SETTLE, "the plain StatefulSet to serve again", || async {
                    (0..3).all(|i| {
                        seed.kubectl(&["exec", &format!("seed-{i}"), "--", "zk-agent", "probe", "ready"])
                            .0
                    })
                })
                .await;
            },
        )
        .await,
    );

    println!();
    println!(
        "Client-observed effect of day-2 operations, 3-member ensemble, ZooKeeper 3.9.4, local kind cluster (one run)"
    );
    println!("| operation | largest write stall s | leader elections | duration s | sessions expired | acknowledged writes lost |");
    println!("|---|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.2} | {} | {:.0} | {} | {} of {} |",
            row.name,
            row.report.largest_gap.as_secs_f64(),
            row.report.elections(),
            row.duration.as_secs_f64(),
            row.report.sessions_expired,
            row.lost,
            row.report.acked.len()
        );
    }
    println!("command: make bench-day2   (cargo bench -p e2e --bench day2)");
}

async fn measure<F, Fut>(name: &str, connect: &common::workload::Endpoint, operation: F) -> Row
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let workload = Workload::start(connect).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = Instant::now();
    operation().await;
    let duration = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (report, missing) = workload.finish().await;
    eprintln!(
        "{name}: stall {:.2}s, {} elections, {:.0}s",
        report.largest_gap.as_secs_f64(),
        report.elections(),
        duration.as_secs_f64()
    );
    Row {
        name: name.to_string(),
        lost: missing.len(),
        report,
        duration,
    }
}
