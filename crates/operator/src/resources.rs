//! The objects a ZooKeeperCluster owns, computed from its spec: pure functions, no API calls.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use vocabulary::tls::Phase;
use zk_agent::guard::EnsembleState;
use zk_agent::members::{Membership, PeerDomain};
use zkop_api::{AntiAffinity, ZooKeeperCluster, RESTART_ANNOTATION};

use vocabulary::ports;

/// On the StatefulSet: a hash of its pod template as the operator wrote it, to tell whether a
/// reconcile changed it (the API server fills in defaults, so the templates themselves differ).
pub const TEMPLATE_HASH_ANNOTATION: &str = "zookeeper.zkop.io/template-hash";

/// Labels the revision ConfigMaps, which hold the configuration each StatefulSet revision runs.
pub const CONFIG_REVISION_LABEL: &str = "zookeeper.zkop.io/config-revision";
pub const MEMBERS_KEY: &str = "members";
pub const OVERRIDES_KEY: &str = "zoo.cfg.overrides";
pub const ENSEMBLE_STATE_KEY: &str = "ensemble-state";
pub const ADMIN_PASSWORD_KEY: &str = "password";
pub const ADMIN_DIGEST_KEY: &str = "digest";
pub(crate) const UID: i64 = 1000;

/// Names of everything a cluster owns, derived from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub cluster: String,
    pub namespace: String,
}

impl Names {
    pub fn of(zk: &ZooKeeperCluster) -> Names {
        Names {
            cluster: zk.name_any(),
            namespace: zk.namespace().unwrap_or_else(|| "default".into()),
        }
    }
    pub fn statefulset(&self) -> String {
        self.cluster.clone()
    }
    pub fn headless_service(&self) -> String {
        format!("{}-headless", self.cluster)
    }
    pub fn client_service(&self) -> String {
        format!("{}-client", self.cluster)
    }
    /// The live ConfigMap: the members file and the ensemble state, which change without a roll.
    pub fn config_map(&self) -> String {
        format!("{}-config", self.cluster)
    }
    /// The immutable ConfigMap of one configuration revision: a member restarted for any reason
    /// runs the configuration of the template it was created from.
    pub fn revision_config_map(&self, hash: &str) -> String {
        format!("{}-config-{hash}", self.cluster)
    }
    /// The super user's password and digest, with which the operator reconfigures the ensemble.
    pub fn admin_secret(&self) -> String {
        format!("{}-admin", self.cluster)
    }
    /// The certificate authority: signing key and the authorities members trust.
    pub fn ca_secret(&self) -> String {
        format!("{}-ca", self.cluster)
    }
    /// The member certificate, key and trusted authorities, mounted into every member.
    pub fn tls_secret(&self) -> String {
        format!("{}-tls", self.cluster)
    }
    /// An application's client certificate.
    pub fn client_secret(&self, client: &str) -> String {
        format!("{}-client-{client}", self.cluster)
    }
    /// PersistentVolumeClaims are named `<claim template>-<pod>`: `data-<cluster>-<ordinal>`.
    pub fn claim_prefix(&self) -> String {
        format!("data-{}", self.statefulset())
    }
    pub fn claim(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.claim_prefix())
    }
    pub fn pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.cluster)
    }
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "zookeeper".to_string()),
            ("app.kubernetes.io/instance".to_string(), self.cluster.clone()),
        ])
    }
    pub fn label_selector(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert("app.kubernetes.io/managed-by".into(), "zookeeper-operator".into());
        labels
    }
}

/// Operator-wide settings that are not part of a cluster's spec.
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    pub cluster_domain: String,
    /// The operator's own namespace: its pods are let through to the members' client port.
    pub operator_namespace: Option<String>,
}

/// The operator's pods' label, for the NetworkPolicy that lets them reach the members.
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "zookeeper-operator");

/// Everything the operator applies for one cluster.
#[derive(Debug, Clone)]
pub struct Desired {
    pub service_account: ServiceAccount,
    pub headless_service: Service,
    pub client_service: Service,
    pub config_map: ConfigMap,
    pub revision_config_map: ConfigMap,
    pub statefulset: StatefulSet,
    pub pod_disruption_budget: PodDisruptionBudget,
    pub network_policy: NetworkPolicy,
}

