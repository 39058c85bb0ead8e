//! The operator's own metrics and health, served on one port: `/metrics` (Prometheus text),
//! `/healthz` (the process runs) and `/readyz` (it can reach the API server).

use crate::error::Stage;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// GET, POST, PATCH, PUT or DELETE.
    pub method: String,
    /// A watch (a long-lived GET), or a single request.
    pub watch: String,
    /// The kind of object, as the API path names it (statefulsets, pods, leases, ...).
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterLabels {
    pub namespace: String,
    pub cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub namespace: String,
    pub cluster: String,
    /// The member's pod name.
    pub member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub namespace: String,
    pub cluster: String,
    pub operation: String,
}

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<StageLabel, Counter>,
    pub duration: Histogram,
    /// 1 for each cluster's day-2 operation in progress, 0 for every other kind.
    pub operation: Family<OperationLabels, Gauge>,
    /// 1 for each member that serves in a quorum, 0 for one the cluster should have that does not.
    pub member_serving: Family<MemberLabels, Gauge>,
    /// Members of a cluster that have not served for longer than its rollout timeout.
    pub stuck_members: Family<ClusterLabels, Gauge>,
    /// 1 while a cluster's last reconcile failed.
    pub failing: Family<ClusterLabels, Gauge>,
    /// 1 on the replica that holds the leader Lease.
    pub leader: Gauge,
    /// Requests the operator sent to the Kubernetes API server.
    pub api_requests: Family<RequestLabels, Counter>,
    /// The process's resident memory and CPU time, read from /proc when scraped.
    resident_memory: Gauge,
    cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Backups, per cluster with spec.backup: when the last one succeeded (Unix seconds), how
    /// long it took, its size, whether the last attempt failed, failures seen, and the schedule's
    /// interval (0 without a schedule), for the backup-age alert.
    pub backup_last_success: Family<ClusterLabels, Gauge>,
    pub backup_last_duration: Family<ClusterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub backup_last_size: Family<ClusterLabels, Gauge>,
    pub backup_last_failed: Family<ClusterLabels, Gauge>,
    pub backup_failures: Family<ClusterLabels, Counter>,
    pub backup_interval: Family<ClusterLabels, Gauge>,
    /// The API server answered recently (for `/readyz`).
    pub api_reachable: AtomicBool,
    /// The members each cluster's `member_serving` holds, so that removed ones can be dropped.
    members_known: Mutex<HashMap<(String, String), BTreeSet<String>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("zkop");
        let reconciles = Counter::default();
        let failures = Family::<StageLabel, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.01, 2.0, 12));
        let operation = Family::<OperationLabels, Gauge>::default();
        let member_serving = Family::<MemberLabels, Gauge>::default();
        let stuck_members = Family::<ClusterLabels, Gauge>::default();
        let failing = Family::<ClusterLabels, Gauge>::default();
        let leader = Gauge::default();
        let api_requests = Family::<RequestLabels, Counter>::default();
        let resident_memory = Gauge::default();
        let cpu_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "kubernetes_requests",
            "Requests sent to the Kubernetes API server, by method, watches apart",
            api_requests.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of the operator process",
            resident_memory.clone(),
        );
        registry.register(
            "process_cpu_seconds",
            "CPU time the operator process has used (user and system)",
            cpu_seconds.clone(),
        );
        registry.register("reconciles", "Reconciles of ZooKeeperClusters", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by the stage that failed",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a reconcile took",
            duration.clone(),
        );
        registry.register(
            "cluster_operation",
            "The day-2 operation a cluster is in (1 while it lasts)",
            operation.clone(),
        );
        registry.register(
            "member_serving",
            "1 while the member serves in a quorum (leader, follower or observer), 0 while a member the cluster should have does not",
            member_serving.clone(),
        );
        registry.register(
            "cluster_stuck_members",
            "Members that have not served for longer than the cluster's rollout timeout",
            stuck_members.clone(),
        );
        registry.register(
            "cluster_reconcile_failing",
            "1 while the cluster's last reconcile failed",
            failing.clone(),
        );
        registry.register(
            "leader",
            "1 on the operator replica that holds the leader Lease",
            leader.clone(),
        );
        let backup_last_success = Family::<ClusterLabels, Gauge>::default();
        let backup_last_duration = Family::<ClusterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let backup_last_size = Family::<ClusterLabels, Gauge>::default();
        let backup_last_failed = Family::<ClusterLabels, Gauge>::default();
        let backup_failures = Family::<ClusterLabels, Counter>::default();
        let backup_interval = Family::<ClusterLabels, Gauge>::default();
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When the cluster's last successful backup was taken (Unix time; 0 before the first)",
            backup_last_success.clone(),
        );
        registry.register(
            "backup_last_duration_seconds",
            "How long the cluster's last successful backup took",
            backup_last_duration.clone(),
        );
        registry.register(
            "backup_last_size_bytes",
            "Compressed size of the cluster's last successful backup",
            backup_last_size.clone(),
        );
        registry.register(
            "backup_last_failed",
            "1 while the cluster's last backup attempt failed",
            backup_last_failed.clone(),
        );
        registry.register("backup_failures", "Backups that failed", backup_failures.clone());
        registry.register(
            "backup_interval_seconds",
            "Seconds between the cluster's scheduled backups (0 without a schedule)",
            backup_interval.clone(),
        );
        // Every stage's failure counter exists from the start, so that a rate over it is 0, not
        // absent, until something fails.
        for stage in Stage::ALL {
            drop(failures.get_or_create(&StageLabel {
                stage: stage.as_str().into(),
            }));
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            operation,
            member_serving,
            stuck_members,
            failing,
            leader,
            api_requests,
            resident_memory,
            cpu_seconds,
            backup_last_success,
            backup_last_duration,
            backup_last_size,
            backup_last_failed,
            backup_failures,
            backup_interval,
            api_reachable: AtomicBool::new(false),
            members_known: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn failed(&self, stage: Stage) {
        self.failures
            .get_or_create(&StageLabel {
                stage: stage.as_str().into(),
            })
            .inc();
    }

    /// Records a cluster's current operation: 1 for it, 0 for every other kind.
    pub fn set_operation(&self, namespace: &str, cluster: &str, operation: Option<&str>) {
        for kind in crate::planner::OPERATIONS {
            let labels = OperationLabels {
                namespace: namespace.into(),
                cluster: cluster.into(),
                operation: kind.into(),
            };
            self.operation
                .get_or_create(&labels)
                .set(i64::from(operation == Some(kind)));
        }
    }

    /// Records which of a cluster's members serve, forgetting members it no longer has.
    pub fn set_members(&self, namespace: &str, cluster: &str, members: &[(String, bool)]) {
        let labels = |member: &str| MemberLabels {
            namespace: namespace.into(),
            cluster: cluster.into(),
            member: member.into(),
        };
        self.forget_members(namespace, cluster, |member| !members.iter().any(|(m, _)| m == member));
        let mut known = self.members_known.lock().unwrap_or_else(|e| e.into_inner());
        let recorded = known.entry((namespace.to_string(), cluster.to_string())).or_default();
        for (member, serving) in members {
            self.member_serving
                .get_or_create(&labels(member))
                .set(i64::from(*serving));
            recorded.insert(member.clone());
        }
    }

    fn forget_members(&self, namespace: &str, cluster: &str, forget: impl Fn(&str) -> bool) {
        let key = (namespace.to_string(), cluster.to_string());
        let mut known = self.members_known.lock().unwrap_or_else(|e| e.into_inner());
        let members = known.entry(key).or_default();
        members.retain(|member| {
            if forget(member) {
                self.member_serving.remove(&MemberLabels {
                    namespace: namespace.into(),
                    cluster: cluster.into(),
                    member: member.clone(),
                });
                false
            } else {
                true
            }
        });
    }

    /// Records a cluster's backups (`None`: backups are off, and the series go).
    pub fn set_backup(
        &self,
        namespace: &str,
        cluster: &str,
        backup: Option<(&zkop_api::BackupStatus, i64)>,
        new_failures: u64,
    ) {
        let labels = ClusterLabels {
            namespace: namespace.into(),
            cluster: cluster.into(),
        };
        let Some((status, interval)) = backup else {
            self.forget_backup(&labels);
            return;
        };
        let success = status.last_successful.as_ref();
        let time = success
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(&s.time).ok())
            .map_or(0, |t| t.timestamp());
        self.backup_last_success.get_or_create(&labels).set(time);
        self.backup_last_duration
            .get_or_create(&labels)
            .set(success.map_or(0.0, |s| s.duration_seconds));
        self.backup_last_size
            .get_or_create(&labels)
            .set(success.map_or(0, |s| i64::try_from(s.size_bytes).unwrap_or(i64::MAX)));
        let failed_last = status.last_failure.as_ref().is_some_and(|f| {
            success.is_none_or(|s| {
                chrono::DateTime::parse_from_rfc3339(&f.time).ok() > chrono::DateTime::parse_from_rfc3339(&s.time).ok()
            })
        });
        self.backup_last_failed
            .get_or_create(&labels)
            .set(i64::from(failed_last));
        self.backup_failures.get_or_create(&labels).inc_by(new_failures);
        self.backup_interval.get_or_create(&labels).set(interval);
    }

    fn forget_backup(&self, labels: &ClusterLabels) {
        self.backup_last_success.remove(labels);
        self.backup_last_duration.remove(labels);
        self.backup_last_size.remove(labels);
        self.backup_last_failed.remove(labels);
        self.backup_failures.remove(labels);
        self.backup_interval.remove(labels);
    }

    /// Forgets a deleted cluster.
    pub fn forget(&self, namespace: &str, cluster: &str) {
        self.forget_backup(&ClusterLabels {
            namespace: namespace.into(),
            cluster: cluster.into(),
        });
        for kind in crate::planner::OPERATIONS {
            self.operation.remove(&OperationLabels {
                namespace: namespace.into(),
                cluster: cluster.into(),
                operation: kind.into(),
            });
        }
        self.forget_members(namespace, cluster, |_| true);
        let labels = ClusterLabels {
            namespace: namespace.into(),
            cluster: cluster.into(),
        };
        self.stuck_members.remove(&labels);
        self.failing.remove(&labels);
    }

    /// Counts a request to the API server.
    pub fn api_request(&self, method: &str, path: &str, query: Option<&str>) {
        let watch = query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
        self.api_requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                watch: watch.to_string(),
                resource: resource_of(path).to_string(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        if let Some((resident, cpu)) = process_usage() {
            self.resident_memory.set(i64::try_from(resident).unwrap_or(i64::MAX));
            self.cpu_seconds.set(cpu);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String");
        text
    }
}

/// The resource an API path addresses: `/api/v1/namespaces/ns/pods/p` and `/apis/apps/v1/statefulsets`
/// name `pods` and `statefulsets`.
pub fn resource_of(path: &str) -> &str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.first() {
        Some(&"api") => &segments[segments.len().min(2)..],
        Some(&"apis") => &segments[segments.len().min(3)..],
        _ => return "other",
    };
    match rest {
        ["namespaces", _, resource, ..] => resource,
        [resource, ..] => resource,
        [] => "discovery",
    }
}

