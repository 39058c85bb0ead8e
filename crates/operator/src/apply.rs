//! Apply: bring the cluster's objects to the desired state by server-side apply, in the order
//! the members need them; grow volumes; drop configuration revisions no pod runs any more.

use crate::applied::{self, Observed};
use crate::controller::{Context, MANAGER};
use crate::error::{named, object_name, At, Error, Stage};
use crate::events::EventType;
use crate::observe::Observation;
use crate::resources::{self, Desired, Names, CONFIG_REVISION_LABEL};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Secret};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::time::Instant;
use zkop_api::ZooKeeperCluster;

/// Applies every desired object that is not already as wanted; returns how many were written.
pub async fn apply(
    ctx: &Context,
    zk: &ZooKeeperCluster,
    names: &Names,
    desired: &Desired,
    secrets: &[Secret],
    observation: &Observation,
    create_members: bool,
) -> Result<usize, Error> {
    let owner = zk.uid().unwrap_or_default();
    match &observation.admin_secret {
        Some(secret) if !controlled_by(&secret.metadata, &owner) => {
            return Err(Error::NameClash {
                object: named::<Secret>(&names.namespace, &names.admin_secret()),
            })
        }
        Some(_) => {}
        None => {
            create_admin_secret(ctx, zk, names).await?;
        }
    }
    let observed_config_map = seen(observation.config_map.as_ref().map(|c| &c.metadata));
    let observed_statefulset = seen(observation.statefulset.as_ref().map(|s| &s.metadata));
    let mut written = 0;
    written += apply_one(ctx, &desired.service_account, &owner, Seen::NotLooked).await?;
    written += apply_one(ctx, &desired.headless_service, &owner, Seen::NotLooked).await?;
    written += apply_one(ctx, &desired.client_service, &owner, Seen::NotLooked).await?;
    // Before the StatefulSet: a member added by this reconcile must find itself in the members
    // file, and a new template's configuration must exist before a pod mounts it.
    written += apply_one(ctx, &desired.config_map, &owner, observed_config_map).await?;
    written += apply_one(ctx, &desired.revision_config_map, &owner, Seen::NotLooked).await?;
    // Before the StatefulSet: its pods mount the member certificate.
    for secret in secrets {
        // Every TLS Secret the operator writes was read by this reconcile: one not found is absent.
        let observed = [&observation.tls.authority_secret, &observation.tls.member_secret]
            .into_iter()
            .flatten()
            .chain(observation.tls.client_secrets.values())
            .find(|s| s.metadata.name == secret.metadata.name)
            .map(|s| &s.metadata);
        written += apply_one(ctx, secret, &owner, seen(observed)).await?;
    }
    written += apply_one(ctx, &desired.pod_disruption_budget, &owner, Seen::NotLooked).await?;
    written += apply_one(ctx, &desired.network_policy, &owner, Seen::NotLooked).await?;
    // A cluster created from a backup creates its members once the backup is verified.
    if create_members || observation.statefulset.is_some() {
        written += apply_one(ctx, &desired.statefulset, &owner, observed_statefulset).await?;
    }
    grow_volumes(ctx, zk, names, &observation.claims).await;
    drop_unused_revisions(ctx, names, desired, observation).await?;
    Ok(written)
}

/// An object this reconcile looked for: present (as read) or absent.
fn seen(meta: Option<&ObjectMeta>) -> Seen<'_> {
    match meta {
        Some(meta) => Seen::Present(meta),
        None => Seen::Absent,
    }
}

/// What this reconcile read of an object before applying it.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    NotLooked,
    Absent,
    Present(&'a ObjectMeta),
}

/// Applies `object` unless an object of that name exists that the cluster (`owner`, its UID)
/// does not control: the operator never takes over what it did not make. Nothing is written
/// when the last apply of the same object is known to stand (`applied.rs`); `observed` is what
/// this reconcile read of it. Returns 1 when it wrote, 0 when not.
pub async fn apply_one<K>(ctx: &Context, object: &K, owner: &str, observed: Seen<'_>) -> Result<usize, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let key = object_name(object);
    let digest = applied::digest(object);
    let memo_view = match observed {
        Seen::NotLooked => Observed::NotLooked,
        Seen::Absent => Observed::Absent,
        Seen::Present(meta) => Observed::Version(meta.resource_version.as_deref()),
    };
    if ctx.applied.unchanged(&key, &digest, memo_view, Instant::now()) {
        return Ok(0);
    }
    let namespace = object.meta().namespace.as_deref().unwrap_or("default");
    let api: Api<K> = Api::namespaced(ctx.client.clone(), namespace);
    let existing = match observed {
        Seen::Present(meta) => Some(meta.clone()),
        Seen::NotLooked | Seen::Absent => api
            .get_metadata_opt(&object.name_any())
            .await
            .at(Stage::Apply, &key)?
            .map(|m| m.metadata),
    };
    if existing.is_some_and(|e| !controlled_by(&e, owner)) {
        ctx.applied.forget(&key);
        return Err(Error::NameClash { object: key });
    }
    let result = api
        .patch(
            &object.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(object),
        )
        .await;
    match result {
        Ok(written) => {
            ctx.applied
                .record(&key, digest, written.meta().resource_version.clone(), Instant::now());
            Ok(1)
        }
        Err(error) => {
            ctx.applied.forget(&key);
            Err(error).at(Stage::Apply, key)
        }
    }
}

