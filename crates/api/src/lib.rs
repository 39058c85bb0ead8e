//! The `ZooKeeperCluster` custom resource, `zookeeper.zkop.io/v1alpha1`.
//!
//! The CRD (`deploy/chart/crds/zookeeperclusters.yaml`) is generated from these types by
//! `cargo run -p zkop-api --bin crdgen`; validation lives here as schema constraints and CEL
//! rules whose messages name the field and the fix.

// kube's printcolumn(...) attributes repeat the same keys by design.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const GROUP: &str = "zookeeper.zkop.io";
pub const DEFAULT_VERSION: &str = "3.9.5";
pub const DEFAULT_IMAGE_REPOSITORY: &str = "zkop/zookeeper";
/// Set (to any new value, e.g. a timestamp) on a ZooKeeperCluster to restart its members one at a
/// time, followers first and the leader last, as `kubectl rollout restart` does for Deployments.
pub const RESTART_ANNOTATION: &str = "zookeeper.zkop.io/restart-requested-at";
/// Set (to any new value) to issue new member and client certificates now, without restarts.
pub const RENEW_CERTIFICATES_ANNOTATION: &str = "zookeeper.zkop.io/renew-certificates-requested-at";
/// Set (to any new value) to rotate the operator-made certificate authority now: trusted beside
/// the current one, then signing, then the old one dropped, without restarts.
pub const ROTATE_CA_ANNOTATION: &str = "zookeeper.zkop.io/rotate-ca-requested-at";
/// Set (to any new value) to take a backup now, besides the schedule (needs spec.backup).
pub const BACKUP_ANNOTATION: &str = "zookeeper.zkop.io/backup-requested-at";
/// The longest cluster name: `<name>-headless` (Service) and `<name>-<10-char revision hash>`
/// (the StatefulSet's revision label) must stay within 63 characters.
pub const MAX_NAME_LENGTH: usize = 52;
pub const DEFAULT_MEMBER_READY_TIMEOUT_SECONDS: u32 = 180;

