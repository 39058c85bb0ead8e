//! Day-2 operations on a real cluster, each with a client workload writing throughout:
//! afterwards every acknowledged write is present, and where the ensemble kept its quorum no
//! client session expired.

mod common;

use common::workload::{Report, Workload};
use common::{client, wait_for, TestNamespace};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use kube::ResourceExt;
use serde_json::json;
use std::time::Duration;
use zkop_api::ZooKeeperCluster;

const SETTLE: Duration = common::SETTLE;

/// A settled 3-member cluster in a fresh namespace, and a workload writing to it for 3 s already.
async fn cluster_under_load(namespace: &str, version: &str) -> (TestNamespace, ZooKeeperCluster, Workload) {
    let client = client().await;
    let ns = TestNamespace::new(&client, namespace).await;
    ns.create_cluster("zk", common::small_cluster(3, version))
        .await
        .unwrap();
    let settled = ns.wait_settled("zk", 3).await;
    let workload = Workload::start(&ns.endpoint("zk").await).await;
    (ns, settled, workload)
}

fn print(operation: &str, report: &Report) {
    eprintln!(
        "{operation}: {} writes acknowledged in {:.1}s, largest stall {:.2}s, {} elections, {} sessions expired, {} failed attempts",
        report.acked.len(),
        report.duration.as_secs_f64(),
        report.largest_gap.as_secs_f64(),
        report.elections(),
        report.sessions_expired,
        report.failed_attempts
    );
}

fn assert_no_loss(operation: &str, report: &Report, missing: &[u64], kept_quorum: bool) {
    print(operation, report);
    assert!(missing.is_empty(), "{operation}: acknowledged writes lost: {missing:?}");
    if kept_quorum {
        assert_eq!(
            report.sessions_expired, 0,
            "{operation}: a client session expired although quorum was kept"
        );
    }
}

