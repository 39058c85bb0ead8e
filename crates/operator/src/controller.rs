//! The thin layer that talks to the API: observe, apply the desired objects, write status.

use crate::ensemble;
use crate::planner::{self, ClusterView, MemberState, MemberView, Step};
use crate::resources::{
    self, Inputs, Names, OperatorSettings, ADMIN_PASSWORD_KEY, CLIENT_PORT, CONFIG_HASH_ANNOTATION, ENSEMBLE_STATE_KEY,
};
use crate::status::{self, MemberObservation, Observed, Operation, StatefulSetObservation, AVAILABLE};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use zk_agent::guard::EnsembleState;
use zkop_api::ZooKeeperCluster;

pub const MANAGER: &str = "zookeeper-operator";

pub struct Context {
    pub client: Client,
    pub settings: OperatorSettings,
    pub recorder: Recorder,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

pub async fn run(client: Client, settings: OperatorSettings) {
    let clusters: Api<ZooKeeperCluster> = Api::all(client.clone());
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let context = Arc::new(Context {
        client: client.clone(),
        settings,
        recorder: Recorder::new(client.clone(), reporter),
    });
    Controller::new(clusters, watcher::Config::default())
        .owns(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())
        .owns(Api::<ConfigMap>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Service>::all(client.clone()), watcher::Config::default())
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(cluster = %object.name, "reconciled"),
                Err(error) => tracing::warn!(%error, "reconcile failed"),
            }
        })
        .await;
}

fn error_policy(zk: Arc<ZooKeeperCluster>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %zk.name_any(), %error, "will retry");
    Action::requeue(Duration::from_secs(5))
}