/// A ZooKeeper ensemble: a StatefulSet of members, each with its own volume, run by zk-agent.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "zookeeper.zkop.io",
    version = "v1alpha1",
    kind = "ZooKeeperCluster",
    namespaced,
    shortname = "zkc",
    status = "ZooKeeperClusterStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Leader", type_ = "string", json_path = ".status.leader"),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(name = "Operation", type_ = "string", json_path = ".status.operation"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Message", type_ = "string", json_path = ".status.message"),
    printcolumn(name = "Voters", type_ = "integer", json_path = ".status.voters", priority = 1),
    printcolumn(name = "Epoch", type_ = "integer", json_path = ".status.epoch", priority = 1),
    printcolumn(name = "Last-Operation", type_ = "string", json_path = ".status.lastOperation.kind", priority = 1),
    printcolumn(name = "Outcome", type_ = "string", json_path = ".status.lastOperation.outcome", priority = 1),
    validation = Rule::new(format!("size(self.metadata.name) <= {MAX_NAME_LENGTH}"))
        .message(format!("metadata.name must be at most {MAX_NAME_LENGTH} characters: the StatefulSet's pods, Services and revision labels derived from it must fit Kubernetes' 63-character limit").as_str())
)]
#[serde(rename_all = "camelCase")]
pub struct ZooKeeperClusterSpec {
    /// Number of members. An ensemble of 2n+1 members tolerates n failures: 1, 3, 5 or 7.
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self == 1 || self == 3 || self == 5 || self == 7")
        .message("spec.replicas must be 1, 3, 5 or 7: an odd number of members, so that a majority survives failures"))]
    pub replicas: i32,

    /// Apache ZooKeeper version; selects the image `zkop/zookeeper:<version>` unless `image` is set.
    #[serde(default = "default_version")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^3\\\\.(8|9)\\\\.[0-9]+$')")
        .message("spec.version must be a ZooKeeper 3.8.x or 3.9.x release such as 3.9.5"))]
    pub version: String,

    /// Full image reference, overriding the one derived from `version`. It must run zk-agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// Image pull policy for the ZooKeeper containers (default IfNotPresent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self in ['Always', 'IfNotPresent', 'Never']")
        .message("spec.imagePullPolicy must be Always, IfNotPresent or Never"))]
    pub image_pull_policy: Option<String>,

    /// CPU and memory for each member. The JVM heap is half the memory limit unless -Xmx is in jvmOptions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra JVM options, e.g. ["-Xmx512m"]: heap, stack, GC and memory sizing and a few
    /// ZooKeeper limits; nothing that loads an agent, reads an argument file or changes the
    /// class path is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 256)))]
    #[x_kube(validation = Rule::new(owned_jvm_property_rule()).message(owned_jvm_property_message().as_str()))]
    #[x_kube(validation = Rule::new(jvm_allow_rule()).message(Message::Expression(jvm_allow_message())))]
    pub jvm_options: Vec<String>,

    /// Storage for each member.
    #[serde(default)]
    pub storage: StorageSpec,

    /// ZooKeeper settings (zoo.cfg keys) merged over the defaults, e.g. {"tickTime": "2000"}.
    /// Only the settings users legitimately tune are accepted (tickTime, initLimit, syncLimit,
    /// session and connection limits, autopurge, snapshots, quotas, ...), each in its form;
    /// membership, ports, paths and security settings belong to the operator.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64, "additionalProperties" = {"type": "string", "maxLength": 64}))]
    #[x_kube(validation = Rule::new(owned_config_rule()).message(owned_config_message().as_str()))]
    #[x_kube(validation = Rule::new(config_allow_rule()).message(Message::Expression(config_allow_message())))]
    #[x_kube(validation = Rule::new(config_value_rule()).message(Message::Expression(config_value_message())))]
    pub config: BTreeMap<String, String>,

    /// Where members run.
    #[serde(default)]
    pub placement: PlacementSpec,

    /// How day-2 restarts proceed.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// TLS between members and for clients, on by default.
    #[serde(default)]
    pub tls: TlsSpec,

    /// Who may reach the members over the network. The operator makes a NetworkPolicy from it
    /// (peers on the quorum and election ports only from members, the operator on the client
    /// port); it is enforced where the cluster's network plugin enforces NetworkPolicies.
    #[serde(default)]
    pub access: AccessSpec,

    /// Backups of the ensemble's data to an S3-compatible object store or a volume: on a
    /// schedule, on demand (the zookeeper.zkop.io/backup-requested-at annotation), with retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// Create this ensemble from a backup: every member starts with the backup's data (the
    /// ensemble exists from its first start). Checked before any member is created: a missing,
    /// incomplete, corrupt or newer-ZooKeeper backup is refused with a condition that says why.
    /// Read only while the cluster is created; later changes are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreFromSpec>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// When to back up: a cron expression of five fields (minute hour day month weekday), in
    /// UTC, e.g. "0 */6 * * *". Without it backups run only on demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.split(' ').filter(f, f != '').size() == 5")
        .message("spec.backup.schedule must be a cron expression of five fields (minute hour day-of-month month day-of-week), e.g. '0 */6 * * *'"))]
    pub schedule: Option<String>,
    /// Stops scheduled backups (on-demand ones still run).
    #[serde(default)]
    pub suspend: bool,
    #[serde(default)]
    pub retention: BackupRetention,
    pub target: BackupTarget,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupRetention {
    /// Keep at most this many complete backups (default 7). The newest is always kept.
    #[serde(default = "default_backup_count", skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub count: Option<u32>,
    /// Delete backups older than this many days. The newest is always kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3650))]
    pub max_age_days: Option<u32>,
}

impl Default for BackupRetention {
    fn default() -> Self {
        BackupRetention {
            count: default_backup_count(),
            max_age_days: None,
        }
    }
}

fn default_backup_count() -> Option<u32> {
    Some(7)
}

/// Where backups are kept: exactly one of s3 and persistentVolumeClaim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.s3) != has(self.persistentVolumeClaim)")
    .message("a backup target names exactly one of s3 and persistentVolumeClaim"))]
