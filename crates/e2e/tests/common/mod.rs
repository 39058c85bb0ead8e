//! Helpers for end-to-end tests against the cluster in KUBECONFIG, with the operator installed
//! (`make e2e` does both).
#![allow(dead_code)]

pub mod store;
pub mod workload;

use k8s_openapi::api::core::v1::{Namespace, Node, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use std::process::Command;
use std::time::{Duration, Instant};
use zkop_api::ZooKeeperCluster;

/// How long a day-2 operation may take to settle on the local cluster.
pub const SETTLE: Duration = Duration::from_secs(420);

/// When the test began: its log says when each wait ended and how long it took.
static BEGAN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Seconds since the test began, for its log.
pub fn clock() -> String {
    format!("[+{:5.1} s]", BEGAN.get_or_init(Instant::now).elapsed().as_secs_f64())
}

pub async fn client() -> Client {
    BEGAN.get_or_init(Instant::now);
    // kube's and zookeeper-client's TLS providers are both compiled in: pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::try_default()
        .await
        .expect("a cluster in KUBECONFIG (run `make e2e`)")
}

/// A fresh namespace under Pod Security "restricted", removed when the test is done.
pub struct TestNamespace {
    pub name: String,
    client: Client,
    /// Created by this test, and deleted when it is done.
    owned: bool,
}

impl TestNamespace {
    pub async fn new(client: &Client, name: &str) -> TestNamespace {
        let api: Api<Namespace> = Api::all(client.clone());
        if api.get_opt(name).await.unwrap().is_some() {
            let _ = api.delete(name, &DeleteParams::default()).await;
            wait_for(
                Duration::from_secs(180),
                &format!("namespace {name} to go away"),
                || async { api.get_opt(name).await.unwrap().is_none() },
            )
            .await;
        }
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &ns).await.unwrap();
        // Pods (the operator's and the tests' own) are refused until the namespace has its
        // default ServiceAccount, which the controller manager adds a moment later.
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
        wait_for(
            Duration::from_secs(120),
            &format!("namespace {name} to get its default ServiceAccount"),
            || async { matches!(accounts.get_opt("default").await, Ok(Some(_))) },
        )
        .await;
        TestNamespace {
            name: name.to_string(),
            client: client.clone(),
            owned: true,
        }
    }

    /// Another handle on a test's namespace, e.g. for a task running beside the test.
    pub fn attach(client: &Client, name: &str) -> TestNamespace {
        TestNamespace {
            name: name.to_string(),
            client: client.clone(),
            owned: false,
        }
    }

    pub fn clusters(&self) -> Api<ZooKeeperCluster> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates a cluster. Unless the spec says which clients may connect, the namespace's pods and the
    /// nodes may: the tests' workloads come in through a NodePort, from the nodes' addresses.
    pub async fn create_cluster(&self, name: &str, spec: serde_json::Value) -> Result<ZooKeeperCluster, kube::Error> {
        let mut spec = spec;
        // The tests' workloads connect as the client `e2e` (a certificate the operator issues).
        if spec.pointer("/tls/enabled") != Some(&serde_json::json!(false)) && spec.pointer("/tls/clients").is_none() {
            spec["tls"]["clients"] = serde_json::json!([TEST_CLIENT]);
        }
        if spec.pointer("/access/clients").is_none() {
            let mut clients = vec![serde_json::json!({"podSelector": {}})];
            for ip in node_ips(&self.client).await {
                clients.push(serde_json::json!({"ipBlock": {"cidr": format!("{ip}/32")}}));
            }
            spec["access"]["clients"] = serde_json::json!(clients);
        }
        let zk: ZooKeeperCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "zookeeper.zkop.io/v1alpha1", "kind": "ZooKeeperCluster",
            "metadata": {"name": name}, "spec": spec,
        }))
        .unwrap();
        self.clusters().create(&PostParams::default(), &zk).await
    }

    /// A merge patch of the spec, as `kubectl patch --type merge` would send, with strict field validation.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) -> Result<ZooKeeperCluster, kube::Error> {
        let params = PatchParams {
            field_validation: Some(kube::api::ValidationDirective::Strict),
            ..Default::default()
        };
        self.clusters()
            .patch(name, &params, &Patch::Merge(serde_json::json!({"spec": spec})))
            .await
    }

    pub async fn wait_available(&self, name: &str, timeout: Duration) -> ZooKeeperCluster {
        let api = self.clusters();
        wait_for(
            timeout,
            &format!("{}/{name} to be Available with all members serving", self.name),
            || async { api.get(name).await.ok().is_some_and(|zk| fully_available(&zk)) },
        )
        .await;
        api.get(name).await.unwrap()
    }

    /// Waits until the cluster has `replicas` members, all serving, every pod on the current
    /// template, and no operation in progress. The pods are read too: right after a pod is
    /// replaced, the status still says what the operator saw before (all serving), so the status
    /// alone would pass at once (seen under load: a test read the old leader from it).
    pub async fn wait_settled(&self, name: &str, replicas: i32) -> ZooKeeperCluster {
        let clusters = self.clusters();
        let not_yet = std::sync::Mutex::new(String::new());
        let what = format!("{name} to settle at {replicas} serving members");
        let settled = wait_until(SETTLE, &what, || async {
            let why = match clusters.get(name).await {
                Err(e) => Some(format!("reading it: {e}")),
                Ok(zk) => unsettled(&zk, replicas),
            };
            let why = match why {
                Some(why) => Some(why),
                None => {
                    let ready = self.ready_pods(name).await;
                    (ready != replicas as usize).then(|| format!("{ready} member pods Ready, none deleting"))
                }
            };
            if let Some(why) = &why {
                *not_yet.lock().unwrap() = why.clone();
            }
            why.is_none()
        })
        .await;
        assert!(
            settled,
            "timed out waiting for {what}; last seen: {}",
            not_yet.lock().unwrap()
        );
        clusters.get(name).await.unwrap()
    }

    /// How many of a cluster's pods the kubelet reports Ready and none is being deleted (0 if any is).
    pub async fn ready_pods(&self, cluster: &str) -> usize {
        let pods: Api<k8s_openapi::api::core::v1::Pod> = self.api();
        let selector = format!("app.kubernetes.io/instance={cluster},app.kubernetes.io/component=server");
        let Ok(listed) = pods.list(&kube::api::ListParams::default().labels(&selector)).await else {
            return 0;
        };
        if listed.items.iter().any(|p| p.metadata.deletion_timestamp.is_some()) {
            return 0;
        }
        listed
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count()
    }

    /// Pod name to UID of a cluster's members.
    pub async fn pod_uids(&self, cluster: &str) -> std::collections::BTreeMap<String, String> {
        let pods: Api<k8s_openapi::api::core::v1::Pod> = self.api();
        let selector = format!("app.kubernetes.io/instance={cluster}");
        pods.list(&kube::api::ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| {
                (
                    kube::ResourceExt::name_any(&p),
                    kube::ResourceExt::uid(&p).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// For each member pod (by UID): how many times it went back to looking for a leader after
    /// it first served. ZooKeeper logs "LOOKING" each time a peer enters leader election, and
    /// "FOLLOWING"/"LEADING"/"OBSERVING" when it serves; a hand-off goes straight from one
    /// serving state to the next.
    pub async fn elections_seen(&self, cluster: &str) -> std::collections::BTreeMap<String, usize> {
        self.elections_seen_in(&format!("app.kubernetes.io/instance={cluster}"))
            .await
    }

    /// `elections_seen` for the pods a label selector picks (e.g. the plain StatefulSet's).
    pub async fn elections_seen_in(&self, selector: &str) -> std::collections::BTreeMap<String, usize> {
        let pods: Api<k8s_openapi::api::core::v1::Pod> = self.api();
        let listed = pods
            .list(&kube::api::ListParams::default().labels(selector))
            .await
            .unwrap();
        let mut seen = std::collections::BTreeMap::new();
        for pod in listed.items {
            let (pod, uid) = (
                kube::ResourceExt::name_any(&pod),
                kube::ResourceExt::uid(&pod).unwrap_or_default(),
            );
            let (_, log) = self.kubectl(&["logs", &pod, "-c", "zookeeper"]);
            let message = |line: &str| line.trim_end().rsplit(" - ").next().unwrap_or("").to_string();
            let lookings = log
                .lines()
                .map(message)
                .skip_while(|m| !matches!(m.as_str(), "FOLLOWING" | "LEADING" | "OBSERVING"))
                .filter(|m| m == "LOOKING")
                .count();
            seen.insert(uid, lookings);
        }
        seen
    }

    pub fn kubectl(&self, args: &[&str]) -> (bool, String) {
        run(Command::new("kubectl").arg("-n").arg(&self.name).args(args))
    }

    /// Asks for a rolling restart, as a user would: the restart annotation set to `value`.
    pub async fn request_restart(&self, cluster: &str, value: &str) {
        let annotation = serde_json::json!({"metadata": {"annotations": {zkop_api::RESTART_ANNOTATION: value}}});
        self.clusters()
            .patch(cluster, &PatchParams::default(), &Patch::Merge(annotation))
            .await
            .unwrap();
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> (bool, String) {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl");
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    /// How a client outside the cluster reaches the ensemble: through a NodePort Service in
    /// front of its serving members, on every node; over mutual TLS as the tests' client when
    /// the cluster runs TLS (the server's name is not checked: the nodes' addresses are not in
    /// the member certificate; its authority is).
    pub async fn endpoint(&self, cluster: &str) -> workload::Endpoint {
        let zk = self.clusters().get(cluster).await.unwrap();
        let tls_phase = zk.status.as_ref().and_then(|s| s.tls.as_ref()).map(|t| t.phase.clone());
        let secure = tls_phase.is_some_and(|p| p != "plaintext");
        let ports = self.node_ports(cluster, "app.kubernetes.io/instance", cluster).await;
        let port = if secure { ports.1 } else { ports.0 };
        let connect = node_ips(&self.client)
            .await
            .into_iter()
            .map(|ip| format!("{ip}:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let tls = if secure {
            let secrets: Api<k8s_openapi::api::core::v1::Secret> = self.api();
            let name = format!("{cluster}-client-{TEST_CLIENT}");
            wait_for(
                Duration::from_secs(60),
                &format!("the client Secret {name}"),
                || async { secrets.get_opt(&name).await.unwrap().is_some() },
            )
            .await;
            Some(workload::TlsSource { secrets, name })
        } else {
            None
        };
        workload::Endpoint { connect, tls }
    }

    /// A plaintext endpoint for any pods labelled `key=value` (the seed's StatefulSet).
    pub async fn plaintext_endpoint(&self, name: &str, key: &str, value: &str) -> workload::Endpoint {
        let (port, _) = self.node_ports(name, key, value).await;
        let connect = node_ips(&self.client)
            .await
            .into_iter()
            .map(|ip| format!("{ip}:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        workload::Endpoint { connect, tls: None }
    }

    /// A NodePort Service `<name>-e2e-clients` for the pods labelled `key=value`; its node
    /// ports for the plaintext and the TLS client ports.
    async fn node_ports(&self, name: &str, key: &str, value: &str) -> (i32, i32) {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{name}-e2e-clients")},
            "spec": {
                "type": "NodePort",
                "selector": {key: value},
                "ports": [
                    {"name": "client", "port": 2181, "targetPort": 2181},
                    {"name": "client-tls", "port": 2182, "targetPort": 2182},
                ],
            },
        }))
        .unwrap();
        let services = self.api::<Service>();
        let created = match services.get_opt(&format!("{name}-e2e-clients")).await.unwrap() {
            Some(existing) => existing,
            None => services.create(&PostParams::default(), &service).await.unwrap(),
        };
        let ports = created.spec.unwrap().ports.unwrap();
        (ports[0].node_port.unwrap(), ports[1].node_port.unwrap())
    }

    /// The seed's way in: `kubectl exec POD -- /opt/zookeeper/bin/zkCli.sh ARGS`.
    pub fn zkcli(&self, pod: &str, args: &[&str]) -> String {
        let mut full = vec!["exec", pod, "--", "/opt/zookeeper/bin/zkCli.sh"];
        full.extend_from_slice(args);
        self.kubectl(&full).1
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump();
        }
        if self.owned && std::env::var_os("E2E_KEEP_NAMESPACES").is_none() {
            let _ = Command::new("kubectl")
                .args(["delete", "namespace", &self.name, "--wait=false"])
                .output();
        }
    }
}

impl TestNamespace {
    /// What a failed test leaves for its log: the clusters, pods and events of its namespace and
    /// the operator's lines about it (the namespace is deleted next).
    fn dump(&self) {
        let ns = self.name.as_str();
        let show = |title: &str, args: &[&str]| {
            let out = Command::new("kubectl").args(args).output();
            let text = out.map_or_else(
                |e| e.to_string(),
                |o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                },
            );
            eprintln!("----- {title} -----\n{text}");
        };
        show("clusters", &["-n", ns, "get", "zookeeperclusters", "-o", "yaml"]);
        show("pods", &["-n", ns, "get", "pods", "-o", "wide"]);
        show("events", &["-n", ns, "get", "events", "--sort-by=.lastTimestamp"]);
        // The members' own last words: each pod's ZooKeeper container, and its previous run.
        let pods = Command::new("kubectl")
            .args([
                "-n",
                ns,
                "get",
                "pods",
                "-l",
                "app.kubernetes.io/component=server",
                "-o",
                "name",
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for pod in pods.lines() {
            show(
                &format!("{pod}: its log"),
                &["-n", ns, "logs", pod, "-c", "zookeeper", "--tail=40"],
            );
            show(
                &format!("{pod}: its previous run"),
                &["-n", ns, "logs", pod, "-c", "zookeeper", "--previous", "--tail=40"],
            );
        }
        let operator = Command::new("kubectl")
            .args([
                "-n",
                "zkop-system",
                "logs",
                "-l",
                "app.kubernetes.io/name=zookeeper-operator",
                "--prefix",
                "--tail=-1",
            ])
            .output();
        if let Ok(out) = operator {
            let text = String::from_utf8_lossy(&out.stdout);
            let lines: Vec<&str> = text.lines().filter(|l| l.contains(ns)).collect();
            let from = lines.len().saturating_sub(150);
            eprintln!(
                "----- the operator's last {} lines about {ns} -----",
                lines.len() - from
            );
            for line in &lines[from..] {
                eprintln!("{line}");
            }
        }
    }
}

/// The nodes' InternalIPs.
pub async fn node_ips(client: &Client) -> Vec<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.status?.addresses?.into_iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address)
        .collect()
}

/// The client the tests' workloads connect as (a certificate the operator issues).
pub const TEST_CLIENT: &str = "e2e";

/// A small cluster for tests on a two-core machine: 512 MiB members, 256 MiB volumes that go with it.
/// The older ZooKeeper line the upgrade test starts from (an image `make images` builds).
pub const OLDER_VERSION: &str = "3.8.6";

/// The release of the default line before the default, which `make e2e-full` also upgrades from
/// (its image is built by `make e2e-full` only).
pub const PREVIOUS_PATCH_VERSION: &str = "3.9.4";

/// The image of the default ZooKeeper version.
pub fn default_image() -> String {
    format!("{}:{}", zkop_api::DEFAULT_IMAGE_REPOSITORY, zkop_api::DEFAULT_VERSION)
}

/// Labels that let each of `clusters` use the Secret or claim that carries them
/// (`vocabulary::references`).
pub fn allowing(clusters: &[&str]) -> serde_json::Value {
    clusters
        .iter()
        .map(|c| {
            (
                vocabulary::references::allow_label(c),
                serde_json::json!(vocabulary::references::ALLOW_LABEL_VALUE),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

pub fn small_cluster(replicas: i32, version: &str) -> serde_json::Value {
    serde_json::json!({
        "replicas": replicas,
        "version": version,
        "resources": {"requests": {"cpu": "50m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}},
        "storage": {"size": "256Mi", "retention": {"whenDeleted": "Delete"}},
    })
}

pub fn fully_available(zk: &ZooKeeperCluster) -> bool {
    let Some(status) = &zk.status else {
        return false;
    };
    status.observed_generation == zk.metadata.generation
        && status.ready_replicas == zk.spec.replicas
        && status
            .conditions
            .iter()
            .any(|c| c.type_ == "Available" && c.status == "True")
}

pub fn condition<'a>(
    zk: &'a ZooKeeperCluster,
    kind: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    zk.status.as_ref()?.conditions.iter().find(|c| c.type_ == kind)
}

/// What keeps a cluster from being settled at `replicas` members, as its status says.
pub fn unsettled(zk: &ZooKeeperCluster, replicas: i32) -> Option<String> {
    let status = zk.status.clone().unwrap_or_default();
    let progressing = condition(zk, "Progressing");
    if !fully_available(zk) {
        let available = condition(zk, "Available").map(|c| format!("{}: {}", c.status, c.message));
        Some(format!(
            "not fully available (generation {:?} observed {:?}, {}/{} ready, Available {available:?})",
            zk.metadata.generation, status.observed_generation, status.ready_replicas, zk.spec.replicas
        ))
    } else if status.members.len() != replicas as usize || !status.members.iter().all(|m| m.ready) {
        let members: Vec<String> = status
            .members
            .iter()
            .map(|m| format!("{} {} ready={}", m.name, m.role, m.ready))
            .collect();
        Some(format!("members {members:?}"))
    } else if let Some(operation) = &status.operation {
        Some(format!(
            "operation in progress: {operation} ({:?})",
            status.operation_step
        ))
    } else if progressing.is_none_or(|c| c.status != "False") {
        Some(format!(
            "Progressing {:?}",
            progressing.map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
        ))
    } else {
        None
    }
}

pub async fn wait_for<F, Fut>(timeout: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        wait_until(timeout, what, check).await,
        "{} timed out after {timeout:?} waiting for {what}",
        clock()
    );
}

/// Like `wait_for`, but says whether the check passed in time instead of failing the test.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            // Where a test's time goes: every wait of a second or more is in its log.
            if start.elapsed() >= Duration::from_secs(1) {
                eprintln!("{} waited {:.1} s for {what}", clock(), start.elapsed().as_secs_f64());
            }
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The API server's message for a rejected request.
pub fn rejection(result: Result<ZooKeeperCluster, kube::Error>) -> String {
    match result {
        Ok(_) => panic!("the API server accepted an invalid ZooKeeperCluster"),
        Err(kube::Error::Api(status)) => status.message.clone(),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

/// The seed's approach, as a baseline: a plain StatefulSet `seed` (OrderedReady, RollingUpdate)
/// with a static server list in zoo.cfg, readiness = the JVM answers `ruok`, the same image and
/// resources as the operator's members. Returns a `List` for `kubectl apply -f -`.
pub fn seed_statefulset(namespace: &str) -> String {
    let domain = format!("seed.{namespace}.svc.cluster.local");
    let servers: String = (0..3)
        .map(|i| format!("server.{}=seed-{i}.{domain}:2888:3888\n", i + 1))
        .collect();
    let zoo_cfg = format!(
        "tickTime=2000\ninitLimit=10\nsyncLimit=2\ndataDir=/data/zookeeper\nclientPort=2181\n\
         4lw.commands.whitelist=srvr,mntr,ruok\nadmin.enableServer=false\n{servers}"
    );
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "seed"}, "data": {"zoo.cfg": zoo_cfg}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "seed"},
         "spec": {"clusterIP": "None", "selector": {"app": "seed"},
                  "ports": [{"name": "client", "port": 2181}, {"name": "quorum", "port": 2888}, {"name": "election", "port": 3888}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "seed"},
         "spec": {
            "replicas": 3, "serviceName": "seed", "podManagementPolicy": "OrderedReady",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": {"app": "seed"}},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
            "template": {
                "metadata": {"labels": {"app": "seed"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "fsGroup": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "zookeeper", "image": default_image(), "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "mkdir -p /data/zookeeper && echo $((${HOSTNAME##*-} + 1)) > /data/zookeeper/myid && exec java -Xmx256m -cp '/opt/zookeeper/lib/*:/opt/zookeeper/conf' org.apache.zookeeper.server.quorum.QuorumPeerMain /conf/zoo.cfg"],
                        "ports": [{"name": "client", "containerPort": 2181}],
                        "resources": {"requests": {"cpu": "50m", "memory": "512Mi"}, "limits": {"memory": "512Mi"}},
                        "readinessProbe": {"exec": {"command": ["zk-agent", "probe", "live"]}, "periodSeconds": 5, "timeoutSeconds": 5},
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "conf", "mountPath": "/conf"}],
                    }],
                    "volumes": [{"name": "conf", "configMap": {"name": "seed"}}],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "256Mi"}}}}],
         }},
    ]});
    serde_json::to_string(&list).unwrap()
}

/// The operator's namespace and its pods' label, as `make install` deploys it.
pub const OPERATOR_NAMESPACE: &str = "zkop-system";
pub const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=zookeeper-operator";

pub async fn operator_pods(client: &Client) -> Vec<k8s_openapi::api::core::v1::Pod> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    pods.list(&kube::api::ListParams::default().labels(OPERATOR_SELECTOR))
        .await
        .unwrap()
        .items
}