pub async fn reconcile(zk: Arc<ZooKeeperCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    if zk.metadata.deletion_timestamp.is_some() {
        // Owner references remove what the cluster owns; volumes follow the retention policy.
        return Ok(Action::await_change());
    }
    let names = Names::of(&zk);
    let client = &ctx.client;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), &names.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &names.namespace);
    let existing_sts = statefulsets.get_opt(&names.statefulset()).await?;
    let existing_cm = config_maps.get_opt(&names.config_map()).await?;
    let admin_password = ensure_admin_secret(client, &zk, &names).await?;

    let observed = observe(client, &names, existing_sts.as_ref()).await?;
    let available = status::available(&zk, &observed);
    let recorded_state = existing_cm
        .as_ref()
        .and_then(|cm| cm.data.as_ref())
        .and_then(|data| data.get(ENSEMBLE_STATE_KEY))
        .map(String::as_str);
    let ensemble_state = status::ensemble_state(recorded_state, available, zk.status.as_ref());

    // Day-2 work starts once the ensemble exists; until then the StatefulSet follows the spec.
    let plan = match (&existing_sts, ensemble_state) {
        (Some(sts), EnsembleState::Existing) => {
            let voters = ensemble::voters(&observed, &admin_password).await;
            let statefulset_replicas = sts
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .and_then(|r| u32::try_from(r).ok())
                .unwrap_or(0);
            let leftover_volumes = leftover_volumes(client, &names, statefulset_replicas).await?;
            let view = ClusterView {
                statefulset: names.statefulset(),
                desired_replicas: u32::try_from(zk.spec.replicas).unwrap_or(1),
                statefulset_replicas,
                members: observed
                    .members
                    .iter()
                    .map(|m| MemberView {
                        ordinal: m.ordinal,
                        up_to_date: m.up_to_date,
                        state: match (m.terminating, m.serving) {
                            (true, _) => MemberState::Terminating,
                            (false, Some(role)) => MemberState::Serving(role),
                            (false, None) => MemberState::Running,
                        },
                        down_for: Duration::ZERO,
                        cause: None,
                    })
                    .collect(),
                voters,
                leftover_volumes,
                member_ready_timeout: Duration::from_secs(180),
            };
            let step = planner::plan(&view);
            Some((view, step))
        }
        _ => None,
    };
    let statefulset_replicas = match &plan {
        Some((_, Step::SetReplicas(n))) => i32::try_from(*n).unwrap_or(zk.spec.replicas),
        Some((view, _)) => i32::try_from(view.statefulset_replicas).unwrap_or(zk.spec.replicas),
        None => zk.spec.replicas,
    };
    let claim_templates = existing_sts
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.clone());
    let desired = resources::desired(
        &zk,
        &ctx.settings,
        Inputs {
            ensemble_state,
            existing_claim_templates: claim_templates.as_deref(),
            statefulset_replicas,
        },
    );

    apply(client, &desired.service_account).await?;
    apply(client, &desired.headless_service).await?;
    apply(client, &desired.client_service).await?;
    // Before the StatefulSet: a member added by this reconcile must find itself in the members file.
    apply(client, &desired.config_map).await?;
    apply(client, &desired.pod_disruption_budget).await?;
    let previous_hash = existing_sts.as_ref().and_then(template_hash);
    apply(client, &desired.statefulset).await?;
    grow_volumes(&ctx, &zk, &names).await?;

    let operation = plan
        .as_ref()
        .and_then(|(view, step)| planner::describe(view, step))
        .map(|(kind, step)| Operation {
            kind: kind.to_string(),
            step,
        });
    if let Some((_, step)) = &plan {
        execute(&ctx, &zk, &names, &observed, step, &admin_password).await?;
    }

    let status = status::compute(
        &zk,
        &observed,
        operation.as_ref(),
        names.label_selector(),
        Time(k8s_openapi::jiff::Timestamp::now()),
    );
    publish_events(
        &ctx,
        &zk,
        existing_sts.is_none(),
        previous_hash,
        &desired.statefulset,
        recorded_state,
        ensemble_state,
        &status,
    )
    .await;
    let clusters: Api<ZooKeeperCluster> = Api::namespaced(client.clone(), &names.namespace);
    let patch = serde_json::json!({
        "apiVersion": ZooKeeperCluster::api_version(&()),
        "kind": ZooKeeperCluster::kind(&()),
        "status": status,
    });
    clusters
        .patch_status(
            &names.cluster,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;

    let settled = operation.is_none()
        && status::condition_is_true(Some(&status), AVAILABLE)
        && status.ready_replicas == zk.spec.replicas
        && !status::condition_is_true(Some(&status), status::PROGRESSING);
    Ok(Action::requeue(Duration::from_secs(if settled { 30 } else { 2 })))
}

/// Carries out the planner's step. Waiting and resizing need nothing more here (the resize was
/// applied with the StatefulSet).
async fn execute(
    ctx: &Context,
    zk: &ZooKeeperCluster,
    names: &Names,
    observed: &Observed,
    step: &Step,
    admin_password: &str,
) -> Result<(), Error> {
    match step {
        Step::Restart { ordinal, reason } => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
            pods.delete(&names.pod(*ordinal), &DeleteParams::default()).await?;
            publish(
                ctx,
                zk,
                EventType::Normal,
                "RestartingMember",
                format!("restarting {}: {reason}", names.pod(*ordinal)),
            )
            .await;
        }
        Step::AddVoter { id } => {
            let line = ensemble::member_line(names, &ctx.settings, *id);
            let result = ensemble::reconfigure(observed, admin_password, Some(&line), None, *id).await;
            report_reconfiguration(
                ctx,
                zk,
                "AddedVoter",
                format!("server.{id} joined the ensemble's voters"),
                result,
            )
            .await;
        }
        Step::RemoveVoter { id } => {
            let result = ensemble::reconfigure(observed, admin_password, None, Some(*id), *id).await;
            report_reconfiguration(
                ctx,
                zk,
                "RemovedVoter",
                format!("server.{id} left the ensemble"),
                result,
            )
            .await;
        }
        Step::SetReplicas(n) => {
            publish(
                ctx,
                zk,
                EventType::Normal,
                "Resized",
                format!("StatefulSet resized to {n} members"),
            )
            .await;
        }
        Step::DeleteVolume { ordinal } => {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
            let claim = names.claim(*ordinal);
            claims.delete(&claim, &DeleteParams::default()).await?;
            let note = format!("deleted {claim}, retained when member {ordinal} was removed: it is added again empty");
            publish(ctx, zk, EventType::Normal, "DeletedStaleVolume", note).await;
        }
        Step::Wait(_) | Step::Idle => {}
    }
    Ok(())
}