pub struct BackupTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Target>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<VolumeTarget>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Target {
    /// The S3-compatible service, e.g. https://minio.storage.svc:9000; AWS S3 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')")
        .message("spec.backup.target.s3.endpoint must be a URL: https://host[:port] (http:// sends the data unencrypted)"))]
    pub endpoint: Option<String>,
    #[schemars(length(min = 3, max = 63), regex(pattern = "^[a-z0-9][a-z0-9.-]*[a-z0-9]$"))]
    pub bucket: String,
    /// Key prefix the backups go under (default `<namespace>/<cluster>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = "^[A-Za-z0-9!_.*'()/-]*$"))]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub region: Option<String>,
    /// A Secret in the cluster's namespace with keys accessKeyId and secretAccessKey.
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
    /// A Secret with key ca.crt: the CA that signed the endpoint's certificate, when it is not
    /// publicly trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub ca_secret: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeTarget {
    /// A PersistentVolumeClaim in the cluster's namespace. Backup jobs run on the node of the
    /// member they read: the claim must be mountable there (ReadWriteMany, or a volume that
    /// node can reach).
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Directory within the volume (default `<namespace>/<cluster>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = "^[A-Za-z0-9_.-][A-Za-z0-9_./-]*$"))]
    #[x_kube(validation = Rule::new("!self.split('/').exists(p, p == '..')")
        .message("spec.backup.target.persistentVolumeClaim.prefix must stay inside the volume (no '..')"))]
    pub prefix: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreFromSpec {
    /// Where the backup is. Its prefix defaults to `<namespace>/<cluster that made it>` (the
    /// backup's name without its time), as that cluster wrote it.
    pub target: BackupTarget,
    /// The backup's name, as status.backup.lastSuccessful.name showed it: `<cluster>-<UTC time>`.
    #[schemars(length(min = 1, max = 253), regex(pattern = "^[A-Za-z0-9][A-Za-z0-9_.-]*$"))]
    pub backup: String,
    /// Restore only up to this zxid (0x<hex>) of the backup's logs, not past its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 18), regex(pattern = "^0x[0-9a-fA-F]{1,16}$"))]
    pub zxid: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Mutual TLS on the client port 2182 and TLS between members (default true). A running
    /// plaintext ensemble moves to TLS in place, in three rolling steps; with TLS on, plaintext
    /// clients are served on 127.0.0.1 only (the probes, tools inside the pod).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Your own certificate authority: a Secret in the cluster's namespace with `tls.crt` and
    /// `tls.key`. The operator signs the members' and clients' certificates with it; when the
    /// Secret changes, it rotates to the new authority without restarting members. Unset: the
    /// operator makes an authority per cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub ca_secret_name: Option<String>,
    /// How long member and client certificates are valid (default 30 days, at least 2
    /// minutes). They are renewed two thirds of the way, without restarting members.
    #[serde(default = "default_certificate_lifetime")]
    #[schemars(range(min = 120, max = 31622400))]
    pub certificate_lifetime_seconds: u32,
    /// How long an authority the operator makes is valid (default 1 year, at least 5
    /// minutes); it is rotated two thirds of the way: trusted beside the old one, then signing,
    /// then the old one dropped.
    #[serde(default = "default_ca_lifetime")]
    #[schemars(range(min = 300, max = 315360000))]
    pub ca_lifetime_seconds: u32,
    /// Applications to issue client certificates for: each gets a Secret
    /// `<cluster>-client-<name>` with `tls.crt`, `tls.key` and `ca.crt`, and connects as the
    /// ZooKeeper identity `x509:CN=<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 32),
        inner(length(min = 1, max = 40), regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))
    )]
    #[x_kube(validation = Rule::new("self.all(c, c != 'zookeeper-operator')")
        .message("spec.tls.clients must not name zookeeper-operator: that identity is the operator's super user"))]
    pub clients: Vec<String>,
    /// Refuse sessions that did not authenticate (ZooKeeper's enforce.auth.enabled). Off by
    /// default: applications that connect anonymously would be refused.
    #[serde(default)]
    pub enforce_authentication: bool,
}

impl Default for TlsSpec {
    fn default() -> Self {
        TlsSpec {
            enabled: true,
            ca_secret_name: None,
            certificate_lifetime_seconds: default_certificate_lifetime(),
            ca_lifetime_seconds: default_ca_lifetime(),
            clients: Vec::new(),
            enforce_authentication: false,
        }
    }
}