/// Resident bytes and CPU seconds of this process, from /proc (Linux; pages of 4 KiB and 100
/// clock ticks a second, as on every Linux the operator runs on).
fn process_usage() -> Option<(u64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((resident_pages * 4096, ticks as f64 / 100.0))
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `address` until the process ends.
pub async fn serve(address: std::net::SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(%address, "serving /metrics, /healthz and /readyz");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting a metrics connection");
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(request, metrics.clone()));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, "metrics connection");
            }
        });
    }
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    metrics: Arc<Metrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" if metrics.api_reachable.load(Ordering::Relaxed) => {
            (StatusCode::OK, "text/plain", "ok\n".to_string())
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "the API server has not answered yet\n".to_string(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_string()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exported_with_the_cluster_and_stage() {
        let metrics = Metrics::default();
        metrics.reconciles.inc();
        metrics.failed(Stage::Apply);
        metrics.set_operation("prod", "zk", Some("RollingRestart"));
        let text = metrics.encode();
        assert!(text.contains("zkop_reconciles_total 1"), "{text}");
        assert!(
            text.contains("zkop_reconcile_failures_total{stage=\"apply\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("zkop_cluster_operation{namespace=\"prod\",cluster=\"zk\",operation=\"RollingRestart\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("zkop_cluster_operation{namespace=\"prod\",cluster=\"zk\",operation=\"ScaleUp\"} 0"),
            "every other kind is 0: {text}"
        );
        assert!(
            text.contains("zkop_reconcile_failures_total{stage=\"observe\"} 0"),
            "stages that never failed count 0: {text}"
        );
        metrics.set_members("prod", "zk", &[("zk-0".into(), true), ("zk-1".into(), false)]);
        let text = metrics.encode();
        assert!(
            text.contains("zkop_member_serving{namespace=\"prod\",cluster=\"zk\",member=\"zk-1\"} 0"),
            "{text}"
        );
        metrics.set_members("prod", "zk", &[("zk-0".into(), true)]);
        assert!(
            !metrics.encode().contains("member=\"zk-1\""),
            "a member scaled away is forgotten"
        );
        metrics.api_request("GET", "/api/v1/pods", Some("labelSelector=a&watch=true"));
        metrics.api_request("PATCH", "/apis/apps/v1/namespaces/prod/statefulsets/zk", None);
        let text = metrics.encode();
        assert!(
            text.contains("zkop_kubernetes_requests_total{method=\"GET\",watch=\"true\",resource=\"pods\"} 1"),
            "{text}"
        );
        assert!(text.contains("resource=\"statefulsets\"} 1"), "{text}");
        assert_eq!(
            resource_of("/apis/coordination.k8s.io/v1/namespaces/zkop-system/leases/zookeeper-operator"),
            "leases"
        );
        assert_eq!(
            resource_of("/apis/zookeeper.zkop.io/v1alpha1/namespaces/p/zookeeperclusters/zk/status"),
            "zookeeperclusters"
        );
        assert_eq!(resource_of("/api/v1/namespaces/p/events"), "events");
        assert_eq!(resource_of("/version"), "other");
        assert!(text.contains("zkop_process_resident_memory_bytes "), "{text}");
        metrics.set_operation("prod", "zk", Some("ScaleUp"));
        metrics.forget("prod", "zk");
        assert!(!metrics.encode().contains("cluster=\"zk\""));
    }
}