/// What the desired objects depend on besides the spec.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub ensemble_state: EnsembleState,
    /// The StatefulSet's claim templates once it exists: they cannot change.
    pub existing_claim_templates: Option<&'a [PersistentVolumeClaim]>,
    /// Members the StatefulSet runs: spec.replicas for a new ensemble, then changed one member
    /// at a time by the planner.
    pub statefulset_replicas: i32,
    /// The TLS step the members' template is at.
    pub tls_phase: Phase,
    /// The restore's target may be used (`references`): without it no container mounts it.
    pub restore_allowed: bool,
}

pub fn desired(zk: &ZooKeeperCluster, settings: &OperatorSettings, inputs: Inputs<'_>) -> Desired {
    let names = Names::of(zk);
    let owner = owner_reference(zk);
    let meta = |name: String| {
        json!({
            "name": name,
            "namespace": names.namespace,
            "labels": names.labels(),
            "ownerReferences": [owner],
        })
    };
    let selector = names.selector_labels();
    let phase = inputs.tls_phase;
    let mut client_ports = Vec::new();
    if !phase.local_plaintext() {
        client_ports.push(json!({"name": "client", "port": ports::CLIENT, "targetPort": "client"}));
    }
    if phase.secure_clients() {
        client_ports.push(json!({"name": "client-tls", "port": ports::SECURE_CLIENT, "targetPort": "client-tls"}));
    }
    let mut peer_ports = client_ports.clone();
    peer_ports.push(json!({"name": "quorum", "port": ports::QUORUM, "targetPort": "quorum"}));
    peer_ports.push(json!({"name": "election", "port": ports::ELECTION, "targetPort": "election"}));
    let revision_name = names.revision_config_map(&config_hash(zk));
    let mut revision_meta = meta(revision_name.clone());
    revision_meta["labels"][CONFIG_REVISION_LABEL] = json!("true");
    Desired {
        service_account: typed(json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": meta(names.statefulset()),
            "automountServiceAccountToken": false,
        })),
        headless_service: typed(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(names.headless_service()),
            "spec": {
                "clusterIP": "None",
                // Members must find each other before they are ready: readiness means "in quorum".
                "publishNotReadyAddresses": true,
                "selector": selector,
                "ports": peer_ports,
            },
        })),
        client_service: typed(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": meta(names.client_service()),
            "spec": {
                "type": "ClusterIP",
                "selector": selector,
                "ports": client_ports,
            },
        })),
        config_map: typed(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": meta(names.config_map()),
            "data": config_map_data(&names, settings, inputs),
        })),
        revision_config_map: typed(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": revision_meta,
            "immutable": true,
            "data": {OVERRIDES_KEY: overrides_text(zk)},
        })),
        statefulset: statefulset(zk, &names, settings, meta(names.statefulset()), inputs, &revision_name),
        pod_disruption_budget: typed(json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": meta(names.statefulset()),
            "spec": {
                // One member at a time, whatever the size: a voluntary disruption never costs more
                // than the one member a rolling operation may have down.
                "maxUnavailable": 1,
                // A member that does not serve may always be evicted: it is down already, and a
                // broken member must stay replaceable when the budget is spent.
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
                "selector": {"matchLabels": selector},
            },
        })),
        network_policy: typed(json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta(names.statefulset()),
            "spec": network_policy_spec(zk, &names, settings),
        })),
    }
}

