//! The Secrets and claims a cluster's spec names, and whether each lets the cluster use it
//! (`vocabulary::references`: a label naming the cluster). They are mounted into containers
//! that run the cluster's image (backup and restore), or sign its certificates (its own
//! authority): an editor of a ZooKeeperCluster must not reach any other Secret or claim of the
//! namespace through them. The decisions are pure; `observe` reads the objects' labels.

use std::collections::BTreeMap;
pub use vocabulary::references::{allow_label, allows, ALLOW_LABEL_VALUE};
use zkop_api::{BackupTarget, ZooKeeperClusterSpec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Secret,
    PersistentVolumeClaim,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Secret => "Secret",
            Kind::PersistentVolumeClaim => "PersistentVolumeClaim",
        }
    }

    fn kubectl(self) -> &'static str {
        match self {
            Kind::Secret => "secret",
            Kind::PersistentVolumeClaim => "pvc",
        }
    }
}

/// What a reference serves: each part of the reconcile waits on its own references only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Use {
    Authority,
    Backup,
    Restore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub used_for: Use,
    /// The spec field that names it, as a user would write it.
    pub field: String,
    pub kind: Kind,
    pub name: String,
}

/// Every Secret and claim the spec names.
pub fn named_in(spec: &ZooKeeperClusterSpec) -> Vec<Reference> {
    let mut references = Vec::new();
    if let Some(name) = &spec.tls.ca_secret_name {
        references.push(Reference {
            used_for: Use::Authority,
            field: "spec.tls.caSecretName".into(),
            kind: Kind::Secret,
            name: name.clone(),
        });
    }
    if let Some(backup) = &spec.backup {
        target(Use::Backup, &backup.target, "spec.backup.target", &mut references);
    }
    if let Some(restore) = &spec.restore_from {
        target(
            Use::Restore,
            &restore.target,
            "spec.restoreFrom.target",
            &mut references,
        );
    }
    references
}

fn target(used_for: Use, target: &BackupTarget, field: &str, references: &mut Vec<Reference>) {
    let mut push = |field: String, kind: Kind, name: &str| {
        references.push(Reference {
            used_for,
            field,
            kind,
            name: name.to_string(),
        })
    };
    if let Some(s3) = &target.s3 {
        push(
            format!("{field}.s3.credentialsSecret"),
            Kind::Secret,
            &s3.credentials_secret,
        );
        if let Some(ca) = &s3.ca_secret {
            push(format!("{field}.s3.caSecret"), Kind::Secret, ca);
        }
    }
    if let Some(volume) = &target.persistent_volume_claim {
        push(
            format!("{field}.persistentVolumeClaim.claimName"),
            Kind::PersistentVolumeClaim,
            &volume.claim_name,
        );
    }
}

/// The labels of each named object as read: `None` for one that does not exist.
pub type Seen = BTreeMap<(Kind, String), Option<BTreeMap<String, String>>>;

/// Why `cluster` may not use what `reference` names, if it may not. `labels` is `None` for an
/// object that does not exist.
pub fn refusal(
    namespace: &str,
    cluster: &str,
    reference: &Reference,
    labels: Option<&BTreeMap<String, String>>,
    exists: bool,
) -> Option<String> {
    let Reference { field, kind, name, .. } = reference;
    let noun = kind.noun();
    let label = format!("{}={ALLOW_LABEL_VALUE}", allow_label(cluster));
    if !exists {
        return Some(format!(
            "{field}: {noun} {namespace}/{name} does not exist; create it with the label {label}"
        ));
    }
    (!allows(labels, cluster)).then(|| {
        format!(
            "{field}: {noun} {namespace}/{name} does not allow cluster {cluster} to use it. Whoever may read it allows it with: kubectl -n {namespace} label {} {name} {label}",
            kind.kubectl()
        )
    })
}

