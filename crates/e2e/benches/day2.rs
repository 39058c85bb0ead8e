//! Day-2 operations under a client workload, on the local cluster, side by side in one run:
//! the workload with nothing happening (its own floor), the operator's rolling restart of 3 and
//! of 5 members with the leader's hand-off (the default) and without it (`leaderHandOff: false`,
//! the leader restarts as it is), scaling 3 -> 5 and 5 -> 3, and the plain StatefulSet's
//! RollingUpdate restart (the seed's approach: static server list, readiness = the JVM answers).
//! Then the leader lost, with 4 concurrent clients: its pod deleted with the preStop hand-off
//! and without it, against the plain StatefulSet's leader pod deleted and its leader's JVM
//! killed (`kill -9`, the bare floor). Each row: the client-observed write stall (largest gap
//! between two acknowledged writes, the worst client), leader changes (zxid epochs), elections
//! (members that had served going back to LOOKING, from their logs), duration, expired
//! sessions, lost writes.
//!
//! Rerun: make bench-day2   (cargo bench --profile dev --workspace --bench day2); `-- <text>` runs only the rows
//! whose name contains it, e.g. `-- "leader's pod"`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::workload::{Report, Workload};
use common::{client, TestNamespace};
use serde_json::json;
use std::time::{Duration, Instant};

struct Row {
    name: String,
    clients: usize,
    stall: Duration,
    leader_changes: i64,
    elections: usize,
    acked: usize,
    lost: usize,
    expired: u32,
    duration: Duration,
}

const CLIENTS: usize = 4;

/// Whether a row is wanted: every row, or those whose name contains the argument given.
fn wanted(name: &str) -> bool {
    static FILTER: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    FILTER
        .get_or_init(|| std::env::args().skip(1).find(|a| !a.starts_with('-')))
        .as_deref()
        .is_none_or(|f| name.contains(f))
}