/// A restart on request: one member at a time, followers first, the leader last.
#[tokio::test]
async fn rolling_restart_on_request_restarts_the_leader_last() {
    let (ns, before, workload) = cluster_under_load("e2e-restart-request", zkop_api::DEFAULT_VERSION).await;
    let leader = before.status.unwrap().leader.unwrap();
    let uids = ns.pod_uids("zk").await;
    let elections_before = ns.elections_seen("zk").await;

    ns.request_restart("zk", "e2e-1").await;
    let mut restart_order: Vec<String> = Vec::new();
    let started = std::time::Instant::now();
    while restart_order.len() < 3 {
        for (name, uid) in ns.pod_uids("zk").await {
            if uids.get(&name) != Some(&uid) && !restart_order.contains(&name) {
                restart_order.push(name);
            }
        }
        assert!(
            started.elapsed() < SETTLE,
            "not every member was restarted: {restart_order:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let settled = ns.wait_settled("zk", 3).await;
    let elections = common::elections_between(&elections_before, &ns.elections_seen("zk").await);
    let (report, missing) = workload.finish().await;
    assert_no_loss("rolling restart", &report, &missing, true);
    assert_eq!(
        restart_order.last(),
        Some(&leader),
        "the leader ({leader}) goes last; order was {restart_order:?}"
    );
    // The leader handed leadership to a follower before its restart: a new leader, no election,
    // and its line back on the quorum port once it serves again.
    let new_leader = settled.status.clone().unwrap().leader.unwrap();
    assert_ne!(new_leader, leader, "leadership moved off {leader}");
    assert!(report.elections() >= 1, "the leader's epoch changed with the hand-off");
    assert_eq!(elections, 0, "members went back to leader election during the roll");
    let (ok, config) = ns.kubectl(&["exec", "zk-0", "--", "/opt/zookeeper/bin/zkCli.sh", "config"]);
    assert!(ok, "{config}");
    assert!(
        !config.contains(&format!(":{}:", vocabulary::ports::QUORUM_HANDOFF)),
        "every line is back on the quorum port: {config}"
    );

    // Control: without the hand-off, restarting the leader makes the members elect.
    ns.patch_spec("zk", serde_json::json!({"rollout": {"leaderHandOff": false}}))
        .await
        .unwrap();
    let workload = Workload::start(&ns.endpoint("zk").await).await;
    let elections_before = ns.elections_seen("zk").await;
    let uids = ns.pod_uids("zk").await;
    ns.request_restart("zk", "e2e-2").await;
    common::wait_for(SETTLE, "every member restarted again", || async {
        let now = ns.pod_uids("zk").await;
        now.len() == 3 && now.iter().all(|(name, uid)| uids.get(name) != Some(uid))
    })
    .await;
    ns.wait_settled("zk", 3).await;
    let elections = common::elections_between(&elections_before, &ns.elections_seen("zk").await);
    let (report, missing) = workload.finish().await;
    assert_no_loss("rolling restart without hand-off", &report, &missing, true);
    assert!(
        elections >= 1,
        "control: restarting the leader as it is made no election seen"
    );
}

/// Whoever deletes the leader's pod (a person, a drain), its preStop hook hands leadership to a
/// follower first: a new leader and no member going back to LOOKING. Control: without the hook
/// (leaderHandOff false), the same deletion makes the members elect.
#[tokio::test]
async fn deleting_the_leaders_pod_hands_leadership_off() {
    let (ns, before, workload) = cluster_under_load("e2e-leader-deleted", zkop_api::DEFAULT_VERSION).await;
    let mut workload = Some(workload);
    for hand_off in [true, false] {
        let leader = if hand_off {
            before.status.clone().unwrap().leader.unwrap()
        } else {
            ns.patch_spec("zk", serde_json::json!({"rollout": {"leaderHandOff": false}}))
                .await
                .unwrap();
            // The hook goes with a roll; then the leader as it is now.
            common::wait_for(SETTLE, "the pods without the preStop hook", || async {
                let (_, hooks) = ns.kubectl(&[
                    "get",
                    "pods",
                    "-l",
                    "app.kubernetes.io/instance=zk",
                    "-o",
                    "jsonpath={.items[*].spec.containers[0].lifecycle}",
                ]);
                hooks.trim().is_empty()
            })
            .await;
            let settled = ns.wait_settled("zk", 3).await;
            workload = Some(Workload::start(&ns.endpoint("zk").await).await);
            settled.status.unwrap().leader.unwrap()
        };
        // Writes acknowledged before the deletion: the workload must see the leader change (a
        // new epoch), not start after it (seen on a loaded machine).
        workload
            .as_ref()
            .unwrap()
            .wait_for_progress(Duration::from_secs(60))
            .await;
        let elections_before = ns.elections_seen("zk").await;
        let (ok, out) = ns.kubectl(&["delete", "pod", &leader, "--wait=false"]);
        assert!(ok, "{out}");
        let uid = ns.pod_uids("zk").await.get(&leader).cloned();
        common::wait_for(SETTLE, "the leader's pod replaced", || async {
            ns.pod_uids("zk").await.get(&leader) != uid.as_ref()
        })
        .await;
        let settled = ns.wait_settled("zk", 3).await;
        let elections = common::elections_between(&elections_before, &ns.elections_seen("zk").await);
        let (report, missing) = workload.take().unwrap().finish().await;
        let what = if hand_off {
            "leader's pod deleted"
        } else {
            "leader's pod deleted, no hand-off"
        };
        assert_no_loss(what, &report, &missing, true);
        let new_leader = settled.status.unwrap().leader.unwrap();
        assert!(
            report.elections() >= 1,
            "{what}: the leader changed ({leader} -> {new_leader})"
        );
        if hand_off {
            assert_eq!(elections, 0, "{what}: members went back to leader election");
        } else {
            assert!(
                elections >= 1,
                "control: deleting the leader without the hook made no election seen"
            );
        }
    }
}

/// Scaling 3 -> 5 -> 3 by dynamic reconfiguration, one member at a time.
#[tokio::test]
async fn scaling_three_to_five_and_back_keeps_every_write() {
    let (ns, _, workload) = cluster_under_load("e2e-scale", zkop_api::DEFAULT_VERSION).await;

    ns.patch_spec("zk", json!({"replicas": 5})).await.unwrap();
    let five = ns.wait_settled("zk", 5).await;
    let roles: Vec<String> = five.status.unwrap().members.iter().map(|m| m.role.clone()).collect();
    assert_eq!(roles.iter().filter(|r| *r == "leader").count(), 1, "{roles:?}");
    assert_eq!(
        roles.iter().filter(|r| *r == "follower").count(),
        4,
        "all five vote: {roles:?}"
    );

    ns.patch_spec("zk", json!({"replicas": 3})).await.unwrap();
    ns.wait_settled("zk", 3).await;
    let (report, missing) = workload.finish().await;
    assert_no_loss("scale 3-5-3", &report, &missing, true);

    let claims: Api<PersistentVolumeClaim> = ns.api();
    wait_for(
        Duration::from_secs(120),
        "volumes of removed members to be deleted (whenScaled: Delete)",
        || async {
            claims.get_opt("data-zk-3").await.unwrap().is_none() && claims.get_opt("data-zk-4").await.unwrap().is_none()
        },
    )
    .await;
    let (ok, config) = ns.kubectl(&["exec", "zk-0", "--", "/opt/zookeeper/bin/zkCli.sh", "config"]);
    assert!(
        ok && config.contains("server.3=") && !config.contains("server.4=") && !config.contains("server.5="),
        "{config}"
    );
}

/// A member whose volume is deleted with its pod comes back empty, syncs before voting, rejoins.
#[tokio::test]
async fn lost_disk_member_resyncs_and_rejoins() {
    let (ns, _, workload) = cluster_under_load("e2e-lost-disk", zkop_api::DEFAULT_VERSION).await;

    let claims: Api<PersistentVolumeClaim> = ns.api();
    let pods: Api<Pod> = ns.api();
    let old_volume = claims.get("data-zk-1").await.unwrap().spec.unwrap().volume_name;
    claims.delete("data-zk-1", &DeleteParams::default()).await.unwrap();
    pods.delete("zk-1", &DeleteParams::default()).await.unwrap();
    wait_for(
        Duration::from_secs(180),
        "zk-1 to come back on a new volume",
        || async {
            claims
                .get_opt("data-zk-1")
                .await
                .unwrap()
                .and_then(|c| c.spec)
                .is_some_and(|s| s.volume_name.is_some() && s.volume_name != old_volume)
        },
    )
    .await;
    ns.wait_settled("zk", 3).await;
    let (report, missing) = workload.finish().await;
    assert_no_loss("lost disk", &report, &missing, true);
    let (_, log) = ns.kubectl(&["logs", "zk-1"]);
    assert!(
        log.contains("will not vote until it has synced"),
        "the empty member must start guarded:\n{log}"
    );
    let out = ns.zkcli("zk-1", &["ls", "/workload"]);
    assert!(out.contains("-w-00000000"), "zk-1 serves the data it synced: {out}");
}

/// Two of three pods deleted at once: quorum is lost, and the ensemble recovers by itself.
#[tokio::test]
async fn quorum_loss_recovers_by_itself() {
    let (ns, _, workload) = cluster_under_load("e2e-quorum-loss", zkop_api::DEFAULT_VERSION).await;

    let pods: Api<Pod> = ns.api();
    let before = ns.pod_uids("zk").await;
    pods.delete("zk-0", &DeleteParams::default()).await.unwrap();
    pods.delete("zk-1", &DeleteParams::default()).await.unwrap();
    // The status may still say settled until the operator looks: wait for the new pods first.
    wait_for(SETTLE, "zk-0 and zk-1 replaced", || async {
        let now = ns.pod_uids("zk").await;
        ["zk-0", "zk-1"]
            .iter()
            .all(|p| now.contains_key(*p) && now.get(*p) != before.get(*p))
    })
    .await;
    ns.wait_settled("zk", 3).await;
    let (report, missing) = workload.finish().await;
    assert_no_loss("quorum loss", &report, &missing, false);
    // The fault happened: the survivor lost its quorum, and the ensemble came back with a new
    // leader's epoch.
    assert!(
        report.elections() >= 1,
        "quorum loss: no new epoch, so no quorum was lost"
    );
}

/// From the older line (`OLDER_VERSION`, 3.8) to the default (3.9), one member at a time, the
/// leader last.
#[tokio::test]
async fn version_upgrade_from_3_8_to_3_9() {
    upgrade("e2e-upgrade", common::OLDER_VERSION, zkop_api::DEFAULT_VERSION).await;
}

/// From the release before the default (3.9.4, with CVE-2026-24281 and CVE-2026-24308) to the
/// default: the upgrade users of the last release make.
#[tokio::test]
async fn patch_upgrade_from_the_previous_release() {
    upgrade(
        "e2e-patch-upgrade",
        common::PREVIOUS_PATCH_VERSION,
        zkop_api::DEFAULT_VERSION,
    )
    .await;
}

async fn upgrade(namespace: &str, from: &str, to: &str) {
    let (ns, before, workload) = cluster_under_load(namespace, from).await;
    let before = before.status.unwrap();
    assert_eq!(before.version.as_deref(), Some(from), "read from the members");
    let leader = before.leader.unwrap();

    ns.patch_spec("zk", json!({"version": to})).await.unwrap();
    let pods: Api<Pod> = ns.api();
    wait_for(SETTLE, &format!("every member to run {to}"), || async {
        let list = pods
            .list(&ListParams::default().labels("app.kubernetes.io/instance=zk"))
            .await
            .unwrap()
            .items;
        list.len() == 3
            && list.iter().all(|p| {
                p.spec
                    .as_ref()
                    .is_some_and(|s| s.containers[0].image.as_deref() == Some(common::default_image().as_str()))
            })
    })
    .await;
    let after = ns.wait_settled("zk", 3).await.status.unwrap();
    let (report, missing) = workload.finish().await;
    assert_no_loss(&format!("upgrade {from} to {to}"), &report, &missing, true);
    // What people read: the version each member reports running, and how the roll ended.
    assert_eq!(after.version.as_deref(), Some(to), "{after:?}");
    assert!(
        after.members.iter().all(|m| m.version.as_deref() == Some(to)),
        "{:?}",
        after.members
    );
    let ended = after
        .last_operation
        .clone()
        .expect("the roll is recorded as the last operation");
    assert_eq!(ended.outcome, "Succeeded", "{ended:?}");
    let (_, wide) = ns.kubectl(&["get", "zkc", "zk", "-o", "wide"]);
    assert!(
        wide.contains("VOTERS") && wide.contains("LAST-OPERATION") && wide.contains(&ended.kind),
        "{wide}"
    );
    let newest = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=zk"))
        .await
        .unwrap()
        .items
        .into_iter()
        .max_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0))
        .unwrap();
    assert_eq!(newest.name_any(), leader, "the leader is upgraded last");
    let out = ns.zkcli("zk-0", &["version"]);
    assert!(out.contains(to), "{out}");
}