/// The object's controller is the cluster with this UID.
pub fn controlled_by(meta: &ObjectMeta, owner: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|r| r.controller == Some(true) && r.uid == owner)
}

async fn create_admin_secret(ctx: &Context, zk: &ZooKeeperCluster, names: &Names) -> Result<(), Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let object = named::<Secret>(&names.namespace, &names.admin_secret());
    let password = crate::ensemble::new_password().map_err(|e| Error::Kube {
        stage: Stage::Apply,
        object: object.clone(),
        source: Box::new(kube::Error::Service(Box::new(e))),
    })?;
    match secrets
        .create(&PostParams::default(), &resources::admin_secret(zk, &password))
        .await
    {
        Ok(_) => Ok(()),
        // Created meanwhile by another reconcile: use that one.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let secret = secrets.get(&names.admin_secret()).await.at(Stage::Apply, &object)?;
            if !controlled_by(&secret.metadata, &zk.uid().unwrap_or_default()) {
                return Err(Error::NameClash { object });
            }
            Ok(())
        }
        Err(error) => Err(error).at(Stage::Apply, object),
    }
}

/// Volumes grow in place (where the StorageClass allows expansion); the StatefulSet's claim
/// templates cannot change, so each member's claim is resized. A refusal is reported, not fatal.
async fn grow_volumes(ctx: &Context, zk: &ZooKeeperCluster, names: &Names, claims: &[PersistentVolumeClaim]) {
    let Some(wanted) = quantity_bytes(&zk.spec.storage.size) else {
        return;
    };
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
    for claim in claims {
        let requested = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| quantity_bytes(&q.0));
        if requested.is_some_and(|r| r < wanted) {
            let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": zk.spec.storage.size}}}});
            if let Err(error) = api
                .patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                let note = format!("cannot grow {} to {}: {error}", claim.name_any(), zk.spec.storage.size);
                ctx.publish(zk, EventType::Warning, "VolumeResizeFailed", note).await;
            }
        }
    }
}

/// Deletes the revision ConfigMaps that neither the current template nor any pod uses.
async fn drop_unused_revisions(
    ctx: &Context,
    names: &Names,
    desired: &Desired,
    observation: &Observation,
) -> Result<(), Error> {
    // Only when the revision in use or the pods' revisions changed (or at the resync).
    let key = format!("revisions {}/{}", names.namespace, names.cluster);
    let wanted = applied::digest(&(
        desired.revision_config_map.name_any(),
        &observation.revision_config_maps_in_use,
    ));
    if ctx
        .applied
        .unchanged(&key, &wanted, Observed::NotLooked, Instant::now())
    {
        return Ok(());
    }
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let selector = format!("{},{CONFIG_REVISION_LABEL}=true", names.label_selector());
    let revisions = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .at(Stage::Apply, format!("ConfigMaps {}/{selector}", names.namespace))?;
    let current = desired.revision_config_map.name_any();
    for revision in revisions.items {
        let name = revision.name_any();
        if name != current && !observation.revision_config_maps_in_use.contains(&name) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(error) => return Err(error).at(Stage::Apply, named::<ConfigMap>(&names.namespace, &name)),
            }
        }
    }
    ctx.applied.record(&key, wanted, None, Instant::now());
    Ok(())
}

/// Bytes in a Kubernetes quantity such as 10Gi, 500M or 1073741824; None if it is not one.
pub fn quantity_bytes(text: &str) -> Option<u128> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1000,
        "M" => 1000u128.pow(2),
        "G" => 1000u128.pow(3),
        "T" => 1000u128.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    Some((value * multiplier as f64) as u128)
}

#[cfg(test)]
mod tests {
    use super::quantity_bytes;

    #[test]
    fn parses_quantities() {
        assert_eq!(quantity_bytes("1Gi"), Some(1 << 30));
        assert_eq!(quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(quantity_bytes("42"), Some(42));
        assert_eq!(quantity_bytes("10Xi"), None);
        assert!(quantity_bytes("2Gi") > quantity_bytes("1500Mi"));
    }
}
