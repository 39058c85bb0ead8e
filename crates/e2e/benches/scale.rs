//! What the operator costs as clusters grow, on the local cluster: ZooKeeperClusters of one
//! member each, first real ones (they run, 256 MiB each), then ones whose pods are never
//! scheduled (a node selector no node has: only the control plane and the operator work). At
//! each size, after the clusters settled:
//! - the operator's resident memory and CPU (its own zkop_process_* metrics);
//! - API requests per cluster per minute at rest, counted by the operator itself
//!   (zkop_kubernetes_requests_total; the leader Lease, which does not grow with clusters,
//!   apart), how many of them write, and how many write a cluster's status; reconciles per
//!   cluster per minute (zkop_reconciles_total). A never-scheduled cluster has a member down
//!   for the whole window: a status that changed with time alone would show here as a status
//!   write and a reconcile per pass;
//! - from a spec change (a new tickTime) to the operator's first action on it (the StatefulSet's
//!   template changed), p50 and p99 over every cluster.
//!
//! Then 3-member clusters whose roll stopped at a member that cannot start (a version with no
//! image): a member down for the whole window, beside the same clusters at rest in the first
//! rows. A status that changed with time alone (a wait's "for 40s") was rewritten on every pass,
//! each write starting the next pass: it shows as status writes and reconciles per minute.
//!
//! Rerun: make bench-scale   (cargo bench --profile dev --workspace --bench scale -- [real sizes]
//! [unscheduled sizes] [member-down sizes], e.g. `-- 1,10,30 100,300 1`; `-` for none)

#[path = "../tests/common/mod.rs"]
mod common;

use common::{client, operator_leader, operator_metrics, wait_for, TestNamespace};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zkop_api::ZooKeeperCluster;

const NAMESPACE: &str = "bench-scale";
const REST: Duration = Duration::from_secs(120);
const TEMPLATE_HASH: &str = "zookeeper.zkop.io/template-hash";

struct Row {
    what: String,
    clusters: usize,
    memory_mib: f64,
    cpu_share: f64,
    requests_per_cluster_minute: f64,
    writes_per_cluster_minute: f64,
    status_writes_per_cluster_minute: f64,
    reconciles_per_cluster_minute: f64,
    lease_per_minute: f64,
    first_action: (f64, f64),
}

fn sizes(arg: Option<&String>, default: &[usize]) -> Vec<usize> {
    arg.map(|a| a.split(',').filter_map(|n| n.parse().ok()).filter(|n| *n > 0).collect())
        .unwrap_or_else(|| default.to_vec())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a == "-" || !a.starts_with('-'))
        .collect();
    let real = sizes(args.first(), &[1, 10, 30]);
    let unscheduled = sizes(args.get(1), &[100, 300]);
    let down = sizes(args.get(2), &[1]);
    let client = client().await;
    let ns = TestNamespace::new(&client, NAMESPACE).await;
    let mut rows = Vec::new();

    let mut created = 0;
    for &n in &real {
        create(&ns, "r", created, n, true).await;
        created = n;
        wait_for(
            Duration::from_secs(900),
            &format!("{n} real clusters to be Available"),
            || async { available(&ns, "r-").await >= n },
        )
        .await;
        rows.push(measure(&ns, &client, "real (1 member, runs)", n, "r-").await);
    }
    delete_all(&ns, "r-").await;

    let mut created = 0;
    for &n in &unscheduled {
        create(&ns, "u", created, n, false).await;
        created = n;
        wait_for(
            Duration::from_secs(900),
            &format!("{n} unscheduled clusters to have a status"),
            || async { observed(&ns, "u-").await >= n },
        )
        .await;
        rows.push(measure(&ns, &client, "never scheduled (1 member)", n, "u-").await);
    }
    delete_all(&ns, "u-").await;

    let mut created = 0;
    for &n in &down {
        create_members(&ns, "d", created, n, 3).await;
        created = n;
        wait_for(
            Duration::from_secs(900),
            &format!("{n} 3-member clusters to be Available"),
            || async { available(&ns, "d-").await >= n },
        )
        .await;
        for i in 0..n {
            ns.patch_spec(&format!("d-{i}"), json!({"version": "3.9.99"}))
                .await
                .unwrap();
        }
        wait_for(
            Duration::from_secs(300),
            "a member of each to be down on the missing image",
            || async {
                list(&ns, "d-")
                    .await
                    .iter()
                    .filter(|zk| {
                        zk.status.as_ref().is_some_and(|s| {
                            s.members
                                .iter()
                                .any(|m| !m.ready && m.reason.as_deref().is_some_and(|r| r.contains("3.9.99")))
                        })
                    })
                    .count()
                    >= n
            },
        )
        .await;
        rows.push(
            measure(
                &ns,
                &client,
                "3 members, one down (no image: the roll stopped)",
                n,
                "d-",
            )
            .await,
        );
    }
    delete_all(&ns, "d-").await;

    println!();
    println!(
        "Operator cost on the local kind cluster (4 nodes, 2 cores), ZooKeeper {}, TLS on; at rest over {} s after the clusters settled",
        zkop_api::DEFAULT_VERSION,
        REST.as_secs()
    );
    println!("| clusters | kind | operator memory (RSS) | operator CPU | API requests / cluster / min at rest | of them writes | of them status writes | reconciles / cluster / min | leader Lease requests / min | spec change -> first action p50 / p99 |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.1} MiB | {:.1} % of a core | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} s / {:.2} s |",
            r.clusters,
            r.what,
            r.memory_mib,
            r.cpu_share * 100.0,
            r.requests_per_cluster_minute,
            r.writes_per_cluster_minute,
            r.status_writes_per_cluster_minute,
            r.reconciles_per_cluster_minute,
            r.lease_per_minute,
            r.first_action.0,
            r.first_action.1
        );
    }
    println!(
        "command: make bench-scale   (cargo bench --profile dev --workspace --bench scale -- {} {} {})",
        join(&real),
        join(&unscheduled),
        join(&down)
    );
}