/// The operator restarted in the middle of a scale-up resumes from what the cluster shows.
#[tokio::test]
async fn operator_restart_during_scale_up_resumes() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-scale-restart").await;
    ns.create_cluster("zk", common::small_cluster(3, zkop_api::DEFAULT_VERSION))
        .await
        .unwrap();
    ns.wait_settled("zk", 3).await;
    ns.patch_spec("zk", json!({"replicas": 5})).await.unwrap();
    let clusters = ns.clusters();
    wait_for(Duration::from_secs(120), "the scale-up to start", || async {
        clusters
            .get("zk")
            .await
            .ok()
            .and_then(|zk| zk.status)
            .is_some_and(|s| s.operation.as_deref() == Some("ScaleUp"))
    })
    .await;
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), "zkop-system");
    operator_pods
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app.kubernetes.io/name=zookeeper-operator"),
        )
        .await
        .unwrap();
    // The operators were killed in the middle of the scale-up, not after it: otherwise there is
    // nothing to resume and the test proves nothing.
    let when_killed = clusters.get("zk").await.unwrap().status.unwrap_or_default();
    assert!(
        when_killed.ready_replicas < 5 || when_killed.operation.as_deref() == Some("ScaleUp"),
        "the scale-up had finished before the operators were killed: {when_killed:?}"
    );
    let five = ns.wait_settled("zk", 5).await;
    assert_eq!(
        five.status
            .unwrap()
            .members
            .iter()
            .filter(|m| m.role == "follower")
            .count(),
        4
    );
}

