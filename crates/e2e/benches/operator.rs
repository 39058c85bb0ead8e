//! On the local cluster, side by side in one run:
//! - the operator: apply a 3-member ZooKeeperCluster;
//! - the seed's approach: a plain StatefulSet (OrderedReady, a static server list in zoo.cfg,
//!   readiness = the JVM answers `ruok`), same image, same resources.
//!
//! It measures the time from apply to all three members serving in a quorum, and from deleting a
//! member's pod to that member serving in the quorum again. "Serving" is checked the same way for
//! both: `srvr` inside each pod (`kubectl exec ... zk-agent probe ready`).
//!
//! For the operator it also prints where the time from apply to Available goes, phase by phase,
//! for the member that served last: from the API objects' timestamps (pod, scheduling, volume,
//! container, readiness, the Available condition; whole seconds) and the member's log lines
//! (`kubectl logs --timestamps`: zk-agent's DNS wait and configuration, ZooKeeper's first
//! broadcast).
//!
//! Rerun: make bench   (cargo bench --profile dev --workspace --bench operator -- [rounds])

#[path = "../tests/common/mod.rs"]
mod common;

use common::{client, TestNamespace};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use kube::ResourceExt;
use std::process::Command;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(600);

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2);
    let client = client().await;
    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("operator (ZooKeeperCluster)", vec![], vec![]),
        ("plain StatefulSet, OrderedReady (seed)", vec![], vec![]),
    ];
    let mut available_condition = Vec::new();
    let mut bare_return = Vec::new();
    let mut phases: Vec<Vec<(&'static str, f64)>> = Vec::new();
    for round in 0..rounds {
        let (start, restart, condition, round_phases) = operator_round(&client, round).await;
        phases.push(round_phases);
        rows[0].1.push(start);
        rows[0].2.push(restart);
        available_condition.push(condition);
        let (start, restart, bare) = statefulset_round(&client, round).await;
        bare_return.push(bare);
        rows[1].1.push(start);
        rows[1].2.push(restart);
        eprintln!(
            "round {}: operator {start_op:.1}s / {restart_op:.1}s, StatefulSet {start:.1}s / {restart:.1}s",
            round + 1,
            start_op = rows[0].1[round],
            restart_op = rows[0].2[round]
        );
    }
    println!();
    println!(
        "3-member ensemble on the local kind cluster (4 nodes), ZooKeeper {}, {rounds} rounds each, alternating; median (min-max) in seconds",
        zkop_api::DEFAULT_VERSION
    );
    println!(
        "| approach                               | apply -> 3 members serving | pod deleted -> member serving again |"
    );
    println!(
        "|----------------------------------------|----------------------------|-------------------------------------|"
    );
    for (name, start, restart) in &rows {
        println!("| {name:<38} | {:<26} | {:<35} |", summary(start), summary(restart));
    }
    println!(
        "| bare floor: a member's JVM killed (kill -9), restarted in place | | {:<35} |",
        summary(&bare_return)
    );
    println!(
        "operator's own Available condition became True after: {} s",
        summary(&available_condition)
    );
    println!(
        "ratio apply->serving operator / StatefulSet (medians): {:.2} (goal: at most 0.5)",
        median(&rows[0].1) / median(&rows[1].1)
    );
    println!();
    println!("Where apply -> Available goes (operator), for the member that served last; median of {rounds} rounds, seconds from the previous phase");
    println!("| phase | median (min-max) |");
    println!("|---|---|");
    if let Some(first) = phases.first() {
        for (i, (name, _)) in first.iter().enumerate() {
            let samples: Vec<f64> = phases.iter().filter_map(|p| p.get(i).map(|(_, s)| *s)).collect();
            println!("| {name} | {} |", summary(&samples));
        }
    }
    println!("command: make bench   (cargo bench --profile dev --workspace --bench operator -- {rounds})");
}

/// The timestamps of one member's way from nothing to serving.
async fn member_phases(ns: &TestNamespace, pod_name: &str) -> Vec<(&'static str, Option<Timestamp>)> {
    let pods: Api<Pod> = ns.api();
    let pod = pods.get(pod_name).await.unwrap();
    let status = pod.status.clone().unwrap_or_default();
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0)
    };
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let volume = claims
        .get_opt(&format!("data-{pod_name}"))
        .await
        .unwrap()
        .and_then(|c| c.spec?.volume_name);
    let provisioned = match volume {
        Some(name) => Api::<PersistentVolume>::all(client().await)
            .get_opt(&name)
            .await
            .unwrap()
            .and_then(|pv| pv.metadata.creation_timestamp.map(|t| t.0)),
        None => None,
    };
    let started = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "zookeeper")
        .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.as_ref())
        .map(|t| t.0);
    let (_, logs) = ns.kubectl(&["logs", pod_name, "-c", "zookeeper", "--timestamps"]);
    let logged = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .and_then(|l| l.split_whitespace().next()?.parse::<Timestamp>().ok())
    };
    vec![
        (
            "pod created (operator, StatefulSet controller)",
            pod.metadata.creation_timestamp.map(|t| t.0),
        ),
        ("scheduled (scheduler)", condition("PodScheduled")),
        ("volume provisioned (local-path)", provisioned),
        ("container started (kubelet: mount, container)", started),
        (
            "DNS: own name and a quorum of peers resolve (zk-agent)",
            logged("DNS: this member's name"),
        ),
        ("configured, JVM started (zk-agent)", logged("configured from")),
        (
            "serving: first broadcast (JVM start, election, sync)",
            logged("- broadcast"),
        ),
        ("pod Ready (readiness probe)", condition("Ready")),
    ]
}

