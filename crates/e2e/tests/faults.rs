//! Faults and mistakes on a real cluster, each with a client workload writing throughout: the
//! test breaks something, proves it broke, lets it be fixed (or fixes the spec as a user would),
//! and asserts that the ensemble recovers with no human action, that every acknowledged write
//! is present, and that no session expired where quorum was kept.
//!
//! Each test prints `FAULT-ROW` lines, collected into docs/faults.md.

mod common;

use common::workload::{Report, Workload};
use common::{client, condition, docker, fault_row, kubectl, wait_for, TestNamespace};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams};
use kube::ResourceExt;
use serde_json::json;
use std::time::{Duration, Instant};
use zkop_api::ZooKeeperCluster;

/// The tests' clusters stop a roll after 30 s without the member serving (the shortest allowed).
const MEMBER_READY_TIMEOUT: u64 = 30;

fn spec(replicas: i32) -> serde_json::Value {
    let mut spec = common::small_cluster(replicas, zkop_api::DEFAULT_VERSION);
    spec["rollout"] = json!({"memberReadyTimeoutSeconds": MEMBER_READY_TIMEOUT});
    spec
}

async fn settled_cluster(namespace: &str, spec: serde_json::Value) -> (TestNamespace, ZooKeeperCluster) {
    let client = client().await;
    let ns = TestNamespace::new(&client, namespace).await;
    ns.create_cluster("zk", spec).await.unwrap();
    let zk = ns.wait_settled("zk", 3).await;
    (ns, zk)
}

async fn start_workload(ns: &TestNamespace) -> Workload {
    Workload::start(&ns.endpoint("zk").await).await
}

/// Stops the workload, checks every acknowledged write, prints the row.
async fn finish(case: &str, workload: Workload, started: Instant, kept_quorum: bool) -> Report {
    finish_after(case, workload, started, kept_quorum, "none").await
}

/// `human`: what a person did to recover, where the docs say so.
async fn finish_after(case: &str, workload: Workload, started: Instant, kept_quorum: bool, human: &str) -> Report {
    // Recovered means the clients write again, not only that the operator says so.
    workload.wait_for_progress(Duration::from_secs(60)).await;
    let recovered = started.elapsed();
    let (report, missing) = workload.finish().await;
    fault_row(case, &report, missing.len(), recovered, human);
    assert!(missing.is_empty(), "{case}: acknowledged writes lost: {missing:?}");
    assert!(
        report.tail < Duration::from_secs(5),
        "{case}: the workload had not written for {:?} when the ensemble was back",
        report.tail
    );
    if kept_quorum {
        assert_eq!(
            report.sessions_expired, 0,
            "{case}: a session expired although quorum was kept"
        );
    }
    report
}

async fn status(ns: &TestNamespace) -> zkop_api::ZooKeeperClusterStatus {
    ns.clusters().get("zk").await.unwrap().status.unwrap_or_default()
}