/// Ingress to the members: peers on the client, quorum and election ports only from members
/// (the agent asks peers `srvr` on the client port when it bootstraps); the operator on the
/// client port; applications on the client port and scrapers on the metrics port from the
/// peers the spec names. Everything else is refused.
fn network_policy_spec(zk: &ZooKeeperCluster, names: &Names, settings: &OperatorSettings) -> Value {
    let members = json!({"podSelector": {"matchLabels": names.selector_labels()}});
    let operator_namespace = match &settings.operator_namespace {
        Some(namespace) => json!({"matchLabels": {"kubernetes.io/metadata.name": namespace}}),
        None => json!({}),
    };
    let operator = json!({
        "namespaceSelector": operator_namespace,
        "podSelector": {"matchLabels": {OPERATOR_POD_LABEL.0: OPERATOR_POD_LABEL.1}},
    });
    let port = |port: u16| json!({"protocol": "TCP", "port": port});
    let client_ports = [port(ports::CLIENT), port(ports::SECURE_CLIENT)];
    let mut ingress = vec![
        json!({"from": [members], "ports": [
            port(ports::CLIENT), port(ports::SECURE_CLIENT), port(ports::QUORUM), port(ports::QUORUM_HANDOFF), port(ports::ELECTION),
        ]}),
        json!({"from": [operator], "ports": client_ports}),
    ];
    if !zk.spec.access.clients.is_empty() {
        ingress.push(json!({"from": zk.spec.access.clients, "ports": client_ports}));
    }
    if !zk.spec.access.metrics.is_empty() {
        ingress.push(json!({"from": zk.spec.access.metrics, "ports": [port(ports::METRICS)]}));
    }
    json!({
        "podSelector": {"matchLabels": names.selector_labels()},
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    })
}

/// The members of a StatefulSet of `replicas`; with TLS fully on, each serves plaintext
/// clients on 127.0.0.1 only.
pub fn membership(names: &Names, settings: &OperatorSettings, replicas: u32, local_plaintext: bool) -> Membership {
    let domain = PeerDomain {
        service: names.headless_service(),
        namespace: names.namespace.clone(),
        cluster_domain: settings.cluster_domain.clone(),
    };
    let mut membership = Membership::from_statefulset(&names.statefulset(), replicas, &domain);
    if local_plaintext {
        for member in &mut membership.members {
            member.client_address = Some("127.0.0.1".into());
        }
    }
    membership
}

fn config_map_data(names: &Names, settings: &OperatorSettings, inputs: Inputs<'_>) -> BTreeMap<String, String> {
    let replicas = u32::try_from(inputs.statefulset_replicas.max(1)).unwrap_or(1);
    let members = membership(names, settings, replicas, inputs.tls_phase.local_plaintext());
    BTreeMap::from([
        (MEMBERS_KEY.to_string(), members.render()),
        (
            ENSEMBLE_STATE_KEY.to_string(),
            match inputs.ensemble_state {
                EnsembleState::New => "new",
                EnsembleState::Existing => "existing",
            }
            .to_string(),
        ),
    ])
}