fn enabled() -> bool {
    true
}
fn default_certificate_lifetime() -> u32 {
    30 * 24 * 3600
}
fn default_ca_lifetime() -> u32 {
    365 * 24 * 3600
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccessSpec {
    /// Who may connect to the client port, as NetworkPolicy peers (podSelector,
    /// namespaceSelector, ipBlock). Default: every pod in the cluster's namespace. An empty list
    /// admits no application.
    #[serde(default = "same_namespace")]
    #[schemars(length(max = 32))]
    pub clients: Vec<NetworkPolicyPeer>,
    /// Who may scrape ZooKeeper's Prometheus metrics (port 7000). Default: nobody.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub metrics: Vec<NetworkPolicyPeer>,
}

impl Default for AccessSpec {
    fn default() -> Self {
        AccessSpec {
            clients: same_namespace(),
            metrics: Vec::new(),
        }
    }
}

/// Every pod in the cluster's own namespace.
fn same_namespace() -> Vec<NetworkPolicyPeer> {
    vec![NetworkPolicyPeer {
        pod_selector: Some(Default::default()),
        ..Default::default()
    }]
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// How long a member may take to serve again after it was restarted or while it is down.
    /// Past it the roll stops, keeps quorum, and says which member and why (condition and a
    /// Warning event); fixing or reverting the spec resumes it. Default 180.
    #[serde(default = "default_member_ready_timeout")]
    #[schemars(range(min = 30, max = 86400))]
    pub member_ready_timeout_seconds: u32,
    /// Before the leader restarts, hand leadership to a follower by dynamic reconfiguration, so
    /// that the ensemble does not elect: ZooKeeper designates a synced follower. Default true;
    /// false restarts the leader as it is and the members elect a new one.
    #[serde(default = "default_true")]
    pub leader_hand_off: bool,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        RolloutSpec {
            member_ready_timeout_seconds: DEFAULT_MEMBER_READY_TIMEOUT_SECONDS,
            leader_hand_off: true,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_member_ready_timeout() -> u32 {
    DEFAULT_MEMBER_READY_TIMEOUT_SECONDS
}

fn owned_config_keys() -> Vec<&'static str> {
    vocabulary::config::OWNED_KEYS.iter().map(|(key, _)| *key).collect()
}

fn owned_config_rule() -> String {
    format!(
        "self.all(k, !(k in {}) && {})",
        cel_list(&owned_config_keys()),
        prefix_checks("k")
    )
}

fn owned_config_message() -> String {
    format!(
        "spec.config must not set {} or {}: the operator manages membership, ports and paths; remove them from spec.config",
        owned_config_keys().join(", "),
        vocabulary::config::OWNED_PREFIXES.iter().map(|p| format!("{p}*")).collect::<Vec<_>>().join(", ")
    )
}

/// A Rust string as a single-quoted CEL string literal.
fn cel_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn allowed_config_keys() -> Vec<&'static str> {
    vocabulary::config::ALLOWED.iter().map(|(key, _)| *key).collect()
}

fn config_allow_rule() -> String {
    format!(
        "self.all(k, k in {} || k in {} || {})",
        cel_list(&allowed_config_keys()),
        cel_list(&owned_config_keys()),
        vocabulary::config::OWNED_PREFIXES
            .iter()
            .map(|p| format!("k.startsWith('{p}')"))
            .collect::<Vec<_>>()
            .join(" || ")
    )
}

fn config_allow_message() -> String {
    format!(
        "'spec.config.' + self.filter(k, !(k in {})).filter(k, !(k in {}))[0] + ' is not a setting that can be changed here (security, paths and membership belong to the operator); the settings that can: {}'",
        cel_list(&allowed_config_keys()),
        cel_list(&owned_config_keys()),
        allowed_config_keys().join(", ")
    )
}

/// Each allowed setting that is present has the form it takes. One check per key, each of fixed
/// cost: iterating over the map would make the API server's cost estimate explode.
fn config_value_rule() -> String {
    vocabulary::config::ALLOWED
        .iter()
        .map(|(key, form)| {
            format!(
                "(!('{key}' in self) || self['{key}'].matches({}))",
                cel_string(&vocabulary::config::pattern(*form))
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

fn config_value_message() -> String {
    let checks: Vec<String> = vocabulary::config::ALLOWED
        .iter()
        .map(|(key, form)| {
            format!(
                "('{key}' in self && !self['{key}'].matches({}) ? ['spec.config.{key} must be ' + {}] : [])",
                cel_string(&vocabulary::config::pattern(*form)),
                cel_string(&vocabulary::config::describe(*form))
            )
        })
        .collect();
    format!("({})[0]", checks.join(" + "))
}

fn jvm_allow_rule() -> String {
    format!("self.all(o, o.matches({}))", cel_string(&vocabulary::jvm::pattern()))
}

fn jvm_allow_message() -> String {
    format!(
        "'spec.jvmOptions: ' + self.filter(o, !o.matches({})).map(o, o.size() > 64 ? o.substring(0, 64) + '...' : o)[0] + ' is not allowed: only heap, stack, GC and memory sizing ({}, ...), the flags {} and a few ZooKeeper limits ({}) are; one option per element, without spaces'",
        cel_string(&vocabulary::jvm::pattern()),
        vocabulary::jvm::ALLOWED_PREFIXES[..4].join(", "),
        vocabulary::jvm::ALLOWED_FLAGS.join(" "),
        vocabulary::jvm::ALLOWED_PREFIXES
            .iter()
            .filter(|p| p.starts_with("-D"))
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn owned_jvm_property_rule() -> String {
    let checks: Vec<String> = vocabulary::jvm::OWNED_PROPERTIES
        .iter()
        .map(|(property, _)| format!("!o.startsWith('-D{property}')"))
        .collect();
    format!("self.all(o, {})", checks.join(" && "))
}

fn owned_jvm_property_message() -> String {
    let properties: Vec<&str> = vocabulary::jvm::OWNED_PROPERTIES.iter().map(|(p, _)| *p).collect();
    format!(
        "spec.jvmOptions must not set {}: they switch off the lost-disk guard",
        properties.join(" or ")
    )
}

fn cel_list(items: &[&str]) -> String {
    format!(
        "[{}]",
        items.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", ")
    )
}

fn prefix_checks(var: &str) -> String {
    vocabulary::config::OWNED_PREFIXES
        .iter()
        .map(|p| format!("!{var}.startsWith('{p}')"))
        .collect::<Vec<_>>()
        .join(" && ")
}

fn default_replicas() -> i32 {
    3
}
fn default_version() -> String {
    DEFAULT_VERSION.to_string()
}

/// One PersistentVolumeClaim per member.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.size) || !has(self.size) || quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0")
    .message("spec.storage.size cannot be decreased: volumes do not shrink. Keep the old size, or create a new cluster"))]
#[x_kube(validation = Rule::new("(has(self.storageClassName) ? self.storageClassName : '') == (has(oldSelf.storageClassName) ? oldSelf.storageClassName : '')")
    .message("spec.storage.storageClassName is immutable: existing volumes keep their class"))]
pub struct StorageSpec {
    /// Size of each member's volume (default 1Gi). It may grow (if the StorageClass allows expansion), never shrink.
    #[serde(default = "default_storage_size")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("spec.storage.size must be a positive quantity such as 10Gi"))]
    pub size: String,

    /// StorageClass of the volumes; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,

    /// What happens to the volumes when the cluster is deleted or scaled down.
    #[serde(default)]
    pub retention: RetentionSpec,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            size: default_storage_size(),
            storage_class_name: None,
            retention: RetentionSpec::default(),
        }
    }
}

