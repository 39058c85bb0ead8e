//! The controller: what it watches, and the reconcile pipeline.
//!
//! A reconcile reads as: observe (`observe`), compute the desired objects (`resources`, pure),
//! apply them (`apply`), plan the next day-2 step (`planner`, pure), execute it (`execute`),
//! write status and events (`report`). A failure in any stage names the stage and the object,
//! and becomes a condition and a Warning event.

use crate::applied::AppliedMemo;
use crate::error::{Error, Stage};
use crate::events::{EventType, Publisher};
use crate::metrics::{ClusterLabels, Metrics};
use crate::observe::{self, Observation};
use crate::planner::{self, ClusterView, Step};
use crate::resources::{self, Inputs, Names, OperatorSettings};
use crate::status::{self, Operation, StatusInputs};
use crate::{apply, backups, execute, report, tls};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vocabulary::tls::Phase;
use zk_agent::guard::EnsembleState;
use zkop_api::ZooKeeperCluster;

pub const MANAGER: &str = "zookeeper-operator";
/// Seconds between looks at a settled cluster, at a busy one, and at one whose certificates
/// are being renewed or rotated.
const SETTLED_LOOK: u64 = 30;
const BUSY_LOOK: u64 = 2;
const TLS_LOOK: u64 = 5;
/// Every object the operator makes carries this label; it watches nothing else.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=zookeeper-operator";

pub struct Context {
    pub client: Client,
    pub settings: OperatorSettings,
    pub events: Publisher,
    pub metrics: Arc<Metrics>,
    /// What was last applied, so that an unchanged object is not written again.
    pub applied: AppliedMemo,
    /// Per cluster: how long to wait before looking again while nothing changes.
    quiet: Mutex<HashMap<String, Duration>>,
}

impl Context {
    pub fn new(client: Client, settings: OperatorSettings, metrics: Arc<Metrics>) -> Context {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| MANAGER.into());
        Context {
            events: Publisher::new(client.clone(), MANAGER, &instance),
            client,
            settings,
            metrics,
            applied: AppliedMemo::default(),
            quiet: Mutex::default(),
        }
    }

    /// When to look at a cluster again. Every change of its objects, pods or spec triggers a
    /// reconcile at once; the timer is for what only polling sees (a member's role, TLS files
    /// reloaded, a timeout passing). Settled: 30 s. Something was done or changed: 2 s. Waiting
    /// with nothing changing: 4 s, doubling to 30 s (5 s while certificates change hands).
    fn next_look(&self, cluster: &str, settled: bool, changed: bool, tls_in_flux: bool) -> Duration {
        let mut quiet = self.quiet.lock().unwrap_or_else(|e| e.into_inner());
        if settled || changed {
            quiet.remove(cluster);
            return Duration::from_secs(if settled { SETTLED_LOOK } else { BUSY_LOOK });
        }
        let cap = Duration::from_secs(if tls_in_flux { TLS_LOOK } else { SETTLED_LOOK });
        let next = quiet
            .get(cluster)
            .map_or(Duration::from_secs(2 * BUSY_LOOK), |d| *d * 2)
            .min(cap);
        quiet.insert(cluster.to_string(), next);
        next
    }

    /// Drops what the operator keeps about a deleted cluster: its metric series, its applied
    /// objects' memo and its backoff. Called from wherever the deletion is seen first: a
    /// reconcile of a cluster that is terminating (foreground deletion) or already gone, or a
    /// reconcile the controller could not start because the cluster is no longer in its cache
    /// (background deletion: the watch's delete, or an owned object's deletion that follows it).
    fn forget_cluster(&self, namespace: &str, name: &str) {
        let key = format!("{namespace}/{name}");
        self.metrics.forget(namespace, name);
        self.quiet.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        self.applied.forget_matching(&key);
    }

    pub async fn publish(&self, zk: &ZooKeeperCluster, type_: EventType, reason: &str, note: String) {
        self.publish_for(&zk.object_ref(&()), type_, reason, note).await;
    }

    pub async fn publish_for(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        if let Err(error) = self.events.publish(object, type_, reason, &note).await {
            tracing::warn!(%error, reason, "could not publish event");
        }
    }
}