fn overrides_text(zk: &ZooKeeperCluster) -> String {
    zk.spec.config.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// A hash of everything that needs a restart to take effect and is not already in the pod
/// template: the ZooKeeper configuration. It names the revision's ConfigMap, so the template
/// changes with it. Membership is left out: it changes by reconfiguration.
pub fn config_hash(zk: &ZooKeeperCluster) -> String {
    let digest = Sha256::digest(overrides_text(zk).as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn statefulset(
    zk: &ZooKeeperCluster,
    names: &Names,
    settings: &OperatorSettings,
    metadata: Value,
    inputs: Inputs<'_>,
    revision_config_map: &str,
) -> StatefulSet {
    let spec = &zk.spec;
    let selector = names.selector_labels();
    let mut pod_labels = names.labels();
    pod_labels.insert("app.kubernetes.io/component".into(), "server".into());
    let claim_templates = match inputs.existing_claim_templates {
        // volumeClaimTemplates cannot change once created; growth is applied to each PVC instead.
        Some(existing) => serde_json::to_value(existing).expect("PVC templates serialize"),
        None => json!([{
            "metadata": {"name": "data", "labels": selector},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": spec.storage.storage_class_name,
                "resources": {"requests": {"storage": spec.storage.size}},
            },
        }]),
    };
    let term = json!({"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"});
    let anti_affinity = match spec.placement.anti_affinity {
        AntiAffinity::Preferred => json!({
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": term}],
        }),
        AntiAffinity::Required => json!({"requiredDuringSchedulingIgnoredDuringExecution": [term]}),
    };
    let topology_spread: Vec<Value> = spec
        .placement
        .topology_spread_key
        .iter()
        .map(|key| {
            json!({
                "maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": selector},
            })
        })
        .collect();
    let probe = |kind: &str, period: i32, failures: i32| {
        json!({
            "exec": {"command": ["zk-agent", "probe", kind]},
            "periodSeconds": period, "timeoutSeconds": 5, "failureThreshold": failures,
        })
    };
    let env = json!([
        {"name": "ZK_MEMBERS_FILE", "value": format!("/etc/zookeeper/{MEMBERS_KEY}")},
        {"name": "ZK_CONFIG_OVERRIDES_FILE", "value": format!("/etc/zookeeper/{OVERRIDES_KEY}")},
        // Read at each container start, so the operator can flip it without a rollout.
        {"name": "ZK_ENSEMBLE_STATE", "valueFrom": {"configMapKeyRef": {"name": names.config_map(), "key": ENSEMBLE_STATE_KEY}}},
        {"name": "ZK_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "ZK_HEADLESS_SERVICE", "value": names.headless_service()},
        {"name": "ZK_CLUSTER_DOMAIN", "value": settings.cluster_domain},
        {"name": "ZK_JVM_OPTS", "value": spec.jvm_options.join(" ")},
        {"name": "ZK_TLS_PHASE", "value": inputs.tls_phase.as_str()},
        {"name": "ZK_ENFORCE_AUTHENTICATION", "value": (spec.tls.enforce_authentication && inputs.tls_phase.secure_clients()).to_string()},
    ]);
    let mut env = env;
    if !inputs.tls_phase.local_plaintext() {
        // The super user's password, until TLS is fully on: then the operator authenticates by
        // its certificate and no password crosses the network.
        env.as_array_mut().expect("env is a list").push(
            json!({"name": "ZK_SUPER_DIGEST", "valueFrom": {"secretKeyRef": {"name": names.admin_secret(), "key": ADMIN_DIGEST_KEY}}}),
        );
    }
    let secure = inputs.tls_phase.secure_clients();
    let container_security = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    });
    let mut mounts = vec![
        json!({"name": "data", "mountPath": "/data"}),
        json!({"name": "config", "mountPath": "/etc/zookeeper", "readOnly": true}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    let tls_mounts = [
        json!({"name": "tls-secret", "mountPath": vocabulary::tls::SECRET_DIR, "readOnly": true}),
        json!({"name": "tls", "mountPath": vocabulary::tls::LIVE_DIR}),
    ];
    let mut volumes = vec![
        json!({"name": "config", "projected": {"sources": [
            {"configMap": {"name": names.config_map(), "items": [{"key": MEMBERS_KEY, "path": MEMBERS_KEY}]}},
            {"configMap": {"name": revision_config_map, "items": [{"key": OVERRIDES_KEY, "path": OVERRIDES_KEY}]}},
        ]}}),
        json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}),
    ];
    let mut container_ports = vec![
        json!({"name": "client", "containerPort": ports::CLIENT}),
        json!({"name": "quorum", "containerPort": ports::QUORUM}),
        json!({"name": "election", "containerPort": ports::ELECTION}),
        json!({"name": "metrics", "containerPort": ports::METRICS}),
    ];
    let mut sidecars = Vec::new();
    if secure {
        mounts.extend(tls_mounts.clone());
        volumes.push(json!({"name": "tls-secret", "secret": {"secretName": names.tls_secret(), "defaultMode": 0o440}}));
        volumes.push(json!({"name": "tls", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}));
        container_ports.push(json!({"name": "client-tls", "containerPort": ports::SECURE_CLIENT}));
        // Hands renewed certificates to ZooKeeper (write-then-rename), so it reloads them.
        sidecars.push(json!({
            "name": "tls-sync",
            "image": spec.image(),
            "imagePullPolicy": spec.image_pull_policy.clone().unwrap_or_else(|| "IfNotPresent".into()),
            "args": ["sync-tls"],
            "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
            "securityContext": container_security,
            "volumeMounts": tls_mounts,
        }));
    }
    let mut containers = vec![json!({
        "name": "zookeeper",
        "image": spec.image(),
        "imagePullPolicy": spec.image_pull_policy.clone().unwrap_or_else(|| "IfNotPresent".into()),
        "args": ["run"],
        "env": env,
        "ports": container_ports,
        // Every probe is an exec (a container runtime call, tens of milliseconds of CPU on the
        // node), for as long as the member runs: readiness stays at 5 s.
        "readinessProbe": probe("ready", 5, 2),
        "livenessProbe": probe("live", 10, 6),
        // The agent may wait for DNS and a member may sync a large snapshot (up to 10 minutes).
        // Readiness is not probed before this passes, so it is probed more often, only at start.
        "startupProbe": probe("live", 2, 300),
        "lifecycle": if secure && spec.rollout.leader_hand_off {
            // A leader about to stop hands leadership to a follower first (no election); it
            // authenticates with the member certificate. Bounded: it never holds a stop long.
            json!({"preStop": {"exec": {"command": ["zk-agent", "hand-off"]}}})
        } else {
            json!(null)
        },
        "resources": spec.resources,
        "securityContext": container_security,
        "volumeMounts": mounts,
    })];
    containers.extend(sidecars);
    // A cluster created from a backup: each member writes it into its empty volume before
    // ZooKeeper starts, while the ensemble is new (the ConfigMap says so at each start).
    let mut init_containers = Vec::new();
    if let Some(restore) = spec.restore_from.as_ref().filter(|_| inputs.restore_allowed) {
        let ensemble_state = json!({"name": "ZK_ENSEMBLE_STATE", "valueFrom": {"configMapKeyRef": {"name": names.config_map(), "key": ENSEMBLE_STATE_KEY}}});
        let (container, restore_volumes) = crate::backups::restore_init_container(zk, names, restore, ensemble_state);
        init_containers.push(container);
        volumes.extend(restore_volumes);
    }
    let mut template_annotations = BTreeMap::new();
    if let Some(requested) = zk.annotations().get(RESTART_ANNOTATION) {
        template_annotations.insert(RESTART_ANNOTATION.to_string(), requested.clone());
    }
    let mut statefulset: StatefulSet = typed(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": metadata,
        "spec": {
            "replicas": inputs.statefulset_replicas,
            "serviceName": names.headless_service(),
            // A new ensemble starts all members at once; they need each other for a quorum.
            "podManagementPolicy": "Parallel",
            // The operator restarts members itself, one at a time, the leader last (planner.rs).
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": spec.storage.retention.when_deleted.as_str(),
                "whenScaled": spec.storage.retention.when_scaled.as_str(),
            },
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    "annotations": template_annotations,
                },
                "spec": {
                    "serviceAccountName": names.statefulset(),
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                        "fsGroupChangePolicy": "OnRootMismatch",
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "affinity": {"podAntiAffinity": anti_affinity},
                    "topologySpreadConstraints": topology_spread,
                    "nodeSelector": spec.placement.node_selector,
                    "tolerations": spec.placement.tolerations,
                    // Absent, not empty, without a restore: the template (and its hash) of every
                    // other cluster stays as it was.
                    "initContainers": if init_containers.is_empty() { json!(null) } else { json!(init_containers) },
                    "containers": containers,
                    "volumes": volumes,
                },
            },
            "volumeClaimTemplates": claim_templates,
        },
    }));
    let template = serde_json::to_vec(&statefulset.spec.as_ref().map(|s| &s.template)).unwrap_or_default();
    let hash: String = Sha256::digest(&template)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    statefulset
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(TEMPLATE_HASH_ANNOTATION.to_string(), hash);
    statefulset
}