fn default_storage_size() -> String {
    "1Gi".into()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Volumes when the ZooKeeperCluster is deleted: Retain (default, data kept for recovery) or Delete.
    #[serde(default)]
    pub when_deleted: RetentionPolicy,
    /// Volumes of members removed by scaling down: Delete (default, a member added again never
    /// starts from stale data) or Retain.
    #[serde(default = "delete_policy")]
    pub when_scaled: RetentionPolicy,
}

impl Default for RetentionSpec {
    fn default() -> Self {
        RetentionSpec {
            when_deleted: RetentionPolicy::Retain,
            when_scaled: RetentionPolicy::Delete,
        }
    }
}

fn delete_policy() -> RetentionPolicy {
    RetentionPolicy::Delete
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RetentionPolicy {
    #[default]
    Retain,
    Delete,
}

impl RetentionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionPolicy::Retain => "Retain",
            RetentionPolicy::Delete => "Delete",
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// Spreading members over nodes: Preferred (default) tries to put each member on its own node;
    /// Required refuses to schedule two members on one node.
    #[serde(default)]
    pub anti_affinity: AntiAffinity,
    /// Also spread members evenly over this topology key (e.g. topology.kubernetes.io/zone), at most one apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub topology_spread_key: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AntiAffinity {
    #[default]
    Preferred,
    Required,
}