fn join(sizes: &[usize]) -> String {
    if sizes.is_empty() {
        return "-".into();
    }
    sizes.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
}

fn spec(runs: bool) -> serde_json::Value {
    let mut spec = json!({
        "replicas": 1,
        "resources": {"requests": {"cpu": "10m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}},
        "storage": {"size": "64Mi", "retention": {"whenDeleted": "Delete"}},
        "config": {"tickTime": "2000"},
    });
    if !runs {
        spec["placement"] = json!({"nodeSelector": {"bench.zkop.io/no-such-node": "true"}});
    }
    spec
}

async fn create(ns: &TestNamespace, prefix: &str, from: usize, to: usize, runs: bool) {
    let clusters = ns.clusters();
    for i in from..to {
        let zk: ZooKeeperCluster = serde_json::from_value(json!({
            "apiVersion": "zookeeper.zkop.io/v1alpha1", "kind": "ZooKeeperCluster",
            "metadata": {"name": format!("{prefix}-{i}")}, "spec": spec(runs),
        }))
        .unwrap();
        clusters.create(&PostParams::default(), &zk).await.unwrap();
    }
}

/// Running clusters of `members` members each.
async fn create_members(ns: &TestNamespace, prefix: &str, from: usize, to: usize, members: i32) {
    let clusters = ns.clusters();
    for i in from..to {
        let mut spec = spec(true);
        spec["replicas"] = json!(members);
        let zk: ZooKeeperCluster = serde_json::from_value(json!({
            "apiVersion": "zookeeper.zkop.io/v1alpha1", "kind": "ZooKeeperCluster",
            "metadata": {"name": format!("{prefix}-{i}")}, "spec": spec,
        }))
        .unwrap();
        clusters.create(&PostParams::default(), &zk).await.unwrap();
    }
}

async fn list(ns: &TestNamespace, prefix: &str) -> Vec<ZooKeeperCluster> {
    ns.clusters()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|zk| zk.name_any().starts_with(prefix))
        .collect()
}

async fn available(ns: &TestNamespace, prefix: &str) -> usize {
    list(ns, prefix)
        .await
        .iter()
        .filter(|zk| common::fully_available(zk))
        .count()
}

async fn observed(ns: &TestNamespace, prefix: &str) -> usize {
    list(ns, prefix)
        .await
        .iter()
        .filter(|zk| zk.status.as_ref().and_then(|s| s.observed_generation) == zk.metadata.generation)
        .count()
}

async fn delete_all(ns: &TestNamespace, prefix: &str) {
    for zk in list(ns, prefix).await {
        let _ = ns.clusters().delete(&zk.name_any(), &DeleteParams::default()).await;
    }
    wait_for(Duration::from_secs(600), "the clusters to go away", || async {
        list(ns, prefix).await.is_empty()
    })
    .await;
}

/// The operator leader's metrics: `name{labels} value` lines of the families we read.
fn samples(pod: &str) -> Vec<(String, f64)> {
    operator_metrics(pod)
        .lines()
        .filter(|l| {
            l.starts_with("zkop_kubernetes_requests_total")
                || l.starts_with("zkop_process_")
                || l.starts_with("zkop_reconciles_total")
        })
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sum(samples: &[(String, f64)], filter: impl Fn(&str) -> bool) -> f64 {
    samples.iter().filter(|(n, _)| filter(n)).map(|(_, v)| v).sum()
}

async fn measure(ns: &TestNamespace, client: &kube::Client, what: &str, n: usize, prefix: &str) -> Row {
    // Let creation settle, then count over the window.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let leader = operator_leader(client).await.expect("an operator leader");
    let before = samples(&leader);
    let started = Instant::now();
    tokio::time::sleep(REST).await;
    let after = samples(&leader);
    assert_eq!(
        operator_leader(client).await.as_deref(),
        Some(leader.as_str()),
        "the operator leader changed during the measurement"
    );
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let delta = |filter: &dyn Fn(&str) -> bool| sum(&after, filter) - sum(&before, filter);
    let is_request = |n: &str| n.starts_with("zkop_kubernetes_requests_total") && n.contains("watch=\"false\"");
    let lease = |n: &str| n.contains("resource=\"leases\"");
    let write = |n: &str| !n.contains("method=\"GET\"");
    let requests = delta(&|n| is_request(n) && !lease(n));
    let writes = delta(&|n| is_request(n) && !lease(n) && write(n));
    let leases = delta(&|n| is_request(n) && lease(n));
    let status_writes = delta(&|n| is_request(n) && n.contains("resource=\"zookeeperclusters\"") && write(n));
    let reconciles = delta(&|n| n == "zkop_reconciles_total");
    let cpu = delta(&|n| n == "zkop_process_cpu_seconds");
    let memory = sum(&after, |n| n == "zkop_process_resident_memory_bytes");
    let first_action = first_action(ns, prefix).await;
    eprintln!("{n} {what}: measured");
    Row {
        what: what.to_string(),
        clusters: n,
        memory_mib: memory / 1024.0 / 1024.0,
        cpu_share: cpu / started.elapsed().as_secs_f64(),
        requests_per_cluster_minute: requests / minutes / n as f64,
        writes_per_cluster_minute: writes / minutes / n as f64,
        status_writes_per_cluster_minute: status_writes / minutes / n as f64,
        reconciles_per_cluster_minute: reconciles / minutes / n as f64,
        lease_per_minute: leases / minutes,
        first_action,
    }
}

/// Changes every cluster's tickTime and times, per cluster, until its StatefulSet's template
/// changed: (p50, p99) in seconds.
async fn first_action(ns: &TestNamespace, prefix: &str) -> (f64, f64) {
    let statefulsets: Api<StatefulSet> = ns.api();
    let hashes: HashMap<String, String> = statefulsets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|s| s.name_any().starts_with(prefix))
        .map(|s| {
            (
                s.name_any(),
                s.annotations().get(TEMPLATE_HASH).cloned().unwrap_or_default(),
            )
        })
        .collect();
    let changed: Arc<Mutex<BTreeMap<String, Instant>>> = Arc::default();
    let watch = {
        let changed = changed.clone();
        let hashes = hashes.clone();
        let stream = watcher(statefulsets, watcher::Config::default()).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(sts)) = stream.next().await {
                let name = sts.name_any();
                let hash = sts.annotations().get(TEMPLATE_HASH).cloned().unwrap_or_default();
                if hashes.get(&name).is_some_and(|old| *old != hash) {
                    changed.lock().unwrap().entry(name).or_insert_with(Instant::now);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A tickTime no earlier round used: every cluster's template changes.
    static ROUND: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    let tick = (2000 + 100 * ROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed)).to_string();
    let mut patched = BTreeMap::new();
    for name in hashes.keys() {
        patched.insert(name.clone(), Instant::now());
        ns.patch_spec(name, json!({"config": {"tickTime": tick}}))
            .await
            .unwrap();
    }
    wait_for(
        Duration::from_secs(600),
        "every StatefulSet to take the change",
        || async { changed.lock().unwrap().len() >= hashes.len() },
    )
    .await;
    watch.abort();
    let changed = changed.lock().unwrap();
    let mut latencies: Vec<f64> = patched
        .iter()
        .filter_map(|(name, at)| Some(changed.get(name)?.saturating_duration_since(*at).as_secs_f64()))
        .collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}