/// The TLS Secrets to write: the authority's (always: it carries the rotation's state), the
/// member certificate's and the clients' when they were issued anew.
pub fn tls_secrets(zk: &ZooKeeperCluster, names: &Names, plan: &crate::tls::TlsPlan) -> Vec<Secret> {
    let secret =
        |name: String, data: &BTreeMap<String, k8s_openapi::ByteString>, annotations: &BTreeMap<String, String>| {
            let mut secret: Secret = typed(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {
                    "name": name, "namespace": names.namespace,
                    "labels": names.labels(), "ownerReferences": [owner_reference(zk)],
                    "annotations": annotations,
                },
                "type": "Opaque",
            }));
            secret.data = Some(data.clone());
            secret
        };
    let (data, annotations) = crate::tls::authority_secret(&plan.authority);
    let mut secrets = vec![secret(names.ca_secret(), &data, &annotations)];
    if let Some((data, annotations)) = &plan.member {
        secrets.push(secret(names.tls_secret(), data, annotations));
    }
    for (client, (data, annotations)) in &plan.clients {
        secrets.push(secret(names.client_secret(client), data, annotations));
    }
    secrets
}

/// The Secret with the super user's password (for the operator) and digest (for the servers).
pub fn admin_secret(zk: &ZooKeeperCluster, password: &str) -> Secret {
    let names = Names::of(zk);
    typed(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": names.admin_secret(), "namespace": names.namespace,
            "labels": names.labels(), "ownerReferences": [owner_reference(zk)],
        },
        "type": "Opaque",
        "stringData": {ADMIN_PASSWORD_KEY: password, ADMIN_DIGEST_KEY: super_digest(password)},
    }))
}