/// Observed state, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ZooKeeperClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Available, Progressing and Degraded, as Kubernetes API conventions describe conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Members that exist (pods of the StatefulSet).
    #[serde(default)]
    pub replicas: i32,
    /// Members serving in a quorum.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pod name of the current leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The ZooKeeper release the serving members report running (`3.8.6, 3.9.5` while an
    /// upgrade is under way); the last one known while none serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Voting members in the ensemble's committed configuration, as ZooKeeper reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voters: Option<i32>,
    /// The leader's epoch (the upper 32 bits of its zxid): it grows with every election. The
    /// zxid itself is not kept in status: it changes with every write, and every status write
    /// would start another reconcile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// Label selector of the members' pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// The day-2 operation in progress: RollingRestart, ScaleUp or ScaleDown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// The operation's current step, or what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_step: Option<String>,
    /// One line for people: what is wrong, or that all is well.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `existing` once the ensemble has had a quorum or its volumes data: from then on a member
    /// with an empty disk must sync before it votes. Never goes back to `new`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble_state: Option<String>,
    /// TLS as the members run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// The last day-2 operation that ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<LastOperation>,
    /// Backups: the last that succeeded, the last that failed, the one running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupStatus>,
    /// The restore this cluster was created from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful: Option<BackupRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<BackupFailure>,
    /// The backup job running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
    /// The schedule's latest time that was acted on (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_time: Option<String>,
    /// The next scheduled backup (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scheduled_time: Option<String>,
    /// The value of the backup-requested-at annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_request: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// What spec.restoreFrom.backup names to restore it.
    pub name: String,
    /// When it was taken (RFC 3339).
    pub time: String,
    /// Every transaction up to this zxid is in it, none after.
    pub zxid: String,
    pub size_bytes: u64,
    pub location: String,
    /// The member whose data it holds.
    pub member: String,
    pub duration_seconds: f64,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BackupFailure {
    pub name: String,
    pub time: String,
    pub reason: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    pub backup: String,
    /// Checking: the backup is being downloaded and verified; Verified: the members restore it
    /// as they start; Refused: it cannot be restored (see message).
    pub phase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the last check ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// The spec generation it was checked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LastOperation {
    /// RollingRestart, ScaleUp, ScaleDown, ...
    pub kind: String,
    /// Succeeded when every member served as it ended; otherwise which members did not.
    pub outcome: String,
    /// When it ended (RFC 3339).
    pub finished_at: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TlsStatus {
    /// The step the members' template is at: plaintext, unified, quorum-tls or tls.
    pub phase: String,
    /// When the member certificate expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_not_after: Option<String>,
    /// When the signing authority expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_not_after: Option<String>,
    /// A rotation of the authority in progress: trusting-next, dropping-previous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_rotation: Option<String>,
    /// Members serving the current member certificate, out of all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_current_certificate: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Pod name.
    pub name: String,
    /// ZooKeeper server id (myid).
    pub id: u64,
    /// leader, follower, observer, or none when not serving.
    pub role: String,
    pub ready: bool,
    /// Why it does not serve, from its pod (e.g. ImagePullBackOff, CrashLoopBackOff, Unschedulable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Restarts of its ZooKeeper container.
    #[serde(default)]
    pub restarts: i32,
    /// It runs the current template.
    #[serde(default)]
    pub up_to_date: bool,
    /// The ZooKeeper release it reports running (read from the member, not from the spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl ZooKeeperClusterSpec {
    /// The image the members run.
    pub fn image(&self) -> String {
        self.image
            .clone()
            .unwrap_or_else(|| format!("{DEFAULT_IMAGE_REPOSITORY}:{}", self.version))
    }
}

/// The CRD as YAML, as committed under deploy/.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&ZooKeeperCluster::crd()).expect("the CRD serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn spec(json: serde_json::Value) -> ZooKeeperClusterSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_make_a_three_member_cluster() {
        let s = spec(serde_json::json!({}));
        assert_eq!(s.replicas, 3);
        assert_eq!(s.image(), "zkop/zookeeper:3.9.5");
        assert_eq!(s.storage.size, "1Gi");
        assert_eq!(s.storage.retention.when_deleted, RetentionPolicy::Retain);
        assert_eq!(s.storage.retention.when_scaled, RetentionPolicy::Delete);
        assert_eq!(s.placement.anti_affinity, AntiAffinity::Preferred);
    }

    #[test]
    fn crd_carries_the_validation_rules_and_columns() {
        let crd = serde_json::to_string(&ZooKeeperCluster::crd()).unwrap();
        for expected in [
            "spec.replicas must be 1, 3, 5 or 7",
            "spec.storage.size cannot be decreased",
            "spec.config must not set dataDir",
            "'dataDir'",
            "startsWith('server.')",
            "x-kubernetes-validations",
            "\"Leader\"",
            "specReplicasPath",
        ] {
            assert!(crd.contains(expected), "CRD lacks {expected}");
        }
    }

    #[test]
    fn owned_keys_match_the_agent() {
        // The agent rejects these too; the CRD rejects them before they reach a pod.
        for key in owned_config_keys() {
            assert!(owned_config_rule().contains(&format!("'{key}'")));
        }
    }
}