/// Every size on the path 1 -> 3 -> 5 -> 1, one member at a time, with the workload running.
/// Five members fit beside another test's three on two cores (`e2e::MEMBER_BUDGET`).
#[tokio::test]
async fn scaling_along_one_three_five_and_back_to_one() {
    scaling_along("e2e-scale-path", &[3, 5, 1]).await;
}

/// The same path through seven members (`make e2e-full`): seven run beside nothing else.
#[tokio::test]
async fn scaling_along_one_three_seven_and_back_to_one() {
    scaling_along("e2e-scale-path-7", &[3, 7, 1]).await;
}

/// From one member through `sizes`, one member at a time, with the workload running.
async fn scaling_along(namespace: &str, sizes: &[i32]) {
    let client = client().await;
    let ns = TestNamespace::new(&client, namespace).await;
    ns.create_cluster("zk", common::small_cluster(1, zkop_api::DEFAULT_VERSION))
        .await
        .unwrap();
    ns.wait_settled("zk", 1).await;
    let workload = Workload::start(&ns.endpoint("zk").await).await;
    for &replicas in sizes {
        ns.patch_spec("zk", json!({"replicas": replicas})).await.unwrap();
        let zk = ns.wait_settled("zk", replicas).await;
        let voters = zk
            .status
            .unwrap()
            .members
            .iter()
            .filter(|m| m.role == "leader" || m.role == "follower")
            .count();
        assert_eq!(voters, replicas as usize, "all {replicas} members vote");
    }
    let (report, missing) = workload.finish().await;
    let path: Vec<String> = std::iter::once(1)
        .chain(sizes.iter().copied())
        .map(|n| n.to_string())
        .collect();
    assert_no_loss(&format!("scale {}", path.join("-")), &report, &missing, true);
    let last = sizes.last().copied().unwrap_or(1) as usize;
    let (ok, config) = ns.kubectl(&["exec", "zk-0", "--", "/opt/zookeeper/bin/zkCli.sh", "config"]);
    assert!(ok && config.matches("participant").count() == last, "{config}");
}