/// The operator replica holding the leader Lease.
pub async fn operator_leader(client: &Client) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    leases
        .get_opt("zookeeper-operator")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

/// An operator pod's own metrics, through the API server's pod proxy.
pub fn operator_metrics(pod: &str) -> String {
    let output = Command::new("kubectl")
        .args([
            "get",
            "--raw",
            &format!("/api/v1/namespaces/{OPERATOR_NAMESPACE}/pods/{pod}:8080/proxy/metrics"),
        ])
        .output()
        .expect("kubectl");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Kills a pod at once, as a crash or a lost node would.
pub async fn kill_pod(client: &Client, namespace: &str, name: &str) {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let _ = pods.delete(name, &DeleteParams::default().grace_period(0)).await;
}

/// Runs a command; returns whether it succeeded, and its output (stdout, then stderr).
pub fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("running a command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Runs `docker ARGS`.
pub fn docker(args: &[&str]) -> (bool, String) {
    run(Command::new("docker").args(args))
}

/// Runs `kubectl ARGS` outside any namespace.
/// Elections between two `elections_seen` of the same cluster: LOOKING episodes of members that
/// had served, counted on the pods there at the end (a pod restarted since starts from zero).
pub fn elections_between(
    before: &std::collections::BTreeMap<String, usize>,
    after: &std::collections::BTreeMap<String, usize>,
) -> usize {
    after
        .iter()
        .map(|(uid, n)| n.saturating_sub(before.get(uid).copied().unwrap_or(0)))
        .sum()
}

pub fn kubectl(args: &[&str]) -> (bool, String) {
    run(Command::new("kubectl").args(args))
}

impl TestNamespace {
    pub async fn pod(&self, name: &str) -> k8s_openapi::api::core::v1::Pod {
        self.api::<k8s_openapi::api::core::v1::Pod>().get(name).await.unwrap()
    }

    /// Kills a pod's ZooKeeper JVM with SIGKILL, as a crash would, from its node: inside the
    /// container the JVM is PID 1, which ignores SIGKILL from its own namespace. The container
    /// restarts in place.
    pub async fn kill_jvm(&self, pod: &str) {
        let node = self.node_of(pod).await;
        let script = format!(
            "id=$(crictl ps -q --name zookeeper --label io.kubernetes.pod.name={pod} \
             --label io.kubernetes.pod.namespace={ns}) && \
             kill -9 $(crictl inspect -o go-template --template '{{{{.info.pid}}}}' $id)",
            ns = self.name
        );
        let output = Command::new("docker")
            .args(["exec", &node, "sh", "-c", &script])
            .output()
            .expect("docker exec");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }

    /// The node a pod runs on.
    pub async fn node_of(&self, pod: &str) -> String {
        self.pod(pod).await.spec.unwrap().node_name.unwrap_or_default()
    }

    pub async fn pod_ip(&self, pod: &str) -> String {
        self.pod(pod).await.status.unwrap().pod_ip.unwrap_or_default()
    }

    /// Reasons and notes of the events about a cluster.
    pub async fn events(&self, cluster: &str) -> Vec<(String, String)> {
        let events: Api<k8s_openapi::api::events::v1::Event> = self.api();
        let mut list: Vec<k8s_openapi::api::events::v1::Event> = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(cluster))
            .collect();
        list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        list.into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// The events about a cluster so far, to wait for newer ones.
    pub async fn event_mark(&self, cluster: &str) -> EventMark {
        EventMark(
            self.event_keys(cluster)
                .await
                .into_iter()
                .map(|(key, _, _)| key)
                .collect(),
        )
    }

    /// (uid and series count, reason, note) of each event about a cluster.
    async fn event_keys(&self, cluster: &str) -> Vec<((String, i32), String, String)> {
        let events: Api<k8s_openapi::api::events::v1::Event> = self.api();
        events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(cluster))
            .map(|e| {
                let count = e.series.as_ref().map_or(1, |s| s.count);
                (
                    (e.metadata.uid.clone().unwrap_or_default(), count),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for an event with this reason about the cluster, newer than `mark`; returns its note.
    pub async fn wait_for_event(&self, cluster: &str, reason: &str, mark: &EventMark, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let found = self
                .event_keys(cluster)
                .await
                .into_iter()
                .find(|(key, r, _)| r == reason && !mark.0.contains(key));
            if let Some((_, _, note)) = found {
                return note;
            }
            assert!(
                start.elapsed() < timeout,
                "no new {reason} event about {cluster} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The notes of every event with this reason about the cluster, newer than `mark`.
    pub async fn events_since(&self, cluster: &str, reason: &str, mark: &EventMark) -> Vec<String> {
        self.event_keys(cluster)
            .await
            .into_iter()
            .filter(|(key, r, _)| r == reason && !mark.0.contains(key))
            .map(|(_, _, note)| note)
            .collect()
    }

    /// Members whose pods are Ready, among the first `replicas` ordinals.
    pub async fn ready_members(&self, cluster: &str, replicas: u32) -> usize {
        let pods: Api<k8s_openapi::api::core::v1::Pod> = self.api();
        let list = pods
            .list(&kube::api::ListParams::default().labels(&format!("app.kubernetes.io/instance={cluster}")))
            .await
            .unwrap()
            .items;
        (0..replicas)
            .filter(|o| {
                list.iter().any(|p| {
                    kube::ResourceExt::name_any(p) == format!("{cluster}-{o}")
                        && p.metadata.deletion_timestamp.is_none()
                        && p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
            })
            .count()
    }
}

/// Events seen before some moment.
pub struct EventMark(std::collections::HashSet<(String, i32)>);

/// One row of the fault table in docs/faults.md, printed for collection.
pub fn fault_row(case: &str, report: &workload::Report, lost: usize, recovered: Duration, human: &str) {
    eprintln!(
        "FAULT-ROW | {case} | {} | {lost} | {:.2} s | {} | {:.0} s | {human} |",
        report.acked.len(),
        report.largest_gap.as_secs_f64(),
        report.elections(),
        recovered.as_secs_f64()
    );
}

/// Cordons nodes for as long as it lives; uncordons them when dropped, also when a test fails
/// (a test that leaves nodes cordoned fails every test after it).
pub struct Cordon(Vec<String>);

impl Cordon {
    pub fn new(nodes: &[&str]) -> Cordon {
        for node in nodes {
            let (ok, out) = kubectl(&["cordon", node]);
            assert!(ok, "cordon {node}: {out}");
        }
        Cordon(nodes.iter().map(|n| n.to_string()).collect())
    }
}

impl Drop for Cordon {
    fn drop(&mut self) {
        for node in &self.0 {
            let _ = kubectl(&["uncordon", node]);
        }
    }
}

/// Holds a namespace at `pods` pods for as long as it lives (a ResourceQuota): a member whose pod
/// is deleted stays away, as if it had nowhere to run, and no node is touched, so that tests
/// beside this one are not disturbed. When dropped (also when a test fails), the quota goes and
/// the namespace's StatefulSets are touched, so that their controller creates the pods at once:
/// after refused creations it otherwise backs off for up to minutes.
pub struct PodQuota {
    namespace: String,
}

const POD_QUOTA: &str = "e2e-hold-pods";

impl PodQuota {
    pub fn new(ns: &TestNamespace, pods: u32) -> PodQuota {
        let (ok, out) = ns.kubectl(&["create", "quota", POD_QUOTA, &format!("--hard=pods={pods}")]);
        assert!(ok, "creating the pod quota: {out}");
        PodQuota {
            namespace: ns.name.clone(),
        }
    }
}

impl Drop for PodQuota {
    fn drop(&mut self) {
        let _ = kubectl(&["-n", &self.namespace, "delete", "quota", POD_QUOTA]);
        let lifted = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let _ = kubectl(&[
            "-n",
            &self.namespace,
            "annotate",
            "statefulsets",
            "--all",
            "--overwrite",
            &format!("e2e.zkop.io/quota-lifted={lifted}"),
        ]);
    }
}
