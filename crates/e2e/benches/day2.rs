//! Day-2 operations under a client workload, on the local cluster, side by side in one run:
//! the workload with nothing happening (its own floor), the operator's rolling restart of 3 and
//! of 5 members with the leader's hand-off (the default) and without it (`leaderHandOff: false`,
//! the leader restarts as it is), scaling 3 -> 5 and 5 -> 3, and the plain StatefulSet's
//! RollingUpdate restart (the seed's approach: static server list, readiness = the JVM answers).
//! Each row: the client-observed write stall (largest gap between two acknowledged writes),
//! leader changes (zxid epochs), elections (members that had served going back to LOOKING, from
//! their logs), duration, expired sessions, lost writes.
//!
//! Rerun: make bench-day2   (cargo bench -p e2e --bench day2)

#[path = "../tests/common/mod.rs"]
mod common;

use common::workload::{Report, Workload};
use common::{client, TestNamespace};
use serde_json::json;
use std::time::{Duration, Instant};

struct Row {
    name: String,
    report: Report,
    elections: usize,
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
        measure("no operation: the workload for 20 s (floor)", &ns, &connect, || async {
            tokio::time::sleep(Duration::from_secs(20)).await;
        })
        .await,
    );
    for members in [3, 5] {
        if members == 5 {
            rows.push(
                measure(
                    "operator: scale 3 -> 5 (dynamic reconfiguration)",
                    &ns,
                    &connect,
                    || async {
                        ns.patch_spec("zk", json!({"replicas": 5})).await.unwrap();
                        ns.wait_settled("zk", 5).await;
                    },
                )
                .await,
            );
        }
        for hand_off in [true, false] {
            ns.patch_spec("zk", json!({"rollout": {"leaderHandOff": hand_off}}))
                .await
                .unwrap();
            let how = if hand_off {
                "leader hands off first"
            } else {
                "leaderHandOff: false, leader restarted as it is"
            };
            rows.push(
                measure(
                    &format!("operator: rolling restart of {members}, {how}"),
                    &ns,
                    &connect,
                    || roll(&ns, members),
                )
                .await,
            );
        }
    }
    rows.push(
        measure(
            "operator: scale 5 -> 3 (dynamic reconfiguration)",
            &ns,
            &connect,
            || async {
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
            &seed,
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
        "Client-observed effect of day-2 operations, ZooKeeper 3.9.4, TLS, local kind cluster (one run; rows in the order run)"
    );
    println!("| operation | largest write stall s | leader changes | elections | duration s | sessions expired | acknowledged writes lost |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {:.2} | {} | {} | {:.0} | {} | {} of {} |",
            row.name,
            row.report.largest_gap.as_secs_f64(),
            row.report.elections(),
            row.elections,
            row.duration.as_secs_f64(),
            row.report.sessions_expired,
            row.lost,
            row.report.acked.len()
        );
    }
    println!("leader changes: new zxid epochs seen by the workload; elections: members that had served going back to LOOKING (their logs)");
    println!("command: make bench-day2   (cargo bench -p e2e --bench day2)");
}

/// A rolling restart on request, until every member was restarted and the cluster settled.
async fn roll(ns: &TestNamespace, members: usize) {
    let before = ns.pod_uids("zk").await;
    static ROLLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let roll = ROLLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ns.request_restart("zk", &format!("bench-{}-{roll}", std::process::id()))
        .await;
    common::wait_for(common::SETTLE, "every member restarted", || async {
        let now = ns.pod_uids("zk").await;
        now.len() == members && now.iter().all(|(name, uid)| before.get(name) != Some(uid))
    })
    .await;
    ns.wait_settled("zk", members as i32).await;
}

async fn measure<F, Fut>(name: &str, ns: &TestNamespace, connect: &common::workload::Endpoint, operation: F) -> Row
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let selector = if ns.name.ends_with("statefulset") {
        "app=seed"
    } else {
        "app.kubernetes.io/instance=zk"
    };
    let workload = Workload::start(connect).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = ns.elections_seen_in(selector).await;
    let started = Instant::now();
    operation().await;
    let duration = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let elections = common::elections_between(&seen, &ns.elections_seen_in(selector).await);
    let (report, missing) = workload.finish().await;
    eprintln!(
        "{name}: stall {:.2}s, {} leader changes, {elections} elections, {:.0}s",
        report.largest_gap.as_secs_f64(),
        report.elections(),
        duration.as_secs_f64()
    );
    Row {
        name: name.to_string(),
        lost: missing.len(),
        elections,
        report,
        duration,
    }
}