/// A change that breaks the member it reaches. The roll must stop after that one member, with
/// status naming it and the cause within a minute, keep quorum, and heal once `fix` is applied.
async fn bad_rollout(ns: &TestNamespace, case: &str, breaking: serde_json::Value, fix: serde_json::Value, cause: &str) {
    let before = ns.pod_uids("zk").await;
    let leader = status(ns).await.leader.unwrap();
    let mark = ns.event_mark("zk").await;
    let workload = start_workload(ns).await;
    ns.patch_spec("zk", breaking).await.unwrap();

    let clusters = ns.clusters();
    wait_for(
        Duration::from_secs(60),
        &format!("{case}: status to name the broken member and {cause:?}"),
        || async {
            let s = clusters.get("zk").await.unwrap().status.unwrap_or_default();
            s.message.as_deref().is_some_and(|m| m.contains(cause))
                && s.members
                    .iter()
                    .any(|m| m.reason.as_deref().is_some_and(|r| r.contains(cause)))
        },
    )
    .await;
    let s = status(ns).await;
    let broken: Vec<String> = s
        .members
        .iter()
        .filter(|m| m.reason.as_deref().is_some_and(|r| r.contains(cause)))
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(broken.len(), 1, "{case}: one member broken: {:?}", s.members);
    assert_ne!(broken[0], leader, "{case}: the leader is restarted last, never first");
    eprintln!("{case}: kubectl get zkc shows: {}", s.message.unwrap_or_default());

    // Past the member timeout the roll is declared stopped, with a Warning event.
    wait_for(
        Duration::from_secs(MEMBER_READY_TIMEOUT + 60),
        &format!("{case}: the roll to be declared stuck"),
        || async {
            let zk = clusters.get("zk").await.unwrap();
            condition(&zk, "Degraded").is_some_and(|c| c.reason == "MemberStuck")
                && condition(&zk, "Progressing").is_some_and(|c| c.status == "False" && c.reason == "RolloutStuck")
        },
    )
    .await;
    ns.wait_for_event("zk", "MemberStuck", &mark, Duration::from_secs(30))
        .await;
    // Every MemberStuck since the change names the broken member and its cause: a member the roll
    // had just evicted, its pod still terminating, was once declared stuck as "being deleted".
    let notes = ns.events_since("zk", "MemberStuck", &mark).await;
    assert!(
        notes
            .iter()
            .all(|note| note.contains(&broken[0]) && note.contains(cause)),
        "{case}: {notes:#?}"
    );
    // A pod's waiting reason alternates (ErrImagePull, ImagePullBackOff): look a few times.
    wait_for(
        Duration::from_secs(30),
        &format!("{case}: kubectl describe to show the cause {cause:?}"),
        || async { ns.kubectl(&["describe", "zkc", "zk"]).1.contains(cause) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = ns.pod_uids("zk").await;
    let restarted: Vec<&String> = during
        .iter()
        .filter(|(n, u)| before.get(*n) != Some(u))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(restarted, vec![&broken[0]], "{case}: the roll stopped after one member");
    let zk = clusters.get("zk").await.unwrap();
    assert!(
        condition(&zk, "Available").is_some_and(|c| c.status == "True"),
        "{case}: quorum kept"
    );

    let fixed = Instant::now();
    ns.patch_spec("zk", fix).await.unwrap();
    ns.wait_settled("zk", 3).await;
    finish(case, workload, fixed, true).await;
}

/// A version whose image does not exist, a configuration value that makes ZooKeeper exit, a
/// member that cannot be scheduled: each stops the roll after one member and heals when
/// reverted. Between them, a spec the API server accepts but a StatefulSet cannot take is
/// reported as a failed apply naming the object, and clears when fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rollouts_stop_after_one_member_and_heal_when_reverted() {
    let (ns, _) = settled_cluster("e2e-faults-rollout", spec(3)).await;

    bad_rollout(
        &ns,
        "version 3.9.99 (no such image)",
        json!({"version": "3.9.99"}),
        json!({"version": zkop_api::DEFAULT_VERSION}),
        "3.9.99",
    )
    .await;
    bad_rollout(
        &ns,
        "config makes ZooKeeper exit",
        json!({"config": {"tickTime": "0"}}),
        json!({"config": null}),
        "exit code",
    )
    .await;
    bad_rollout(
        &ns,
        "member cannot be scheduled",
        json!({"placement": {"nodeSelector": {"zkop.io/e2e-no-such-node": "true"}}}),
        json!({"placement": {"nodeSelector": null}}),
        "Unschedulable",
    )
    .await;

    // Accepted by the API server, refused by the StatefulSet's validation.
    let mark = ns.event_mark("zk").await;
    ns.patch_spec(
        "zk",
        json!({"placement": {"tolerations": [{"key": "k", "operator": "Sometimes"}]}}),
    )
    .await
    .unwrap();
    let clusters = ns.clusters();
    wait_for(Duration::from_secs(60), "the failed apply to be reported", || async {
        let zk = clusters.get("zk").await.unwrap();
        condition(&zk, "Reconciled").is_some_and(|c| {
            c.status == "False" && c.reason == "ApplyFailed" && c.message.contains("StatefulSet e2e-faults-rollout/zk")
        })
    })
    .await;
    let note = ns
        .wait_for_event("zk", "ApplyFailed", &mark, Duration::from_secs(30))
        .await;
    assert!(
        note.contains("apply StatefulSet e2e-faults-rollout/zk") && note.contains("operator"),
        "{note}"
    );
    ns.patch_spec("zk", json!({"placement": {"tolerations": null}}))
        .await
        .unwrap();
    wait_for(Duration::from_secs(60), "the failure to clear", || async {
        let zk = clusters.get("zk").await.unwrap();
        condition(&zk, "Reconciled").is_some_and(|c| c.status == "True")
    })
    .await;
}

/// Runs `kubectl drain NODE` and returns whether it finished and what it said. A drain refuses
/// a node where a pod with no controller runs; here those are local-path's short-lived helper
/// pods (they delete the volumes of earlier tests), so it is tried again once they are gone,
/// for up to a minute.
fn drain(node: &str, timeout: &str) -> (bool, String) {
    let started = Instant::now();
    loop {
        let (drained, out) = kubectl(&[
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout",
            timeout,
        ]);
        let helper_in_the_way = out.contains("declare no controller") && out.contains("local-path-storage/helper-pod");
        if !helper_in_the_way || started.elapsed() > Duration::from_secs(60) {
            return (drained, out);
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Samples how many members are ready while `during` runs; returns the fewest seen.
async fn fewest_ready_during<F: std::future::Future<Output = ()>>(ns: &TestNamespace, during: F) -> usize {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        let ns = TestNamespace::attach(&client().await, &ns.name);
        tokio::spawn(async move {
            let mut fewest = usize::MAX;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                fewest = fewest.min(ns.ready_members("zk", 3).await);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            fewest
        })
    };
    during.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.await.unwrap()
}

/// `kubectl drain` of the leader's node: the PodDisruptionBudget lets one member go and refuses
/// a second; with node-local volumes the member waits for its node. Then the node is treated as
/// gone for good and the documented step brings the member back elsewhere. Then a drain during
/// a roll: the operator's evictions and the drain's share the budget, one member down at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drains_respect_the_budget_and_a_member_waits_for_its_node() {
    let (ns, zk) = settled_cluster("e2e-faults-drain", spec(3)).await;
    let leader = zk.status.unwrap().leader.unwrap();
    let leader_node = ns.node_of(&leader).await;
    let workload = start_workload(&ns).await;
    let started = Instant::now();

    let (drained, out) = drain(&leader_node, "90s");
    assert!(drained, "draining {leader_node}: {out}");
    let clusters = ns.clusters();
    wait_for(
        Duration::from_secs(60),
        "the evicted member to wait for its node",
        || async {
            let s = clusters.get("zk").await.unwrap().status.unwrap_or_default();
            s.members
                .iter()
                .any(|m| m.name == leader && m.reason.as_deref().is_some_and(|r| r.contains("Unschedulable")))
        },
    )
    .await;
    // The drained member was the leader: the two others elect one between them (seconds, more
    // on a loaded machine) and serve.
    wait_for(
        Duration::from_secs(90),
        "the two others to keep quorum without the drained leader",
        || async { status(&ns).await.ready_replicas == 2 },
    )
    .await;
    let s = status(&ns).await;

    // A second member may not go while the first is away.
    let other = s.members.iter().find(|m| m.name != leader).unwrap().name.clone();
    let other_node = ns.node_of(&other).await;
    let other_uid = ns.pod(&other).await.uid();
    // The refusal is the first eviction's answer; kubectl retries it until the timeout.
    let (second, out) = drain(&other_node, "8s");
    assert!(!second, "the budget must refuse a second member: {out}");
    assert!(out.contains("disruption budget"), "{out}");
    assert_eq!(ns.pod(&other).await.uid(), other_uid, "{other} was not evicted");
    kubectl(&["uncordon", &other_node]);

    // The node is gone for good: the documented step (docs/operations.md) replaces the member's
    // volume; it comes back on another node, empty, and syncs before it votes.
    let replaced = Instant::now();
    let (ok, out) = ns.kubectl(&[
        "delete",
        &format!("pvc/data-{leader}"),
        &format!("pod/{leader}"),
        "--wait=false",
    ]);
    assert!(ok, "{out}");
    ns.wait_settled("zk", 3).await;
    let new_node = ns.node_of(&leader).await;
    assert_ne!(new_node, leader_node, "{leader} came back on another node");
    let (_, log) = ns.kubectl(&["logs", &leader]);
    assert!(
        log.contains("will not vote until it has synced"),
        "{leader} starts guarded:\n{log}"
    );
    kubectl(&["uncordon", &leader_node]);
    let report = finish_after(
        "drain: leader's node, member waits, then node gone for good",
        workload,
        started,
        true,
        "the documented step: delete the member's PVC and pod",
    )
    .await;
    eprintln!(
        "member replaced {:.0} s after the documented step",
        replaced.elapsed().as_secs_f64()
    );
    drop(report);

    // A drain during a roll.
    let workload = start_workload(&ns).await;
    let started = Instant::now();
    let mark = ns.event_mark("zk").await;
    ns.request_restart("zk", "drain-during-roll").await;
    ns.wait_for_event("zk", "RestartingMember", &mark, Duration::from_secs(60))
        .await;
    let leader = status(&ns).await.leader.unwrap_or(leader);
    // After the step above two members share a node (the replaced one could not go back to its
    // cordoned node). A drain of a node with two members and node-local volumes cannot finish
    // while the first evicted waits for that node; drain the leader's node if it holds only the
    // leader, else a node with one member.
    let mut members_on: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for pod in ["zk-0", "zk-1", "zk-2"] {
        members_on
            .entry(ns.node_of(pod).await)
            .or_default()
            .push(pod.to_string());
    }
    let leader_node = ns.node_of(&leader).await;
    let node = if members_on[&leader_node].len() == 1 {
        leader_node
    } else {
        members_on
            .iter()
            .find(|(_, pods)| pods.len() == 1)
            .map(|(node, _)| node.clone())
            .expect("a node with one member")
    };
    let fewest = fewest_ready_during(&ns, async {
        let (ok, out) = drain(&node, "240s");
        assert!(ok, "the drain finishes once the budget allows: {out}");
        kubectl(&["uncordon", &node]);
        ns.wait_settled("zk", 3).await;
    })
    .await;
    assert!(
        fewest >= 2,
        "two members were down at once during the drain and the roll ({fewest} ready)"
    );
    finish("drain of a member's node during a roll", workload, started, true).await;
}

/// A whole worker node stopped (`docker stop` of its kind container) and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_comes_back_and_its_member_rejoins() {
    let (ns, zk) = settled_cluster("e2e-faults-node", spec(3)).await;
    let status_before = zk.status.unwrap();
    let follower = status_before
        .members
        .iter()
        .find(|m| m.role == "follower")
        .unwrap()
        .name
        .clone();
    let node = ns.node_of(&follower).await;
    let workload = start_workload(&ns).await;
    let started = Instant::now();
    let (ok, out) = docker(&["stop", &node]);
    assert!(ok, "{out}");
    let clusters = ns.clusters();
    wait_for(
        Duration::from_secs(60),
        "the member on the stopped node to be seen down",
        || async {
            let s = clusters.get("zk").await.unwrap().status.unwrap_or_default();
            s.members.iter().any(|m| m.name == follower && !m.ready) && s.ready_replicas == 2
        },
    )
    .await;
    // The fault is proven (the member is seen down); how long the node stays off adds nothing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (ok, out) = docker(&["start", &node]);
    assert!(ok, "{out}");
    wait_for(
        Duration::from_secs(180),
        &format!("node {node} to be Ready again"),
        || async {
            let (_, out) = kubectl(&[
                "get",
                "node",
                &node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            out.trim() == "True"
        },
    )
    .await;
    ns.wait_settled("zk", 3).await;
    finish("worker node stopped (docker stop) and started", workload, started, true).await;
}

/// Drops packets from `from` to `to` (and to `port`, if given) on `node`, or stops dropping
/// them. The rule goes in the raw table, which sees every packet before the filter table, where
/// kube-router keeps its NetworkPolicy chains at the top.
fn drop_packets(node: &str, from: &str, to: &str, port: Option<&str>, cut: bool) {
    let mut args = vec![
        "exec",
        node,
        "iptables",
        "-t",
        "raw",
        if cut { "-I" } else { "-D" },
        "PREROUTING",
    ];
    args.extend(["-s", from, "-d", to]);
    if let Some(port) = port {
        args.extend(["-p", "tcp", "--dport", port]);
    }
    args.extend(["-j", "DROP"]);
    let (ok, out) = docker(&args);
    assert!(ok, "iptables on {node}: {out}");
}

/// Cuts a member off from its peers, both ways, or reconnects it.
fn partition(node: &str, member_ip: &str, peers: &[String], cut: bool) {
    for peer in peers {
        drop_packets(node, member_ip, peer, None, cut);
        drop_packets(node, peer, member_ip, None, cut);
    }
}

/// The leader cut off from its peers for a while, then reconnected: the others elect a new
/// leader and keep serving; the cut-off member stops serving and rejoins afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_from_its_peers_rejoins() {
    let (ns, zk) = settled_cluster("e2e-faults-partition", spec(3)).await;
    let leader = zk.status.unwrap().leader.unwrap();
    let node = ns.node_of(&leader).await;
    let leader_ip = ns.pod_ip(&leader).await;
    let mut peers = Vec::new();
    for i in 0..3 {
        let pod = format!("zk-{i}");
        if pod != leader {
            peers.push(ns.pod_ip(&pod).await);
        }
    }
    let workload = start_workload(&ns).await;
    let started = Instant::now();
    // The rules go on every node: members on the same node talk over the bridge.
    let nodes: Vec<String> = {
        let mut nodes = Vec::new();
        for i in 0..3 {
            let n = ns.node_of(&format!("zk-{i}")).await;
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
        nodes
    };
    for n in &nodes {
        partition(n, &leader_ip, &peers, true);
    }
    let clusters = ns.clusters();
    wait_for(
        Duration::from_secs(60),
        "a new leader among the connected members",
        || async {
            let s = clusters.get("zk").await.unwrap().status.unwrap_or_default();
            s.leader.as_ref().is_some_and(|l| *l != leader) && s.ready_replicas == 2
        },
    )
    .await;
    // The probe must have run and answered: an exec that failed says nothing about serving.
    let (ready, probe) = ns.kubectl(&["exec", &leader, "--", "zk-agent", "probe", "ready"]);
    assert!(
        !ready && probe.contains("running but not serving"),
        "the cut-off member runs and must not serve: {probe}"
    );
    tokio::time::sleep(Duration::from_secs(15)).await;
    for n in &nodes {
        partition(n, &leader_ip, &peers, false);
    }
    ns.wait_settled("zk", 3).await;
    let _ = node;
    finish("leader cut off from its peers for 15 s", workload, started, true).await;
}

/// Kills the leading operator replica as soon as a new event with `reason` appears.
async fn kill_operator_on(ns: &TestNamespace, reason: &str, mark: &common::EventMark) -> String {
    let client = client().await;
    ns.wait_for_event("zk", reason, mark, Duration::from_secs(180)).await;
    let leader = common::operator_leader(&client).await.expect("an operator leads");
    common::kill_pod(&client, common::OPERATOR_NAMESPACE, &leader).await;
    leader
}

/// Two operator replicas: only the Lease holder acts. The leader is killed at each kind of day-2
/// step (after adding a voter, after removing one and before the StatefulSet shrinks, right
/// after evicting a member), and once the operator cannot reach the API server for a while;
/// each time the other replica takes over and the operation finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_killed_at_each_step_resumes() {
    let client = client().await;
    let (ns, _) = settled_cluster("e2e-faults-operator", spec(3)).await;

    let pods = common::operator_pods(&client).await;
    assert_eq!(pods.len(), 2, "two operator replicas run");
    let leader = common::operator_leader(&client).await.unwrap();
    for pod in &pods {
        let metrics = common::operator_metrics(&pod.name_any());
        let leading = pod.name_any() == leader;
        assert!(
            metrics.contains(if leading { "zkop_leader 1" } else { "zkop_leader 0" }),
            "{}: {metrics}",
            pod.name_any()
        );
        if !leading {
            assert!(
                metrics.contains("zkop_reconciles_total 0"),
                "the standby does not act: {metrics}"
            );
        }
    }

    let workload = start_workload(&ns).await;
    let started = Instant::now();
    let mark = ns.event_mark("zk").await;
    ns.patch_spec("zk", json!({"replicas": 5})).await.unwrap();
    let first = kill_operator_on(&ns, "AddedVoter", &mark).await;
    ns.wait_settled("zk", 5).await;
    let now_leading = common::operator_leader(&client).await.unwrap();
    assert_ne!(now_leading, first, "the other replica took over");
    let mark = ns.event_mark("zk").await;
    ns.patch_spec("zk", json!({"replicas": 3})).await.unwrap();
    kill_operator_on(&ns, "RemovedVoter", &mark).await;
    ns.wait_settled("zk", 3).await;
    let claims: Api<PersistentVolumeClaim> = ns.api();
    wait_for(
        Duration::from_secs(120),
        "the removed members' volumes to go",
        || async {
            claims.get_opt("data-zk-3").await.unwrap().is_none() && claims.get_opt("data-zk-4").await.unwrap().is_none()
        },
    )
    .await;
    finish(
        "operator leader killed after AddVoter and after RemoveVoter (scale 3-5-3)",
        workload,
        started,
        true,
    )
    .await;

    let workload = start_workload(&ns).await;
    let started = Instant::now();
    let mark = ns.event_mark("zk").await;
    ns.request_restart("zk", "operator-killed").await;
    kill_operator_on(&ns, "RestartingMember", &mark).await;
    ns.wait_settled("zk", 3).await;
    finish(
        "operator leader killed right after evicting a member (roll)",
        workload,
        started,
        true,
    )
    .await;

    // The operator cut off from the API server for 30 s, in the middle of a roll.
    let workload = start_workload(&ns).await;
    let started = Instant::now();
    let mark = ns.event_mark("zk").await;
    ns.request_restart("zk", "api-unreachable").await;
    ns.wait_for_event("zk", "OperationStarted", &mark, Duration::from_secs(60))
        .await;
    let api = api_server_address(&client).await;
    let cut = operator_pods_and_nodes(&client).await;
    for (node, ip) in &cut {
        drop_packets(node, ip, &api.0, Some(&api.1), true);
    }
    // The proof that the operators really lost the API server: nobody renews the Lease.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let renewed_at_cut = lease_renewed(&client).await;
    tokio::time::sleep(Duration::from_secs(27)).await;
    assert_eq!(
        lease_renewed(&client).await,
        renewed_at_cut,
        "the leader Lease was renewed: the operators were not cut off"
    );
    for (node, ip) in &cut {
        drop_packets(node, ip, &api.0, Some(&api.1), false);
    }
    ns.wait_settled("zk", 3).await;
    finish(
        "operator cut off from the API server for 30 s during a roll",
        workload,
        started,
        true,
    )
    .await;
}

/// The operator pods' nodes and addresses.
async fn operator_pods_and_nodes(client: &kube::Client) -> Vec<(String, String)> {
    common::operator_pods(client)
        .await
        .iter()
        .map(|pod| {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
            let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
            (node, ip)
        })
        .collect()
}

/// The address and port pods reach the API server at (the `kubernetes` Service), before the
/// node translates it.
async fn api_server_address(client: &kube::Client) -> (String, String) {
    let services: kube::Api<k8s_openapi::api::core::v1::Service> = kube::Api::namespaced(client.clone(), "default");
    let spec = services.get("kubernetes").await.unwrap().spec.unwrap();
    (spec.cluster_ip.unwrap(), spec.ports.unwrap()[0].port.to_string())
}

/// When the leader Lease was last renewed.
async fn lease_renewed(client: &kube::Client) -> Option<String> {
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client.clone(), common::OPERATOR_NAMESPACE);
    let lease = leases.get("zookeeper-operator").await.ok()?;
    lease.spec?.renew_time.map(|t| t.0.to_string())
}

/// The ensemble is never declared new twice. (1) During a quorum loss the live ConfigMap is
/// deleted, and a member's disk is lost: the operator recreates the ConfigMap as `existing`,
/// and the empty member syncs before it votes. (2) The resource is deleted with its volumes kept
/// and re-created, with one volume missing: it starts `existing`, the empty member is guarded.
/// Every acknowledged write survives both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ensemble_is_never_new_twice() {
    let mut keep = spec(3);
    keep["storage"]["retention"] = json!({"whenDeleted": "Retain"});
    let (ns, _) = settled_cluster("e2e-faults-new-twice", keep.clone()).await;
    let config_maps: Api<ConfigMap> = ns.api();
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let pods: Api<Pod> = ns.api();

    // (1) The namespace held at one pod, so the deleted members stay away: the quorum loss lasts.
    let workload = start_workload(&ns).await;
    let started = Instant::now();
    let hold = common::PodQuota::new(&ns, 1);
    let _ = claims.delete("data-zk-2", &DeleteParams::default()).await;
    pods.delete("zk-1", &DeleteParams::default()).await.unwrap();
    pods.delete("zk-2", &DeleteParams::default()).await.unwrap();
    let clusters = ns.clusters();
    wait_for(Duration::from_secs(90), "the quorum to be lost", || async {
        let zk = clusters.get("zk").await.unwrap();
        condition(&zk, "Available").is_some_and(|c| c.status == "False")
    })
    .await;
    wait_for(Duration::from_secs(90), "zk-2's old volume to go", || async {
        claims
            .get_opt("data-zk-2")
            .await
            .unwrap()
            .is_none_or(|c| c.metadata.deletion_timestamp.is_none())
    })
    .await;
    config_maps.delete("zk-config", &DeleteParams::default()).await.unwrap();
    wait_for(
        Duration::from_secs(60),
        "the operator to recreate the ConfigMap",
        || async { config_maps.get_opt("zk-config").await.unwrap().is_some() },
    )
    .await;
    let state = config_maps.get("zk-config").await.unwrap().data.unwrap()["ensemble-state"].clone();
    assert_eq!(
        state, "existing",
        "recreated during a quorum loss, the ensemble must still be existing"
    );
    drop(hold);
    ns.wait_settled("zk", 3).await;
    let (_, log) = ns.kubectl(&["logs", "zk-2"]);
    assert!(
        log.contains("will not vote until it has synced"),
        "zk-2 starts guarded:\n{log}"
    );
    finish(
        "ConfigMap deleted during a quorum loss, then a lost disk",
        workload,
        started,
        false,
    )
    .await;

    // (2) Deleted with its volumes kept, one volume lost, re-created.
    let workload = start_workload(&ns).await;
    let (report, missing) = workload.finish().await;
    assert!(missing.is_empty());
    let started = Instant::now();
    ns.clusters().delete("zk", &DeleteParams::foreground()).await.unwrap();
    wait_for(Duration::from_secs(120), "the cluster's pods to go", || async {
        ns.pod_uids("zk").await.is_empty() && clusters.get_opt("zk").await.unwrap().is_none()
    })
    .await;
    claims.delete("data-zk-1", &DeleteParams::default()).await.unwrap();
    wait_for(Duration::from_secs(60), "data-zk-1 to go", || async {
        claims.get_opt("data-zk-1").await.unwrap().is_none()
    })
    .await;
    ns.create_cluster("zk", keep).await.unwrap();
    wait_for(Duration::from_secs(60), "the new ConfigMap", || async {
        config_maps.get_opt("zk-config").await.unwrap().is_some()
    })
    .await;
    let state = config_maps.get("zk-config").await.unwrap().data.unwrap()["ensemble-state"].clone();
    assert_eq!(
        state, "existing",
        "re-created over kept volumes, the ensemble exists from the first start"
    );
    ns.wait_settled("zk", 3).await;
    let (_, log) = ns.kubectl(&["logs", "zk-1"]);
    assert!(
        log.contains("will not vote until it has synced"),
        "zk-1 starts guarded:\n{log}"
    );
    let missing_after = common::workload::missing_writes(&ns.endpoint("zk").await, &report).await;
    fault_row(
        "re-created over kept volumes, one volume missing",
        &report,
        missing_after.len(),
        started.elapsed(),
        "none",
    );
    assert!(
        missing_after.is_empty(),
        "writes acknowledged before the deletion are lost: {missing_after:?}"
    );
}
