//! Monitoring on the local cluster. A real Prometheus (`make prometheus`, built from its Go
//! module) scrapes the members and the operator through Kubernetes service discovery and loads
//! the alert rules the chart ships. Every dashboard query and every alert rule is checked
//! against it while an ensemble runs; then a member is stopped: the member-down and
//! quorum-at-risk alerts must fire within their `for` periods (and not before the member is
//! down), and clear once it is back, while a client workload loses no acknowledged write.

mod common;

use common::workload::Workload;
use common::{client, node_ips, wait_for, TestNamespace};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The NodePort of the local cluster's Prometheus (cluster/prometheus.sh).
const PROMETHEUS_NODE_PORT: u16 = 30080;
/// Metrics only the kubelet exports, for volumes whose plugin reports statistics: the local
/// cluster's local-path volumes are hostPath volumes, which report none, so
/// ZooKeeperDiskNearFull is checked by its unit tests only.
const KUBELET_VOLUME_METRICS: &[&str] = &[
    "kubelet_volume_stats_available_bytes",
    "kubelet_volume_stats_capacity_bytes",
];
const PROMETHEUS_NAMESPACE: &str = "monitoring";

fn repo_file(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// Prometheus' HTTP API, through its NodePort.
struct Prometheus {
    base: String,
}

impl Prometheus {
    async fn find() -> Prometheus {
        let ip = node_ips(&client().await).await.into_iter().next().expect("a node");
        let prometheus = Prometheus {
            base: format!("http://{ip}:{PROMETHEUS_NODE_PORT}"),
        };
        let ready = Command::new("curl")
            .args(["-sf", "--max-time", "5", &format!("{}/-/ready", prometheus.base)])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ready,
            "Prometheus does not answer at {} (make prometheus installs it)",
            prometheus.base
        );
        prometheus
    }

    fn get(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "20", "-G", &format!("{}{path}", self.base)]);
        for (key, value) in params {
            command.args(["--data-urlencode", &format!("{key}={value}")]);
        }
        let output = command.output().expect("curl");
        let body: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "Prometheus {path} {params:?}: not JSON ({e}): {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        assert_eq!(body["status"], "success", "Prometheus {path} {params:?}: {body}");
        body["data"].clone()
    }

    /// An instant query's result vector.
    fn query(&self, query: &str) -> Vec<Value> {
        let data = self.get("/api/v1/query", &[("query", query)]);
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Alerts pending or firing, as (name, state, labels).
    fn alerts(&self) -> Vec<(String, String, Value)> {
        let data = self.get("/api/v1/alerts", &[]);
        data["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or_default().to_string(),
                    a["state"].as_str().unwrap_or_default().to_string(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }

    /// The alert in the namespace `namespace`, if pending or firing: its state.
    fn alert_state(&self, name: &str, namespace: &str, extra: Option<(&str, &str)>) -> Option<String> {
        self.alerts()
            .into_iter()
            .find(|(n, _, labels)| {
                n == name && labels["namespace"] == namespace && extra.is_none_or(|(key, value)| labels[key] == value)
            })
            .map(|(_, state, _)| state)
    }
}

/// The metric names a PromQL expression reads: identifiers that are not functions, keywords,
/// label names in a grouping, or inside strings, label matchers and ranges.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];
    const GROUPINGS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    // Blank out strings, {label matchers} and [ranges].
    let mut plain = String::new();
    let (mut quote, mut braces, mut brackets) = (None, 0, 0);
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'' | '`') => quote = Some(c),
            (None, '{') => braces += 1,
            (None, '}') => braces -= 1,
            (None, '[') => brackets += 1,
            (None, ']') => brackets -= 1,
            (None, c) if braces == 0 && brackets == 0 => plain.push(c),
            _ => {}
        }
        if quote.is_some() || braces > 0 || brackets > 0 {
            plain.push(' ');
        }
    }
    let chars: Vec<char> = plain.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next] == ' ' {
                next += 1;
            }
            // A function call, or an aggregation with its grouping first: `max by (l) (x)`.
            let rest: String = chars[next..].iter().take(8).collect();
            let call = (next < chars.len() && chars[next] == '(')
                || (!GROUPINGS.contains(&word.as_str())
                    && ["by ", "by(", "without ", "without("]
                        .iter()
                        .any(|g| rest.starts_with(g)));
            if GROUPINGS.contains(&word.as_str()) && call {
                // Skip the label list.
                while next < chars.len() && chars[next] != ')' {
                    next += 1;
                }
                i = next + 1;
            } else if !call && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
        } else if c.is_ascii_digit() || c == '.' {
            // A number (or a duration such as 5m, or 1e3): not a name.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_read_from_expressions() {
    let names = metric_names(
        r#"max by (namespace, cluster) (synced_followers{job="zookeeper"}) + 1
           <= on (namespace, cluster) floor(max by (namespace, cluster) (quorum_size{job="x"}) / 2) + 1
           and on (namespace, cluster) rate(fsynctime_sum[5m]) > 1e3 unless absent(zkop_leader == 1)"#,
    );
    let expected: BTreeSet<String> = ["synced_followers", "quorum_size", "fsynctime_sum", "zkop_leader"]
        .map(String::from)
        .into();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_alerts_fire_and_the_dashboard_has_data() {
    let prometheus = Prometheus::find().await;
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-observability").await;
    let mut spec = common::small_cluster(3, zkop_api::DEFAULT_VERSION);
    spec["access"]["metrics"] = json!([{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": PROMETHEUS_NAMESPACE}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }]);
    // Backups declared (on demand only, never requested): the operator exports the backup
    // metrics the backup alerts read, whatever test ran before this one.
    spec["backup"] = json!({"target": {"persistentVolumeClaim": {"claimName": "backups"}}});
    ns.create_cluster("zk", spec).await.unwrap();
    ns.wait_settled("zk", 3).await;
    let workload = Workload::start(&ns.endpoint("zk").await).await;

    // Scraped through service discovery: every member, and the operator naming every member.
    let members = format!(r#"up{{job="zookeeper", namespace="{}", cluster="zk"}} == 1"#, ns.name);
    let serving = format!(
        r#"zkop_member_serving{{job="zookeeper-operator", namespace="{}"}} == 1"#,
        ns.name
    );
    wait_for(
        Duration::from_secs(120),
        "Prometheus to scrape the three members and the operator",
        || async { prometheus.query(&members).len() == 3 && prometheus.query(&serving).len() == 3 },
    )
    .await;
    // Every dashboard query returns series for this ensemble (rates once they have two samples).
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("deploy/chart/files/zookeeper-dashboard.json")).unwrap(),
    )
    .unwrap();
    let substitute = |expr: &str| {
        expr.replace("$namespace", &ns.name)
            .replace("$cluster", "zk")
            .replace("$__rate_interval", "1m")
    };
    let panel_queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .map(|target| substitute(target["expr"].as_str().unwrap()))
        .collect();
    // Up to 90 s; then the checks below name the panel that has none.
    let asked = Instant::now();
    while asked.elapsed() < Duration::from_secs(90)
        && panel_queries.iter().any(|expr| prometheus.query(expr).is_empty())
    {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    eprintln!(
        "{} waited {:.1} s for every dashboard query to return series",
        common::clock(),
        asked.elapsed().as_secs_f64()
    );
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = substitute(target["expr"].as_str().unwrap());
            let result = prometheus.query(&expr);
            assert!(
                !result.is_empty(),
                "dashboard panel {:?}: no series for {expr}",
                panel["title"]
            );
            checked += 1;
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(definition) = variable["definition"].as_str() {
            // label_values(<selector>, <label>): the selector has series carrying the label.
            let inner = definition.trim_start_matches("label_values(").trim_end_matches(')');
            let (selector, label) = inner.rsplit_once(',').unwrap();
            let result = prometheus.query(&substitute(selector));
            assert!(
                result.iter().any(|s| s["metric"][label.trim()].is_string()),
                "dashboard variable {definition}: no series with that label"
            );
        }
    }
    eprintln!("dashboard: {checked} panel queries return series");

    // Every shipped alert rule is loaded, evaluates without error, and reads metrics that exist.
    let shipped: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_file("deploy/chart/files/zookeeper-rules.yaml")).unwrap())
            .unwrap();
    let shipped: Vec<(String, String)> = shipped["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().clone())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_string(),
                r["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let known: BTreeSet<String> = prometheus
        .get("/api/v1/label/__name__/values", &[])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str().map(String::from))
        .collect();
    wait_for(Duration::from_secs(60), "every rule to be evaluated", || async {
        let loaded: Vec<Value> = prometheus.get("/api/v1/rules", &[])["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect();
        shipped.iter().all(|(name, _)| {
            loaded.iter().any(|r| {
                r["name"] == name.as_str() && r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001"))
            })
        })
    })
    .await;
    let loaded: Vec<Value> = prometheus.get("/api/v1/rules", &[])["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect();
    for (name, expr) in &shipped {
        let rule = loaded.iter().find(|r| r["name"] == name.as_str()).unwrap();
        assert_eq!(rule["health"], "ok", "alert {name}: {rule}");
        for metric in metric_names(expr) {
            if KUBELET_VOLUME_METRICS.contains(&metric.as_str()) {
                continue;
            }
            assert!(
                known.contains(&metric),
                "alert {name} reads {metric}, which Prometheus has never scraped"
            );
        }
    }
    eprintln!(
        "alert rules: {} loaded, evaluated, and read scraped metrics",
        shipped.len()
    );

    // Nothing fires for a healthy ensemble: the control for what follows.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for alert in ["ZooKeeperMemberDown", "ZooKeeperQuorumAtRisk"] {
        assert_eq!(
            prometheus.alert_state(alert, &ns.name, None),
            None,
            "{alert} is on for a healthy ensemble"
        );
    }

    // Stop a follower: its pod is deleted and the namespace held at two pods, so it cannot come
    // back (no node is touched: tests beside this one are not disturbed).
    let status = ns.clusters().get("zk").await.unwrap().status.unwrap();
    let stopped = status
        .members
        .iter()
        .find(|m| m.role == "follower")
        .expect("a follower")
        .name
        .clone();
    let hold = common::PodQuota::new(&ns, 2);
    let (ok, out) = ns.kubectl(&["delete", "pod", &stopped, "--wait=true"]);
    assert!(ok, "{out}");
    let stopped_at = Instant::now();
    // The fault is real: creating the pod again is refused, and the leader counts one synced
    // follower.
    wait_for(
        Duration::from_secs(60),
        "the StatefulSet to be refused the pod",
        || async {
            ns.kubectl(&[
                "get",
                "events",
                "--field-selector",
                "reason=FailedCreate",
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .1
            .contains("exceeded quota")
        },
    )
    .await;
    assert!(
        ns.api::<k8s_openapi::api::core::v1::Pod>()
            .get_opt(&stopped)
            .await
            .unwrap()
            .is_none(),
        "{stopped} came back although the namespace is held at two pods"
    );
    let synced = format!(r#"max(synced_followers{{job="zookeeper", namespace="{}"}})"#, ns.name);
    wait_for(
        Duration::from_secs(60),
        "the leader to count one synced follower",
        || async { prometheus.query(&synced).first().is_some_and(|s| s["value"][1] == "1") },
    )
    .await;

    // Both alerts fire within their `for` (1 minute) plus a scrape and an evaluation.
    let fired_within = Duration::from_secs(60 + 45);
    let mut fired = BTreeSet::new();
    let fire_limit = Duration::from_secs(60) + fired_within;
    while fired.len() < 2 {
        for (alert, extra) in [
            ("ZooKeeperMemberDown", Some(("member", stopped.as_str()))),
            ("ZooKeeperQuorumAtRisk", None),
        ] {
            if !fired.contains(alert) && prometheus.alert_state(alert, &ns.name, extra).as_deref() == Some("firing") {
                eprintln!(
                    "{alert} firing {:.0} s after {stopped} was stopped",
                    stopped_at.elapsed().as_secs_f64()
                );
                fired.insert(alert);
            }
        }
        assert!(
            stopped_at.elapsed() < fire_limit,
            "within {fire_limit:?} of stopping {stopped} only {fired:?} fired; alerts: {:?}",
            prometheus.alerts()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        stopped_at.elapsed() >= Duration::from_secs(60),
        "the alerts fired before their `for` had passed"
    );

    // The member returns; both alerts clear.
    drop(hold);
    let back = Instant::now();
    ns.wait_settled("zk", 3).await;
    wait_for(Duration::from_secs(120), "the alerts to clear", || async {
        prometheus.alert_state("ZooKeeperMemberDown", &ns.name, None).is_none()
            && prometheus
                .alert_state("ZooKeeperQuorumAtRisk", &ns.name, None)
                .is_none()
    })
    .await;
    eprintln!(
        "alerts cleared {:.0} s after {stopped} could come back",
        back.elapsed().as_secs_f64()
    );

    let (_, missing) = workload.finish().await;
    assert!(missing.is_empty(), "acknowledged writes lost: {missing:?}");
}