async fn operator_round(client: &kube::Client, round: usize) -> (f64, f64, f64, Vec<(&'static str, f64)>) {
    let ns = TestNamespace::new(client, &format!("bench-operator-{round}")).await;
    let started = Instant::now();
    let applied = Timestamp::now();
    ns.create_cluster("zk", common::small_cluster(3, zkop_api::DEFAULT_VERSION))
        .await
        .unwrap();
    let mut condition = None;
    loop {
        if condition.is_none()
            && ns
                .clusters()
                .get("zk")
                .await
                .ok()
                .is_some_and(|zk| common::condition(&zk, "Available").is_some_and(|c| c.status == "True"))
        {
            condition = Some(started.elapsed().as_secs_f64());
        }
        if all_serving(&ns, "zk") {
            break;
        }
        assert!(started.elapsed() < TIMEOUT, "operator cluster never served");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let start = started.elapsed().as_secs_f64();
    let condition = match condition {
        Some(c) => c,
        None => {
            ns.wait_available("zk", TIMEOUT).await;
            started.elapsed().as_secs_f64()
        }
    };
    // Phases, before the pod is deleted: for the member whose pod became Ready last.
    let mut members = Vec::new();
    for i in 0..3 {
        members.push(member_phases(&ns, &format!("zk-{i}")).await);
    }
    let last = members
        .iter()
        .max_by_key(|m| m.last().and_then(|(_, t)| *t))
        .cloned()
        .unwrap_or_default();
    let available_at = applied.as_millisecond() as f64 / 1000.0 + condition;
    let mut round_phases = Vec::new();
    let mut previous = applied.as_millisecond() as f64 / 1000.0;
    for (name, at) in last {
        let at = at.map_or(previous, |t| t.as_millisecond() as f64 / 1000.0);
        round_phases.push((name, (at - previous).max(0.0)));
        previous = previous.max(at);
    }
    round_phases.push(("Available (the operator noticed)", (available_at - previous).max(0.0)));
    let restart = delete_and_time_return(&ns, "zk-0").await;
    (start, restart, condition, round_phases)
}

async fn statefulset_round(client: &kube::Client, round: usize) -> (f64, f64, f64) {
    let ns = TestNamespace::new(client, &format!("bench-statefulset-{round}")).await;
    let started = Instant::now();
    let (ok, out) = ns.kubectl_stdin(&["apply", "-f", "-"], &common::seed_statefulset(&ns.name));
    assert!(ok, "{out}");
    while !all_serving(&ns, "seed") {
        assert!(started.elapsed() < TIMEOUT, "seed StatefulSet never served");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let start = started.elapsed().as_secs_f64();
    let restart = delete_and_time_return(&ns, "seed-0").await;
    // The bare floor of a member's return: its JVM killed, restarted in place (no scheduling,
    // no volume, no DNS change), until it serves again.
    let started = Instant::now();
    ns.kill_jvm("seed-1").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    while !serving(&ns, "seed-1") {
        assert!(started.elapsed() < TIMEOUT, "seed-1 never came back");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    (start, restart, started.elapsed().as_secs_f64())
}

/// Deletes the pod and times until its successor serves in the quorum.
async fn delete_and_time_return(ns: &TestNamespace, pod: &str) -> f64 {
    let pods: Api<Pod> = ns.api();
    let old = pods.get(pod).await.unwrap().uid();
    let started = Instant::now();
    pods.delete(pod, &DeleteParams::default()).await.unwrap();
    loop {
        let current = pods.get_opt(pod).await.unwrap().and_then(|p| p.uid());
        if current.is_some() && current != old && serving(ns, pod) {
            return started.elapsed().as_secs_f64();
        }
        assert!(started.elapsed() < TIMEOUT, "{pod} never came back");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn all_serving(ns: &TestNamespace, statefulset: &str) -> bool {
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let ns_name = ns.name.clone();
            let pod = format!("{statefulset}-{i}");
            std::thread::spawn(move || serving_in(&ns_name, &pod))
        })
        .collect();
    handles.into_iter().all(|h| h.join().unwrap_or(false))
}

fn serving(ns: &TestNamespace, pod: &str) -> bool {
    serving_in(&ns.name, pod)
}

fn serving_in(namespace: &str, pod: &str) -> bool {
    Command::new("kubectl")
        .args(["-n", namespace, "exec", pod, "--", "zk-agent", "probe", "ready"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    }
}

fn summary(samples: &[f64]) -> String {
    let min = samples.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = samples.iter().cloned().fold(0.0, f64::max);
    format!("{:.1} ({min:.1}-{max:.1})", median(samples))
}