/// Why the references of one use may not be used, all in one message; `None` when every one
/// may be.
pub fn refused(namespace: &str, cluster: &str, references: &[Reference], seen: &Seen, used_for: Use) -> Option<String> {
    let reasons: Vec<String> = references
        .iter()
        .filter(|r| r.used_for == used_for)
        .filter_map(|r| {
            // Not read (it cannot happen: observe reads every reference) counts as missing.
            let labels = seen.get(&(r.kind, r.name.clone()));
            refusal(
                namespace,
                cluster,
                r,
                labels.and_then(Option::as_ref),
                labels.is_some_and(Option::is_some),
            )
        })
        .collect();
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// What the references allow, for the stages after observe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    pub authority: Option<String>,
    pub backup: Option<String>,
    pub restore: Option<String>,
}

pub fn refusals(namespace: &str, cluster: &str, spec: &ZooKeeperClusterSpec, seen: &Seen) -> Refusals {
    let references = named_in(spec);
    let of = |used_for| refused(namespace, cluster, &references, seen, used_for);
    Refusals {
        authority: of(Use::Authority),
        backup: of(Use::Backup),
        restore: of(Use::Restore),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> ZooKeeperClusterSpec {
        let mut base = serde_json::json!({"replicas": 3});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    fn allowed_for(cluster: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([(allow_label(cluster), "true".to_string())]))
    }

    fn everything() -> ZooKeeperClusterSpec {
        spec(serde_json::json!({
            "tls": {"caSecretName": "org-ca"},
            "backup": {"target": {"s3": {"bucket": "zk-backups", "credentialsSecret": "s3-creds", "caSecret": "s3-ca"}}},
            "restoreFrom": {"backup": "zk-20261204T000000Z", "target": {"persistentVolumeClaim": {"claimName": "backups"}}},
        }))
    }

    #[test]
    fn every_secret_and_claim_the_spec_names_is_a_reference() {
        let fields: Vec<(Use, String, Kind, String)> = named_in(&everything())
            .into_iter()
            .map(|r| (r.used_for, r.field, r.kind, r.name))
            .collect();
        assert_eq!(
            fields,
            vec![
                (
                    Use::Authority,
                    "spec.tls.caSecretName".into(),
                    Kind::Secret,
                    "org-ca".into()
                ),
                (
                    Use::Backup,
                    "spec.backup.target.s3.credentialsSecret".into(),
                    Kind::Secret,
                    "s3-creds".into()
                ),
                (
                    Use::Backup,
                    "spec.backup.target.s3.caSecret".into(),
                    Kind::Secret,
                    "s3-ca".into()
                ),
                (
                    Use::Restore,
                    "spec.restoreFrom.target.persistentVolumeClaim.claimName".into(),
                    Kind::PersistentVolumeClaim,
                    "backups".into()
                ),
            ]
        );
        assert!(named_in(&spec(serde_json::json!({}))).is_empty());
    }

    #[test]
    fn only_objects_labelled_for_the_cluster_are_used() {
        let mut seen: Seen = BTreeMap::new();
        seen.insert((Kind::Secret, "org-ca".into()), allowed_for("zk"));
        seen.insert((Kind::Secret, "s3-creds".into()), allowed_for("other"));
        seen.insert((Kind::Secret, "s3-ca".into()), Some(BTreeMap::new()));
        seen.insert((Kind::PersistentVolumeClaim, "backups".into()), None);
        let refusals = refusals("team", "zk", &everything(), &seen);
        assert_eq!(refusals.authority, None);
        let backup = refusals.backup.expect("neither backup Secret allows zk");
        assert!(
            backup.contains("spec.backup.target.s3.credentialsSecret: Secret team/s3-creds does not allow cluster zk")
                && backup.contains("kubectl -n team label secret s3-creds allow.zookeeper.zkop.io/zk=true")
                && backup.contains("spec.backup.target.s3.caSecret: Secret team/s3-ca"),
            "{backup}"
        );
        let restore = refusals.restore.expect("the claim does not exist");
        assert!(
            restore.contains("PersistentVolumeClaim team/backups does not exist")
                && restore.contains("allow.zookeeper.zkop.io/zk=true"),
            "{restore}"
        );
    }

    #[test]
    fn a_spec_without_references_refuses_nothing() {
        assert_eq!(
            refusals("team", "zk", &spec(serde_json::json!({})), &BTreeMap::new()),
            Refusals::default()
        );
    }
}