async fn report_reconfiguration(
    ctx: &Context,
    zk: &ZooKeeperCluster,
    reason: &str,
    done: String,
    result: Result<(), String>,
) {
    match result {
        Ok(()) => publish(ctx, zk, EventType::Normal, reason, done).await,
        // Not an error of the reconcile: the next one observes the ensemble again and decides anew.
        Err(why) => publish(ctx, zk, EventType::Warning, "ReconfigurationPending", why).await,
    }
}

/// The super user's password, from the cluster's admin Secret, created on first use.
async fn ensure_admin_secret(client: &Client, zk: &ZooKeeperCluster, names: &Names) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &names.namespace);
    if let Some(secret) = secrets.get_opt(&names.admin_secret()).await? {
        if let Some(password) = secret.data.as_ref().and_then(|d| d.get(ADMIN_PASSWORD_KEY)) {
            return Ok(String::from_utf8_lossy(&password.0).into_owned());
        }
    }
    let password = ensemble::new_password();
    let secret = resources::admin_secret(zk, &password);
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(password),
        // Created meanwhile by another reconcile: use that one.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let secret = secrets.get(&names.admin_secret()).await?;
            let password = secret
                .data
                .as_ref()
                .and_then(|d| d.get(ADMIN_PASSWORD_KEY))
                .map(|p| p.0.clone())
                .unwrap_or_default();
            Ok(String::from_utf8_lossy(&password).into_owned())
        }
        Err(error) => Err(error.into()),
    }
}

async fn apply<K>(client: &Client, object: &K) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), object.meta().namespace.as_deref().unwrap_or("default"));
    api.patch(
        &object.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(object),
    )
    .await?;
    Ok(())
}

/// Pods of the cluster and what each one's `srvr` says.
async fn observe(client: &Client, names: &Names, statefulset: Option<&StatefulSet>) -> Result<Observed, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &names.namespace);
    let list = pods
        .list(&ListParams::default().labels(&names.label_selector()))
        .await?;
    let update_revision = statefulset
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());
    let probes = list.items.into_iter().filter_map(|pod| {
        let name = pod.name_any();
        let up_to_date =
            update_revision.is_some() && pod.labels().get("controller-revision-hash") == update_revision.as_ref();
        let ordinal = name
            .strip_prefix(&format!("{}-", names.statefulset()))?
            .parse::<u32>()
            .ok()?;
        let address = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .map(|ip| format!("{ip}:{CLIENT_PORT}"));
        let terminating = pod.metadata.deletion_timestamp.is_some();
        Some(tokio::task::spawn_blocking(move || {
            let serving = address
                .as_ref()
                .filter(|_| !terminating)
                .and_then(|address| zk_agent::probe::ready(address, Duration::from_secs(2)).ok());
            MemberObservation {
                pod: name,
                ordinal,
                serving,
                up_to_date,
                terminating,
                address,
            }
        }))
    });
    let mut members: Vec<MemberObservation> = futures::future::join_all(probes)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    members.sort_by_key(|m| m.ordinal);
    let statefulset = statefulset.map(|sts| {
        let s = sts.status.clone().unwrap_or_default();
        let generation_seen = s.observed_generation >= sts.metadata.generation;
        StatefulSetObservation {
            replicas: s.replicas,
            ready_replicas: s.ready_replicas.unwrap_or(0),
            updated_replicas: s.updated_replicas.unwrap_or(0),
            // With OnDelete the StatefulSet controller never advances currentRevision, so
            // "rolled out" is every pod on the update revision.
            rolled_out: generation_seen
                && s.updated_replicas.unwrap_or(0) == sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
        }
    });
    Ok(Observed { statefulset, members })
}