/// Runs the controller over every namespace, or over each of `namespaces` (the chart's
/// namespace-scoped install, where the operator may read nothing else).
pub async fn run(ctx: Arc<Context>, namespaces: &[String]) {
    if namespaces.is_empty() {
        run_in(ctx, None).await;
    } else {
        futures::future::join_all(namespaces.iter().map(|ns| run_in(ctx.clone(), Some(ns.as_str())))).await;
    }
}

async fn run_in(ctx: Arc<Context>, namespace: Option<&str>) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let client = ctx.client.clone();
    let resource = ApiResource::erase::<ZooKeeperCluster>(&());
    // Clusters are read as dynamic objects and decoded one by one, so that one that cannot be
    // decoded is reported on its own and does not stall the watch of all the others.
    let clusters: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    let owned = watcher::Config::default().labels(MANAGED_SELECTOR);
    let pods = watcher::Config::default().labels(&format!("app.kubernetes.io/name=zookeeper,{MANAGED_SELECTOR}"));
    let cluster_of_pod = {
        let resource = resource.clone();
        move |pod: Pod| {
            let cluster = pod.labels().get("app.kubernetes.io/instance").cloned();
            let namespace = pod.namespace();
            cluster
                .zip(namespace)
                .map(|(name, ns)| ObjectRef::new_with(&name, resource.clone()).within(&ns))
        }
    };
    Controller::new_with(clusters, watcher::Config::default(), resource)
        .owns_with(api::<StatefulSet>(&client, namespace), (), owned.clone())
        .owns_with(api::<ConfigMap>(&client, namespace), (), owned.clone())
        .owns_with(api::<Service>(&client, namespace), (), owned.clone())
        // Backup and restore-check jobs: a finished one is read at once.
        .owns_with(api::<Job>(&client, namespace), (), owned)
        .watches(api::<Pod>(&client, namespace), pods, cluster_of_pod)
        .with_config(controller::Config::default().debounce(Duration::from_millis(500)))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            let ctx = ctx.clone();
            async move {
                match result {
                    Ok((object, _)) => tracing::debug!(cluster = %object.name, "reconciled"),
                    Err(controller::Error::ObjectNotFound(object)) => {
                        ctx.forget_cluster(object.namespace.as_deref().unwrap_or_default(), &object.name);
                        tracing::debug!(cluster = %object.name, "deleted; forgotten");
                    }
                    Err(error) => tracing::warn!(%error, "reconcile failed"),
                }
            }
        })
        .await;
}