#[tokio::main]
async fn main() {
    let client = client().await;
    let mut rows = Vec::new();

    let ns = TestNamespace::new(&client, "bench-day2-operator").await;
    ns.create_cluster("zk", common::small_cluster(3, zkop_api::DEFAULT_VERSION))
        .await
        .unwrap();
    ns.wait_settled("zk", 3).await;
    let connect = ns.endpoint("zk").await;

    rows.extend(
        measure("no operation: the workload for 20 s (floor)", &ns, &connect, || async {
            tokio::time::sleep(Duration::from_secs(20)).await;
        })
        .await,
    );
    for members in [3, 5] {
        if members == 5 {
            rows.extend(
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
            let how = if hand_off {
                "leader hands off first"
            } else {
                "leaderHandOff: false, leader restarted as it is"
            };
            if !wanted(&format!("operator: rolling restart of {members}, {how}")) {
                continue;
            }
            ns.patch_spec("zk", json!({"rollout": {"leaderHandOff": hand_off}}))
                .await
                .unwrap();
            rows.extend(
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
    rows.extend(
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
    for hand_off in [true, false] {
        let how = if hand_off {
            "preStop hook hands off"
        } else {
            "leaderHandOff: false"
        };
        let name = format!("operator: the leader's pod deleted, {how}");
        if !wanted(&name) {
            continue;
        }
        ns.patch_spec("zk", json!({"rollout": {"leaderHandOff": hand_off}}))
            .await
            .unwrap();
        // The hook comes and goes with the pod template: a roll.
        common::wait_for(common::SETTLE, "the pod template applied", || async {
            let (_, hooks) = ns.kubectl(&[
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/instance=zk",
                "-o",
                "jsonpath={.items[*].spec.containers[0].lifecycle}",
            ]);
            hooks.trim().is_empty() != hand_off
        })
        .await;
        ns.wait_settled("zk", 3).await;
        rows.extend(measure_clients(&name, CLIENTS, &ns, &connect, || delete_leader(&ns)).await);
    }

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
    rows.extend(
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
    for kill in [false, true] {
        let name = if kill {
            "plain StatefulSet: the leader's JVM killed (kill -9; bare floor)"
        } else {
            "plain StatefulSet: the leader's pod deleted"
        };
        rows.extend(
            measure_clients(name, CLIENTS, &seed, &seed_connect, || async {
                let leader = (0..3)
                    .map(|i| format!("seed-{i}"))
                    .find(|pod| {
                        seed.kubectl(&["exec", pod, "--", "zk-agent", "probe", "ready"])
                            .1
                            .contains("Leader")
                    })
                    .expect("a leader");
                if kill {
                    seed.kill_jvm(&leader).await;
                } else {
                    let (ok, out) = seed.kubectl(&["delete", "pod", &leader, "--wait=false"]);
                    assert!(ok, "{out}");
                }
                // Until the leader is back down and up again: wait for it to stop answering first.
                tokio::time::sleep(Duration::from_secs(2)).await;
                common::wait_for(common::SETTLE, "the plain StatefulSet to serve again", || async {
                    (0..3).all(|i| {
                        seed.kubectl(&["exec", &format!("seed-{i}"), "--", "zk-agent", "probe", "ready"])
                            .0
                    })
                })
                .await;
            })
            .await,
        );
    }

    println!();
    println!(
        "Client-observed effect of day-2 operations, ZooKeeper {}, TLS, local kind cluster (one run; rows in the order run)",
        zkop_api::DEFAULT_VERSION
    );
    println!("| operation | clients | largest write stall s | leader changes | elections | duration s | sessions expired | acknowledged writes lost |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!(
            "| {} | {} | {:.2} | {} | {} | {:.0} | {} | {} of {} |",
            row.name,
            row.clients,
            row.stall.as_secs_f64(),
            row.leader_changes,
            row.elections,
            row.duration.as_secs_f64(),
            row.expired,
            row.lost,
            row.acked
        );
    }
    println!("leader changes: new zxid epochs seen by the workload; elections: members that had served going back to LOOKING (their logs)");
    println!("command: make bench-day2   (cargo bench --profile dev --workspace --bench day2)");
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

/// Deletes the operator cluster's leader's pod and waits until its replacement serves.
async fn delete_leader(ns: &TestNamespace) {
    let zk = ns.clusters().get("zk").await.unwrap();
    let leader = zk.status.unwrap().leader.unwrap();
    let uid = ns.pod_uids("zk").await.get(&leader).cloned();
    let (ok, out) = ns.kubectl(&["delete", "pod", &leader, "--wait=false"]);
    assert!(ok, "{out}");
    common::wait_for(common::SETTLE, "the leader's pod replaced", || async {
        ns.pod_uids("zk").await.get(&leader) != uid.as_ref()
    })
    .await;
    ns.wait_settled("zk", 3).await;
}

async fn measure<F, Fut>(
    name: &str,
    ns: &TestNamespace,
    connect: &common::workload::Endpoint,
    operation: F,
) -> Option<Row>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    measure_clients(name, 1, ns, connect, operation).await
}

/// Runs `operation` under `clients` concurrent workloads; the row reports the worst client.
async fn measure_clients<F, Fut>(
    name: &str,
    clients: usize,
    ns: &TestNamespace,
    connect: &common::workload::Endpoint,
    operation: F,
) -> Option<Row>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if !wanted(name) {
        return None;
    }
    let selector = if ns.name.ends_with("statefulset") {
        "app=seed"
    } else {
        "app.kubernetes.io/instance=zk"
    };
    let mut workloads = Vec::new();
    for _ in 0..clients {
        workloads.push(Workload::start(connect).await);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen = ns.elections_seen_in(selector).await;
    let started = Instant::now();
    operation().await;
    let duration = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let elections = common::elections_between(&seen, &ns.elections_seen_in(selector).await);
    let mut reports: Vec<(Report, Vec<u64>)> = Vec::new();
    for workload in workloads {
        reports.push(workload.finish().await);
    }
    for (report, _) in &reports {
        for (ended, gap) in &report.stalls {
            let ended = k8s_openapi::jiff::Timestamp::try_from(*ended)
                .map(|t| t.to_string())
                .unwrap_or_default();
            eprintln!("  {name}: a {:.2}s stall ended at {ended}", gap.as_secs_f64());
        }
    }
    let row = Row {
        name: name.to_string(),
        clients,
        stall: reports.iter().map(|(r, _)| r.largest_gap).max().unwrap_or_default(),
        leader_changes: reports.iter().map(|(r, _)| r.elections()).max().unwrap_or(0),
        elections,
        acked: reports.iter().map(|(r, _)| r.acked.len()).sum(),
        lost: reports.iter().map(|(_, missing)| missing.len()).sum(),
        expired: reports.iter().map(|(r, _)| r.sessions_expired).sum(),
        duration,
    };
    eprintln!(
        "{name}: stall {:.2}s, {} leader changes, {elections} elections, {:.0}s",
        row.stall.as_secs_f64(),
        row.leader_changes,
        duration.as_secs_f64()
    );
    Some(row)
}