/// Ordinals at or beyond the StatefulSet's size that still have a volume (retained by
/// `whenScaled: Retain`, or not yet deleted).
async fn leftover_volumes(client: &Client, names: &Names, replicas: u32) -> Result<BTreeSet<u32>, Error> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &names.namespace);
    let prefix = format!("{}-", names.claim_prefix());
    Ok(claims
        .list(&ListParams::default().labels(&names.label_selector()))
        .await?
        .items
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter_map(|c| c.name_any().strip_prefix(&prefix)?.parse::<u32>().ok())
        .filter(|ordinal| *ordinal >= replicas)
        .collect())
}

/// Volumes grow in place (where the StorageClass allows expansion); the StatefulSet's claim
/// templates cannot change, so each member's claim is resized.
async fn grow_volumes(ctx: &Context, zk: &ZooKeeperCluster, names: &Names) -> Result<(), Error> {
    let Some(wanted) = quantity_bytes(&zk.spec.storage.size) else {
        return Ok(());
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
    for claim in claims
        .list(&ListParams::default().labels(&names.label_selector()))
        .await?
        .items
    {
        let requested = claim
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .and_then(|q| quantity_bytes(&q.0));
        if requested.is_some_and(|r| r < wanted) {
            let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": zk.spec.storage.size}}}});
            if let Err(error) = claims
                .patch(&claim.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                let note = format!("cannot grow {} to {}: {error}", claim.name_any(), zk.spec.storage.size);
                warn_event(ctx, zk, "VolumeResizeFailed", note).await;
            }
        }
    }
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

fn template_hash(sts: &StatefulSet) -> Option<String> {
    sts.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CONFIG_HASH_ANNOTATION)
        .cloned()
}

#[allow(clippy::too_many_arguments)]
async fn publish_events(
    ctx: &Context,
    zk: &ZooKeeperCluster,
    created: bool,
    previous_hash: Option<String>,
    statefulset: &StatefulSet,
    recorded_state: Option<&str>,
    ensemble_state: EnsembleState,
    status: &zkop_api::ZooKeeperClusterStatus,
) {
    let mut events = Vec::new();
    if created {
        events.push((
            EventType::Normal,
            "Creating",
            format!("creating an ensemble of {} members", zk.spec.replicas),
        ));
    }
    let new_hash = template_hash(statefulset);
    if previous_hash.is_some() && previous_hash != new_hash {
        events.push((
            EventType::Normal,
            "ConfigurationChanged",
            "spec.config changed: restarting members to apply it".into(),
        ));
    }
    if recorded_state != Some("existing") && ensemble_state == EnsembleState::Existing {
        events.push((
            EventType::Normal,
            "Bootstrapped",
            "the ensemble reached quorum for the first time; empty members must now sync before voting".into(),
        ));
    }
    let was_available = status::condition_is_true(zk.status.as_ref(), AVAILABLE);
    let is_available = status::condition_is_true(Some(status), AVAILABLE);
    if is_available && !was_available {
        events.push((
            EventType::Normal,
            "Available",
            format!("quorum served, leader {}", status.leader.as_deref().unwrap_or("?")),
        ));
    }
    if was_available && !is_available {
        events.push((
            EventType::Warning,
            "QuorumLost",
            "fewer than a quorum of members serve".into(),
        ));
    }
    for (kind, reason, note) in events {
        publish(ctx, zk, kind, reason, note).await;
    }
}

async fn warn_event(ctx: &Context, zk: &ZooKeeperCluster, reason: &str, note: String) {
    publish(ctx, zk, EventType::Warning, reason, note).await;
}

async fn publish(ctx: &Context, zk: &ZooKeeperCluster, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &zk.object_ref(&())).await {
        tracing::warn!(%error, reason, "could not publish event");
    }
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