fn error_policy(object: Arc<DynamicObject>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(cluster = %object.name_any(), %error, "will retry");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(object: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let object = match current(&ctx.client, &object).await {
        Ok(Some(object)) => object,
        Ok(None) => {
            ctx.forget_cluster(object.namespace().as_deref().unwrap_or_default(), &object.name_any());
            return Ok(Action::await_change());
        }
        Err(error) => {
            ctx.metrics.failed(error.stage());
            return Err(error);
        }
    };
    let zk = match decode(&object) {
        Ok((zk, illegible_status)) => {
            if let Some(error) = illegible_status {
                let note = format!("the status could not be read ({error}); it is written anew");
                ctx.publish(&zk, EventType::Warning, "StatusRewritten", note).await;
            }
            zk
        }
        Err(message) => {
            report::undecodable(&ctx, &object, &message).await;
            ctx.metrics.failed(Stage::Decode);
            return Ok(Action::await_change());
        }
    };
    // Every line logged while reconciling names the cluster and, once planned, the operation.
    let span = tracing::info_span!(
        "reconcile",
        cluster = %format!("{}/{}", zk.namespace().unwrap_or_default(), zk.name_any()),
        operation = tracing::field::Empty,
    );
    let result = tracing::Instrument::instrument(reconcile_cluster(&zk, &ctx), span).await;
    ctx.metrics.duration.observe(started.elapsed().as_secs_f64());
    let labels = ClusterLabels {
        namespace: zk.namespace().unwrap_or_default(),
        cluster: zk.name_any(),
    };
    match result {
        Ok(action) => {
            ctx.metrics.failing.get_or_create(&labels).set(0);
            Ok(action)
        }
        Err(error) => {
            ctx.metrics.failed(error.stage());
            ctx.metrics.failing.get_or_create(&labels).set(1);
            report::failure(&ctx, &zk, &error).await;
            Err(error)
        }
    }
}

/// The resource as the API server holds it now (None once it is gone). The watch's copy can
/// predate this operator's own last status write: a reconcile from it wrote the older status
/// back, and what only that write knew was lost for good (seen under load: a restored
/// cluster's `status.restore` went back to its state before the backup was verified).
async fn current(client: &Client, object: &DynamicObject) -> Result<Option<DynamicObject>, Error> {
    use crate::error::At;
    let resource = ApiResource::erase::<ZooKeeperCluster>(&());
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
    api.get_opt(&object.name_any()).await.at(
        Stage::Observe,
        format!("ZooKeeperCluster {namespace}/{}", object.name_any()),
    )
}

/// The resource, from the dynamic object the watch delivered. A status that cannot be read is
/// dropped (the operator writes it anew; the reason is returned beside the resource), keeping
/// the ensemble-state witness if it is legible; a spec that cannot be read is an error naming
/// the field.
pub fn decode(object: &DynamicObject) -> Result<(ZooKeeperCluster, Option<String>), String> {
    let mut value = serde_json::to_value(object).map_err(|e| e.to_string())?;
    let read = |value: serde_json::Value| {
        serde_path_to_error::deserialize::<_, ZooKeeperCluster>(value)
            .map_err(|e| format!("{} at {}", e.inner(), e.path()))
    };
    match read(value.clone()) {
        Ok(zk) => Ok((zk, None)),
        Err(error) => {
            let witness = value
                .pointer("/status/ensembleState")
                .and_then(|s| s.as_str())
                .map(String::from);
            let Some(map) = value.as_object_mut() else {
                return Err(error);
            };
            if map.remove("status").is_none() {
                return Err(error);
            }
            let mut zk = read(value).map_err(|_| error.clone())?;
            tracing::warn!(cluster = %zk.name_any(), %error, "the status cannot be read; writing it anew");
            zk.status = Some(zkop_api::ZooKeeperClusterStatus {
                ensemble_state: witness,
                ..Default::default()
            });
            Ok((zk, Some(error)))
        }
    }
}

async fn reconcile_cluster(zk: &ZooKeeperCluster, ctx: &Context) -> Result<Action, Error> {
    let names = Names::of(zk);
    if zk.metadata.deletion_timestamp.is_some() {
        // Owner references remove what the cluster owns; volumes follow the retention policy.
        ctx.forget_cluster(&names.namespace, &names.cluster);
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();

    let observation = observe::observe(&ctx.client, zk, &names, &ctx.settings).await?;
    ctx.metrics
        .api_reachable
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let ensemble_state = status::ensemble_state(
        observation.recorded_ensemble_state(),
        status::available(zk, &observation.members),
        zk.status.as_ref(),
        observe::volumes_predate_cluster(zk, &names, &observation.claims),
    );

    // TLS: the step the members' template is at, and the next one once a roll is done.
    let enabled = zk.spec.tls.enabled;
    let new_cluster = observation.statefulset.is_none();
    // The members' template says which step they are at; status, the same, if it was written.
    let recorded_phase = observation.template_tls_phase().or_else(|| {
        zk.status
            .as_ref()
            .and_then(|s| s.tls.as_ref())
            .and_then(|t| Phase::parse(&t.phase))
    });
    let running_phase = tls::phase(enabled, recorded_phase, new_cluster, false);
    let plan = plan(
        zk,
        &names,
        &ctx.settings,
        &observation,
        ensemble_state,
        running_phase,
        now,
    );
    if let Some((kind, _)) = plan.as_ref().and_then(|(view, step)| planner::describe(view, step)) {
        tracing::Span::current().record("operation", kind);
    }
    let roll_done = matches!(plan, Some((_, Step::Idle)));
    let tls_phase = tls::phase(enabled, Some(running_phase), new_cluster, roll_done);
    let material = if enabled || tls_phase != Phase::Plaintext {
        let planned = tls::plan(tls::TlsInputs {
            zk,
            names: &names,
            cluster_domain: &ctx.settings.cluster_domain,
            authority: observation.tls.authority.clone(),
            user_authority: observation.tls.user_authority.clone(),
            member: observation.tls.member.clone(),
            clients: observation.tls.clients.clone(),
            members_show: observation.tls.members_show,
            now: std::time::SystemTime::now(),
        })
        .map_err(|message| Error::Tls { message })?;
        Some(planned)
    } else {
        None
    };
    let statefulset_replicas = match &plan {
        Some((_, Step::SetReplicas(n))) => i32::try_from(*n).unwrap_or(zk.spec.replicas),
        Some((view, _)) => i32::try_from(view.statefulset_replicas).unwrap_or(zk.spec.replicas),
        None => zk.spec.replicas,
    };
    let claim_templates = observation
        .statefulset
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.volume_claim_templates.clone());
    let desired = resources::desired(
        zk,
        &ctx.settings,
        Inputs {
            ensemble_state,
            existing_claim_templates: claim_templates.as_deref(),
            statefulset_replicas,
            tls_phase,
            restore_allowed: observation.refusals.restore.is_none(),
        },
    );
    let secrets = material
        .as_ref()
        .map(|m| resources::tls_secrets(zk, &names, m))
        .unwrap_or_default();

    // Backup and restore-check jobs, read only where backups or a restore are declared (or a
    // job may be left over): most clusters cost no extra request.
    let backups_in_play = zk.spec.backup.is_some()
        || zk.spec.restore_from.is_some()
        || zk
            .status
            .as_ref()
            .is_some_and(|s| s.backup.as_ref().is_some_and(|b| b.running.is_some()));
    let jobs = if backups_in_play {
        backups::observe_jobs(&ctx.client, &names, &zk.uid().unwrap_or_default()).await?
    } else {
        Vec::new()
    };
    let now_seconds = now.as_second();
    let restore_gate = backups::restore_gate(backups::RestoreInputs {
        cluster: &names.cluster,
        spec: zk.spec.restore_from.as_ref(),
        generation: zk.metadata.generation.unwrap_or(0),
        members_exist: observation.statefulset.is_some(),
        retained_volumes: &observe::retained_volumes(zk, &names, &observation.claims),
        status: zk.status.as_ref().and_then(|s| s.restore.as_ref()),
        jobs: &jobs,
        refused: observation.refusals.restore.as_deref(),
        now: now_seconds,
    });

    let written = apply::apply(
        ctx,
        zk,
        &names,
        &desired,
        &secrets,
        &observation,
        restore_gate.create_members,
    )
    .await?;
    allow_hand_off(ctx, zk, &names, &observation, tls_phase).await;

    let outcome = match &plan {
        Some((_, step)) => execute::execute(ctx, &names, &observation, step, running_phase.local_plaintext()).await?,
        None => None,
    };
    let backup_plan = backups::plan_backups(
        &names.cluster,
        zk.spec.backup.as_ref(),
        zk.status.as_ref().and_then(|s| s.backup.as_ref()),
        zk.annotations().get(zkop_api::BACKUP_ANNOTATION).map(String::as_str),
        observation.refusals.backup.as_deref(),
        &jobs,
        &observation.members,
        now_seconds,
    );
    let backup_outcome = run_backup_jobs(ctx, zk, &names, &restore_gate, backup_plan, now_seconds).await;
    let tls_events = material.as_ref().map(|m| m.events.clone()).unwrap_or_default();

    let operation = plan
        .as_ref()
        .and_then(|(view, step)| planner::describe(view, step))
        .map(|(kind, step)| Operation {
            kind: kind.to_string(),
            step,
        });
    let stuck: Vec<String> = plan
        .as_ref()
        .map(|(view, _)| planner::stuck(view).iter().map(|m| names.pod(m.ordinal)).collect())
        .unwrap_or_default();
    let template_changed = template_changed(observation.statefulset.as_ref(), &desired.statefulset);
    let status = status::compute(
        zk,
        StatusInputs {
            template_changed,
            members: &observation.members,
            statefulset: observation.statefulset_status.as_ref(),
            operation: operation.as_ref(),
            stuck: &stuck,
            ensemble_state,
            tls: Some(tls_status(tls_phase, &observation, material.as_ref())),
            selector: names.label_selector(),
            voters: plan
                .as_ref()
                .and_then(|(view, _)| view.voters.as_ref())
                .map(|v| v.len()),
            now: Time(now),
        },
    );
    ctx.metrics.set_operation(
        &names.namespace,
        &names.cluster,
        operation.as_ref().map(|o| o.kind.as_str()),
    );
    let serving: Vec<(String, bool)> = observation
        .members
        .iter()
        .map(|m| (m.pod.clone(), m.serves()))
        .collect();
    ctx.metrics.set_members(&names.namespace, &names.cluster, &serving);
    ctx.metrics
        .stuck_members
        .get_or_create(&ClusterLabels {
            namespace: names.namespace.clone(),
            cluster: names.cluster.clone(),
        })
        .set(i64::try_from(stuck.len()).unwrap_or(i64::MAX));

    let changes = report::Changes {
        created: observation.statefulset.is_none(),
        configuration_changed: template_changed,
        bootstrapped: observation.recorded_ensemble_state() != Some(status::EXISTING)
            && ensemble_state == EnsembleState::Existing
            && observation.statefulset.is_some(),
    };
    let mut status = status;
    backup_status(zk, &mut status, &restore_gate, &backup_outcome, Time(now));
    ctx.metrics.set_backup(
        &names.namespace,
        &names.cluster,
        status.backup.as_ref().filter(|_| zk.spec.backup.is_some()).map(|b| {
            let interval = zk
                .spec
                .backup
                .as_ref()
                .and_then(|s| s.schedule.as_deref())
                .filter(|_| !zk.spec.backup.as_ref().is_some_and(|s| s.suspend))
                .and_then(|e| backups::schedule_interval(e, now_seconds))
                .unwrap_or(0);
            (b, interval)
        }),
        backup_outcome.new_failures,
    );
    let tls_problem = material.as_ref().and_then(|m| m.problem.clone());
    if let Some(problem) = &tls_problem {
        status.message = Some(problem.clone());
    }
    let tls_events = tls_events
        .into_iter()
        .map(|(reason, note)| (EventType::Normal, reason, note))
        .chain(tls_problem.map(|p| (EventType::Warning, "CertificateAuthorityUnavailable", p)));
    for (type_, reason, note) in report::events(zk, &status, &changes)
        .into_iter()
        .chain(outcome)
        .chain(tls_events)
        .chain(backup_outcome.events.iter().map(|(t, r, n)| (*t, *r, n.clone())))
    {
        ctx.publish(zk, type_, reason, note).await;
    }
    let status_changed = zk.status.as_ref() != Some(&status);
    if status_changed {
        report::write_status(ctx, &names, &status).await?;
    }

    let settled = operation.is_none()
        && status::condition_is_true(Some(&status), status::AVAILABLE)
        && status.ready_replicas == zk.spec.replicas
        && !status::condition_is_true(Some(&status), status::PROGRESSING);
    let acted = matches!(&plan, Some((_, step)) if !matches!(step, Step::Wait(_) | Step::Idle));
    let tls_in_flux = material
        .as_ref()
        .is_some_and(|m| m.authority.rotation != tls::Rotation::None)
        || observation.tls.serving_current.0 < observation.tls.serving_current.1;
    let mut requeue = ctx.next_look(
        &format!("{}/{}", names.namespace, names.cluster),
        settled,
        acted || written > 0 || status_changed,
        tls_in_flux,
    );
    // A member falls due to be declared stuck before then: look again on time.
    if let Some((view, _)) = &plan {
        if let Some(due) = view
            .members
            .iter()
            .filter(|m| !m.serves() && m.down_for < view.member_ready_timeout)
            .map(|m| view.member_ready_timeout - m.down_for)
            .min()
        {
            requeue = requeue.min(due + Duration::from_secs(1));
        }
    }
    // A backup falls due, or a refused restore is checked again.
    if let Some(due) = backup_outcome.next_in {
        requeue = requeue.min(Duration::from_secs(u64::try_from(due).unwrap_or(1).max(1)));
    }
    // A certificate or the authority falls due before then: look again on time.
    if let Some(due) = material.as_ref().and_then(|m| m.next_due) {
        let wait = due
            .saturating_sub(tls::now_seconds(std::time::SystemTime::now()))
            .max(1);
        requeue = requeue.min(Duration::from_secs(wait));
    }
    Ok(Action::requeue(requeue))
}

/// What the backup stage did, for status, events, metrics and the requeue.
struct BackupOutcome {
    status: Option<zkop_api::BackupStatus>,
    events: Vec<(EventType, &'static str, String)>,
    next_in: Option<i64>,
    waiting: Option<String>,
    new_failures: u64,
}

/// Starts the restore check and the backup the plans ask for, and removes finished jobs whose
/// results status holds. A job that cannot be created is a failed backup (a condition and a
/// Warning event), never a failed reconcile: the rest of the cluster's upkeep goes on.
async fn run_backup_jobs(
    ctx: &Context,
    zk: &ZooKeeperCluster,
    names: &Names,
    gate: &backups::RestoreGate,
    plan: backups::BackupPlan,
    now: i64,
) -> BackupOutcome {
    let mut outcome = BackupOutcome {
        status: plan.status,
        events: gate.events.iter().cloned().chain(plan.events).collect(),
        next_in: [plan.next_in, gate.next_in].into_iter().flatten().min(),
        waiting: plan.waiting,
        new_failures: 0,
    };
    outcome.new_failures = outcome
        .events
        .iter()
        .filter(|(_, reason, _)| *reason == "BackupFailed")
        .count() as u64;
    if let (Some(job_name), Some(restore)) = (&gate.start_check, &zk.spec.restore_from) {
        let job = backups::restore_check_job(zk, names, restore, job_name, zk.metadata.generation.unwrap_or(0));
        if let Err(error) = backups::create_job(&ctx.client, &job).await {
            ctx.metrics.failed(error.stage());
            outcome
                .events
                .push((EventType::Warning, "RestoreCheckNotStarted", error.to_string()));
            outcome.next_in = Some(backups::RESTORE_RECHECK_SECONDS);
        }
    }
    if let (Some(start), Some(spec)) = (plan.start, &zk.spec.backup) {
        let started = match backups::member_node(&ctx.client, names, &start.member).await {
            Ok(Some(node)) => backups::create_job(&ctx.client, &backups::backup_job(zk, names, spec, &start, &node))
                .await
                .map_err(|e| e.to_string()),
            Ok(None) => Err(format!("the member {} is not scheduled on a node", start.member)),
            Err(error) => Err(error.to_string()),
        };
        match started {
            Ok(()) => outcome.events.push((
                EventType::Normal,
                "BackupStarted",
                format!(
                    "backup {} of {} up to zxid 0x{:x} (job {})",
                    start.backup, start.member, start.committed_zxid, start.job
                ),
            )),
            Err(reason) => {
                ctx.metrics.failed(crate::error::Stage::Backup);
                outcome.new_failures += 1;
                outcome.events.push((
                    EventType::Warning,
                    "BackupFailed",
                    format!("backup {} could not start: {reason}", start.backup),
                ));
                if let Some(status) = outcome.status.as_mut() {
                    status.running = None;
                    status.last_failure = Some(zkop_api::BackupFailure {
                        name: start.backup.clone(),
                        time: zk_agent::backup::rfc3339(now),
                        reason: format!("the backup job could not start: {reason}"),
                    });
                }
            }
        }
    }
    for job in gate
        .delete
        .iter()
        .chain(outcome.status.iter().flat_map(|_| plan.delete.iter()))
    {
        if let Err(error) = backups::delete_job(&ctx.client, names, job).await {
            tracing::warn!(%error, job, "could not remove a finished job; trying again later");
        }
    }
    outcome
}

/// Status of backups and of the restore: their sections, the Backup and Restored conditions,
/// and the message while a restore holds the members back.
fn backup_status(
    zk: &ZooKeeperCluster,
    status: &mut zkop_api::ZooKeeperClusterStatus,
    gate: &backups::RestoreGate,
    outcome: &BackupOutcome,
    now: Time,
) {
    status.backup = outcome.status.clone();
    status.restore = gate.status.clone();
    let generation = zk.metadata.generation;
    let previous = status.conditions.clone();
    let mut set = |kind: &str, ok: Option<bool>, reason: &str, message: String| {
        status.conditions.retain(|c| c.type_ != kind);
        if let Some(ok) = ok {
            status.conditions.push(status::condition(
                &previous,
                kind,
                ok,
                reason,
                message,
                generation,
                now.clone(),
            ));
        }
    };
    match (zk.spec.backup.as_ref(), status.backup.clone()) {
        (Some(_), Some(backup)) => {
            let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
            let failed_last = backup.last_failure.as_ref().is_some_and(|f| {
                backup
                    .last_successful
                    .as_ref()
                    .is_none_or(|s| time(&f.time) > time(&s.time))
            });
            match (&backup.last_successful, &backup.last_failure) {
                (_, Some(failure)) if failed_last => set(
                    "BackupSucceeded",
                    Some(false),
                    "BackupFailed",
                    format!("backup {} failed: {}", failure.name, failure.reason),
                ),
                (Some(success), _) => set(
                    "BackupSucceeded",
                    Some(true),
                    "BackupSucceeded",
                    format!(
                        "backup {} up to zxid {} at {}",
                        success.name, success.zxid, success.location
                    ),
                ),
                _ => set(
                    "BackupSucceeded",
                    Some(false),
                    "NoBackupYet",
                    outcome
                        .waiting
                        .clone()
                        .unwrap_or_else(|| match &backup.next_scheduled_time {
                            Some(next) => format!("no backup yet; the first is scheduled for {next}"),
                            None => {
                                "no backup yet; set the zookeeper.zkop.io/backup-requested-at annotation to take one"
                                    .into()
                            }
                        }),
                ),
            }
        }
        _ => set("BackupSucceeded", None, "", String::new()),
    }
    match (&zk.spec.restore_from, &status.restore) {
        (Some(_), Some(restore)) => {
            let ok = restore.phase == "Verified";
            set(
                "Restored",
                Some(ok),
                if ok {
                    "BackupVerified"
                } else if restore.phase == "Refused" {
                    "RestoreRefused"
                } else {
                    "CheckingBackup"
                },
                restore.message.clone().unwrap_or_default(),
            );
            if !gate.create_members {
                status.message = restore.message.clone();
            }
        }
        _ => set("Restored", None, "", String::new()),
    }
}

/// Members may reconfigure (for the hand-off in their preStop hook) exactly while the pods have
/// that hook: TLS on and `spec.rollout.leaderHandOff`.
async fn allow_hand_off(ctx: &Context, zk: &ZooKeeperCluster, names: &Names, observation: &Observation, phase: Phase) {
    let Some(writers) = observation.ensemble.as_ref().and_then(|e| e.reconfig_writers.as_ref()) else {
        return;
    };
    let wanted: std::collections::BTreeSet<String> = if phase.secure_clients() && zk.spec.rollout.leader_hand_off {
        [tls::member_identity(names, &ctx.settings.cluster_domain)].into()
    } else {
        Default::default()
    };
    if *writers == wanted {
        return;
    }
    let targets = crate::observe::serving_targets(&observation.members, None);
    match crate::ensemble::allow_reconfiguration(&targets, &observation.credentials, &wanted).await {
        Ok(()) => tracing::info!(?wanted, "the identities that may reconfigure besides the super user"),
        Err(why) => {
            ctx.publish(
                zk,
                EventType::Warning,
                "HandOffAccessPending",
                format!("members cannot yet hand leadership off when they stop (an election follows instead): {why}"),
            )
            .await
        }
    }
}

/// TLS as status shows it.
fn tls_status(phase: Phase, observation: &Observation, material: Option<&tls::TlsPlan>) -> zkop_api::TlsStatus {
    let (serving, checked) = observation.tls.serving_current;
    let member_not_after = observation.tls.member.as_ref().map(|m| m.not_after);
    zkop_api::TlsStatus {
        phase: phase.as_str().to_string(),
        certificate_not_after: member_not_after.filter(|n| *n > 0).map(tls::rfc3339),
        ca_not_after: material
            .map(|m| m.authority.signing.not_after)
            .filter(|n| *n > 0)
            .map(tls::rfc3339),
        ca_rotation: material
            .map(|m| m.authority.rotation)
            .filter(|r| *r != tls::Rotation::None)
            .map(|r| format!("{r:?}")),
        serving_current_certificate: (checked > 0).then(|| format!("{serving}/{checked}")),
    }
}

/// The planner's view and step, once the ensemble exists; until then the StatefulSet simply
/// follows the spec.
fn plan(
    zk: &ZooKeeperCluster,
    names: &Names,
    settings: &OperatorSettings,
    observation: &Observation,
    ensemble_state: EnsembleState,
    phase: Phase,
    now: Timestamp,
) -> Option<(ClusterView, Step)> {
    if observation.statefulset.is_none() || ensemble_state != EnsembleState::Existing {
        return None;
    }
    let view = observe::cluster_view(zk, names, settings, observation, phase.local_plaintext(), now);
    let step = planner::plan(&view);
    Some((view, step))
}

/// The configuration revision the pod template names changed: a roll follows.
fn template_changed(existing: Option<&StatefulSet>, desired: &StatefulSet) -> bool {
    let hash = |sts: &StatefulSet| sts.annotations().get(resources::TEMPLATE_HASH_ANNOTATION).cloned();
    existing.is_some_and(|e| hash(e) != hash(desired))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dynamic(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_cluster_decodes_from_the_dynamic_object_the_watch_delivers() {
        let object = dynamic(json!({
            "apiVersion": "zookeeper.zkop.io/v1alpha1", "kind": "ZooKeeperCluster",
            "metadata": {"name": "zk", "namespace": "ns"},
            "spec": {"replicas": 3},
            "status": {"readyReplicas": 3, "ensembleState": "existing"},
        }));
        let (zk, illegible) = decode(&object).unwrap();
        assert!(illegible.is_none());
        assert_eq!(zk.spec.replicas, 3);
        assert_eq!(zk.status.unwrap().ready_replicas, 3);
    }

    #[test]
    fn an_illegible_status_is_dropped_but_the_ensemble_state_is_kept() {
        let object = dynamic(json!({
            "apiVersion": "zookeeper.zkop.io/v1alpha1", "kind": "ZooKeeperCluster",
            "metadata": {"name": "zk", "namespace": "ns"},
            "spec": {},
            "status": {"readyReplicas": 5_000_000_000u64, "ensembleState": "existing"},
        }));
        let (zk, illegible) = decode(&object).unwrap();
        assert!(illegible.unwrap().contains("status.readyReplicas"));
        let status = zk.status.unwrap();
        assert_eq!(status.ready_replicas, 0);
        assert_eq!(status.ensemble_state.as_deref(), Some("existing"));
    }

    #[test]
    fn an_illegible_spec_is_an_error_naming_the_field() {
        let object = dynamic(json!({
            "apiVersion": "zookeeper.zkop.io/v1alpha1", "kind": "ZooKeeperCluster",
            "metadata": {"name": "zk", "namespace": "ns"},
            "spec": {"replicas": "three"},
        }));
        let error = decode(&object).unwrap_err();
        assert!(error.contains("spec.replicas"), "{error}");
    }
}