/// ZooKeeper's digest of `super:<password>`: `super:` + base64(sha1("super:<password>")).
pub fn super_digest(password: &str) -> String {
    use base64::Engine;
    use sha1::Digest;
    let hash = sha1::Sha1::digest(format!("super:{password}").as_bytes());
    format!("super:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

pub(crate) fn owner_reference(zk: &ZooKeeperCluster) -> OwnerReference {
    zk.controller_owner_ref(&()).unwrap_or_else(|| OwnerReference {
        api_version: ZooKeeperCluster::api_version(&()).into_owned(),
        kind: ZooKeeperCluster::kind(&()).into_owned(),
        name: zk.name_any(),
        uid: zk.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// Our JSON manifests are fixed shapes; a failure here is a bug caught by the unit tests.
pub(crate) fn typed<T: serde::de::DeserializeOwned>(value: Value) -> T {
    let mut value = value;
    strip_nulls(&mut value);
    serde_json::from_value(value).expect("manifest matches its Kubernetes type")
}

/// Optional spec fields render as null; server-side apply must not see them as "set to null".
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zkop_api::ZooKeeperClusterSpec;

    pub fn cluster(spec: Value) -> ZooKeeperCluster {
        let spec: ZooKeeperClusterSpec = serde_json::from_value(spec).unwrap();
        let mut zk = ZooKeeperCluster::new("zookeeper", spec);
        zk.metadata.namespace = Some("prod".into());
        zk.metadata.uid = Some("uid-1".into());
        zk
    }

    fn settings() -> OperatorSettings {
        OperatorSettings {
            cluster_domain: "cluster.local".into(),
            operator_namespace: Some("zkop-system".into()),
        }
    }

    fn inputs(zk: &ZooKeeperCluster, state: EnsembleState) -> Inputs<'static> {
        Inputs {
            ensemble_state: state,
            existing_claim_templates: None,
            statefulset_replicas: zk.spec.replicas,
            tls_phase: Phase::Tls,
            restore_allowed: true,
        }
    }

    #[test]
    fn no_container_mounts_a_restore_target_the_cluster_may_not_use() {
        let zk = cluster(json!({"restoreFrom": {"backup": "zk-20261201T153000Z",
            "target": {"s3": {"bucket": "b", "credentialsSecret": "s3-creds"}}}}));
        let template = |restore_allowed| {
            let d = desired(
                &zk,
                &settings(),
                Inputs {
                    restore_allowed,
                    ..inputs(&zk, EnsembleState::New)
                },
            );
            serde_json::to_string(&d.statefulset.spec.unwrap().template).unwrap()
        };
        assert!(
            template(true).contains("s3-creds"),
            "the restore container reads the credentials"
        );
        assert!(!template(false).contains("s3-creds"), "refused: nothing mounts them");
    }

    fn make(zk: &ZooKeeperCluster, state: EnsembleState) -> Desired {
        desired(zk, &settings(), inputs(zk, state))
    }

    #[test]
    fn headless_service_publishes_not_ready_members() {
        let d = make(&cluster(json!({})), EnsembleState::New);
        let spec = d.headless_service.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(d.headless_service.metadata.owner_references.unwrap()[0].uid, "uid-1");
    }

    #[test]
    fn members_file_lists_every_replica_by_stable_dns_name() {
        let d = make(&cluster(json!({"replicas": 5})), EnsembleState::New);
        let data = d.config_map.data.unwrap();
        let members = Membership::parse(&data[MEMBERS_KEY], "members").unwrap();
        assert_eq!(members.members.len(), 5);
        assert_eq!(
            members.members[4].host,
            "zookeeper-4.zookeeper-headless.prod.svc.cluster.local"
        );
        assert_eq!(data[ENSEMBLE_STATE_KEY], "new");
        let d = make(&cluster(json!({})), EnsembleState::Existing);
        assert_eq!(d.config_map.data.unwrap()[ENSEMBLE_STATE_KEY], "existing");
    }

    #[test]
    fn configuration_changes_change_the_pod_template_but_scaling_does_not() {
        let template = |spec: Value| {
            let sts = make(&cluster(spec), EnsembleState::Existing).statefulset;
            serde_json::to_value(sts.spec.unwrap().template).unwrap()
        };
        let base = template(json!({"config": {"tickTime": "2000"}}));
        assert_ne!(base, template(json!({"config": {"tickTime": "3000"}})));
        assert_ne!(
            base,
            template(json!({"config": {"tickTime": "2000"}, "jvmOptions": ["-Xmx1g"]}))
        );
        assert_ne!(
            base,
            template(json!({"config": {"tickTime": "2000"}, "version": "3.8.3"}))
        );
        assert_eq!(base, template(json!({"config": {"tickTime": "2000"}, "replicas": 5})));
    }

    #[test]
    fn statefulset_is_parallel_restricted_and_spread() {
        let sts = make(
            &cluster(json!({"placement": {"antiAffinity": "Required", "topologySpreadKey": "topology.kubernetes.io/zone"},
                            "storage": {"size": "5Gi", "storageClassName": "fast", "retention": {"whenDeleted": "Delete"}}})),
            EnsembleState::New,
        )
        .statefulset;
        let spec = sts.spec.unwrap();
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(spec.update_strategy.unwrap().type_.as_deref(), Some("OnDelete"));
        assert_eq!(spec.service_name.as_deref(), Some("zookeeper-headless"));
        let retention = spec.persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(retention.when_deleted.as_deref(), Some("Delete"));
        assert_eq!(retention.when_scaled.as_deref(), Some("Delete"));
        let claim = &spec.volume_claim_templates.unwrap()[0];
        assert_eq!(claim.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("fast"));
        let pod = spec.template.spec.unwrap();
        assert!(pod
            .affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .is_some());
        assert_eq!(
            pod.topology_spread_constraints.unwrap()[0].topology_key,
            "topology.kubernetes.io/zone"
        );
        let security = pod.security_context.unwrap();
        assert_eq!(security.run_as_non_root, Some(true));
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("zkop/zookeeper:3.9.5"));
        assert_eq!(
            container.security_context.as_ref().unwrap().read_only_root_filesystem,
            Some(true)
        );
        let ready = container.readiness_probe.as_ref().unwrap().exec.as_ref().unwrap();
        assert_eq!(ready.command.as_ref().unwrap(), &["zk-agent", "probe", "ready"]);
    }

    #[test]
    fn the_members_file_follows_the_statefulset_not_the_spec() {
        // Scaling 3 -> 5 adds one member at a time: the file lists the members that run.
        let zk = cluster(json!({"replicas": 5}));
        let d = desired(
            &zk,
            &settings(),
            Inputs {
                statefulset_replicas: 4,
                ..inputs(&zk, EnsembleState::Existing)
            },
        );
        assert_eq!(d.config_map.data.unwrap()[MEMBERS_KEY].lines().count(), 4);
        assert_eq!(d.statefulset.spec.unwrap().replicas, Some(4));
    }

    #[test]
    fn a_restart_request_changes_the_pod_template() {
        let mut zk = cluster(json!({}));
        let before = make(&zk, EnsembleState::Existing).statefulset.spec.unwrap().template;
        zk.metadata.annotations = Some(BTreeMap::from([(
            RESTART_ANNOTATION.to_string(),
            "2026-11-29T01:00:00Z".to_string(),
        )]));
        let after = make(&zk, EnsembleState::Existing).statefulset.spec.unwrap().template;
        assert_ne!(before, after);
    }

    #[test]
    fn super_digest_matches_zookeepers_digest_authentication_provider() {
        // DigestAuthenticationProvider.generateDigest("super:secret") from ZooKeeper 3.9.4.
        assert_eq!(super_digest("secret"), "super:lK75jTNcA+U9vtVEw5vB51mj/w4=");
    }

    #[test]
    fn existing_claim_templates_are_kept() {
        let first = make(&cluster(json!({})), EnsembleState::New).statefulset;
        let existing = first.spec.unwrap().volume_claim_templates.unwrap();
        let zk = cluster(json!({"storage": {"size": "9Gi"}}));
        let grown = desired(
            &zk,
            &settings(),
            Inputs {
                existing_claim_templates: Some(&existing),
                ..inputs(&zk, EnsembleState::New)
            },
        );
        assert_eq!(
            grown.statefulset.spec.unwrap().volume_claim_templates.unwrap(),
            existing
        );
    }

    #[test]
    fn disruption_budget_allows_one_member_down_at_any_size() {
        for replicas in [1, 3, 5, 7] {
            let pdb = make(&cluster(json!({"replicas": replicas})), EnsembleState::New).pod_disruption_budget;
            let spec = pdb.spec.unwrap();
            assert_eq!(
                spec.max_unavailable,
                Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
            );
            assert!(spec.min_available.is_none());
            assert_eq!(spec.unhealthy_pod_eviction_policy.as_deref(), Some("AlwaysAllow"));
        }
    }

    #[test]
    fn each_configuration_revision_has_its_own_immutable_config_map() {
        let revision_of = |config: Value| {
            let d = make(&cluster(json!({"config": config})), EnsembleState::Existing);
            let template = d.statefulset.spec.unwrap().template.spec.unwrap();
            let volume = template
                .volumes
                .unwrap()
                .into_iter()
                .find(|v| v.name == "config")
                .unwrap();
            let sources = volume.projected.unwrap().sources.unwrap();
            let mounted: Vec<String> = sources.iter().map(|s| s.config_map.clone().unwrap().name).collect();
            (d.revision_config_map, d.config_map, mounted)
        };
        let (revision, live, mounted) = revision_of(json!({"tickTime": "2000"}));
        assert_eq!(revision.immutable, Some(true));
        assert_eq!(revision.data.as_ref().unwrap()[OVERRIDES_KEY], "tickTime=2000\n");
        assert_eq!(
            revision.metadata.labels.as_ref().unwrap()[CONFIG_REVISION_LABEL],
            "true"
        );
        assert!(
            !live.data.as_ref().unwrap().contains_key(OVERRIDES_KEY),
            "the live ConfigMap holds no configuration"
        );
        assert_eq!(
            mounted,
            vec!["zookeeper-config".to_string(), revision.metadata.name.clone().unwrap()]
        );
        let (other, _, _) = revision_of(json!({"tickTime": "3000"}));
        assert_ne!(revision.metadata.name, other.metadata.name);
    }

    #[test]
    fn the_network_policy_lets_in_members_the_operator_and_named_clients_only() {
        let zk =
            cluster(json!({"access": {"metrics": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]}}));
        let policy = make(&zk, EnsembleState::New).network_policy.spec.unwrap();
        assert_eq!(policy.policy_types.as_deref(), Some(&["Ingress".to_string()][..]));
        let rules = policy.ingress.unwrap();
        let ports = |i: usize| -> Vec<String> {
            rules[i]
                .ports
                .clone()
                .unwrap()
                .iter()
                .map(|p| format!("{:?}", p.port.as_ref().unwrap()))
                .collect()
        };
        assert_eq!(rules.len(), 4);
        assert_eq!(
            ports(0).len(),
            5,
            "members reach each other on both client ports, the quorum port (and its hand-off port) and election ports"
        );
        let from_operator = serde_json::to_value(&rules[1].from).unwrap();
        assert_eq!(
            from_operator[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            "zkop-system"
        );
        assert_eq!(
            ports(1),
            vec!["Int(2181)", "Int(2182)"],
            "the operator: the client ports only"
        );
        assert_eq!(
            serde_json::to_value(&rules[2].from).unwrap(),
            json!([{"podSelector": {}}]),
            "default: the namespace"
        );
        assert_eq!(ports(3), vec!["Int(7000)"]);
        let closed = make(&cluster(json!({"access": {"clients": []}})), EnsembleState::New).network_policy;
        assert_eq!(
            closed.spec.unwrap().ingress.unwrap().len(),
            2,
            "no applications, no scrapers"
        );
    }
}
