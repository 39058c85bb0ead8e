//! Backups and restores, as the operator runs them: pure decisions (when a backup is due, which
//! member it reads, what a finished job means, whether a restored cluster may start) and the
//! jobs that carry them out. The work itself is zk-agent's (`zk-agent backup`, `restore`): a
//! backup job runs on the node of the member it reads and mounts that member's volume
//! read-only; a restore-check job downloads and verifies a backup before any member exists.

use crate::events::EventType;
use crate::observe::MemberObservation;
use crate::resources::{owner_reference, typed, Names, UID};
use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Value};
use std::str::FromStr;
use vocabulary::ServingRole;
use zk_agent::backup::{compact_time, parse_compact_time, rfc3339, JobReport};
use zkop_api::{
    BackupFailure, BackupRecord, BackupSpec, BackupStatus, BackupTarget, RestoreFromSpec, RestoreStatus,
    ZooKeeperCluster,
};

/// Labels of the jobs (and their pods): not the members' selector, so no Service, budget or
/// policy of the members ever selects them.
pub const JOB_NAME_LABEL_VALUE: &str = "zookeeper-backup";
pub const KIND_LABEL: &str = "app.kubernetes.io/component";
pub const BACKUP_KIND: &str = "backup";
pub const RESTORE_CHECK_KIND: &str = "restore-check";
/// The backup a job is about (names may exceed a label's 63 characters).
pub const BACKUP_NAME_ANNOTATION: &str = "zookeeper.zkop.io/backup-name";
pub const MEMBER_ANNOTATION: &str = "zookeeper.zkop.io/member";
/// A job may run this long; then Kubernetes stops it and it counts as failed.
pub const JOB_DEADLINE_SECONDS: i64 = 900;
/// A refused restore is checked again after this long (or at once when the spec changes).
pub const RESTORE_RECHECK_SECONDS: i64 = 120;
/// How often a restore refused for volumes left from an earlier cluster looks again (their
/// deletion triggers nothing the operator watches).
pub const RETAINED_RECHECK_SECONDS: i64 = 15;
const TARGET_MOUNT: &str = "/backup";
const CA_MOUNT: &str = "/etc/backup-ca";

/// A backup or restore-check job as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct JobView {
    pub job: String,
    pub kind: String,
    pub backup: String,
    pub member: String,
    pub state: JobState,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    Running,
    /// Finished; the agent's report if it wrote one.
    Finished(Result<JobReport, String>),
}

/// The member a backup reads: a serving follower with the newest data, the leader only when
/// no follower serves (a one-member ensemble). Its zxid, applied so committed, is the cut.
pub fn pick_member(members: &[MemberObservation]) -> Option<&MemberObservation> {
    let serving = members.iter().filter(|m| m.serves() && m.zxid.is_some());
    let followers = serving.clone().filter(|m| m.role() != Some(ServingRole::Leader));
    followers
        .max_by_key(|m| (m.zxid, std::cmp::Reverse(m.ordinal)))
        .or_else(|| serving.max_by_key(|m| m.zxid))
}

/// A backup to start.
#[derive(Debug, Clone, PartialEq)]
pub struct StartBackup {
    pub backup: String,
    pub job: String,
    pub member: String,
    pub ordinal: u32,
    pub committed_zxid: u64,
}

/// What to do about backups in this reconcile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BackupPlan {
    pub status: Option<BackupStatus>,
    pub start: Option<StartBackup>,
    /// Finished jobs whose result status already holds.
    pub delete: Vec<String>,
    pub events: Vec<(EventType, &'static str, String)>,
    /// Seconds until the next scheduled backup, for the requeue.
    pub next_in: Option<i64>,
    /// Why a due backup waits, for status.
    pub waiting: Option<String>,
}

pub fn schedule(expression: &str) -> Result<croner::Cron, String> {
    croner::Cron::from_str(expression)
        .map_err(|e| format!("spec.backup.schedule {expression:?} is not a cron expression: {e}"))
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

fn parse_time(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.timestamp())
}

/// The job for a backup taken at `now` (names within 63 characters, as job names must be).
pub fn job_name(cluster: &str, kind: &str, now: i64) -> String {
    let suffix = format!("-{kind}-{now:x}");
    let keep = 63usize.saturating_sub(suffix.len());
    let base: String = cluster.chars().take(keep).collect();
    format!("{}{suffix}", base.trim_end_matches('-'))
}

/// Decides the backup step. `requested` is the on-demand annotation's value; `refused` says
/// why the target's Secrets or claim may not be used (`references`), if so.
#[allow(clippy::too_many_arguments)]
pub fn plan_backups(
    cluster: &str,
    spec: Option<&BackupSpec>,
    status: Option<&BackupStatus>,
    requested: Option<&str>,
    refused: Option<&str>,
    jobs: &[JobView],
    members: &[MemberObservation],
    now: i64,
) -> BackupPlan {
    let mut plan = BackupPlan::default();
    let Some(spec) = spec else {
        // Backups switched off: what status said stays (the last backup is still a fact).
        plan.status = status.cloned();
        if let Some(request) = requested.filter(|r| status.and_then(|s| s.last_request.as_deref()) != Some(*r)) {
            plan.events.push((
                EventType::Warning,
                "BackupNotConfigured",
                format!(
                    "a backup was requested ({} = {request}) but spec.backup is not set: set spec.backup.target, then request again",
                    zkop_api::BACKUP_ANNOTATION
                ),
            ));
            let mut next = status.cloned().unwrap_or_default();
            next.last_request = Some(request.to_string());
            plan.status = Some(next);
        }
        plan.delete = jobs
            .iter()
            .filter(|j| j.kind == BACKUP_KIND && j.state != JobState::Running)
            .map(|j| j.job.clone())
            .collect();
        return plan;
    };
    let mut next = status.cloned().unwrap_or_default();
    let jobs: Vec<&JobView> = jobs.iter().filter(|j| j.kind == BACKUP_KIND).collect();
    for job in &jobs {
        let JobState::Finished(result) = &job.state else {
            continue;
        };
        let recorded = next.last_successful.as_ref().is_some_and(|r| r.name == job.backup)
            || next.last_failure.as_ref().is_some_and(|f| f.name == job.backup);
        let recorded_before = status.is_some_and(|s| {
            s.last_successful.as_ref().is_some_and(|r| r.name == job.backup)
                || s.last_failure.as_ref().is_some_and(|f| f.name == job.backup)
        });
        if recorded_before {
            plan.delete.push(job.job.clone());
            continue;
        }
        if recorded {
            continue;
        }
        match result {
            Ok(report) if report.ok => {
                let record = BackupRecord {
                    name: report.backup.clone(),
                    time: if report.created.is_empty() {
                        rfc3339(now)
                    } else {
                        report.created.clone()
                    },
                    zxid: report.zxid.clone().unwrap_or_default(),
                    size_bytes: report.size_bytes,
                    location: report.location.clone(),
                    member: job.member.clone(),
                    duration_seconds: (report.seconds * 10.0).round() / 10.0,
                };
                let deleted = if report.deleted.is_empty() {
                    String::new()
                } else {
                    format!("; retention deleted {}", report.deleted.join(", "))
                };
                plan.events.push((
                    EventType::Normal,
                    "BackupSucceeded",
                    format!(
                        "backup {} of {} up to zxid {} ({} bytes, {:.1} s) at {}{deleted}",
                        record.name, record.member, record.zxid, record.size_bytes, report.seconds, record.location
                    ),
                ));
                next.last_successful = Some(record);
            }
            other => {
                let reason = match other {
                    Ok(report) => report.message.clone(),
                    Err(why) => why.clone(),
                };
                plan.events.push((
                    EventType::Warning,
                    "BackupFailed",
                    format!("backup {} of {} failed: {reason}", job.backup, job.member),
                ));
                next.last_failure = Some(BackupFailure {
                    name: job.backup.clone(),
                    time: rfc3339(now),
                    reason,
                });
            }
        }
    }
    let running = jobs.iter().find(|j| j.state == JobState::Running);
    next.running = running.map(|j| j.job.clone());

    let mut due_slot = None;
    match (spec.schedule.as_deref(), spec.suspend) {
        (Some(expression), false) => match schedule(expression) {
            Ok(cron) => {
                let latest = cron
                    .find_previous_occurrence(&at(now), true)
                    .ok()
                    .map(|t| t.timestamp());
                match next.last_scheduled_time.as_deref().and_then(parse_time) {
                    // A new schedule starts counting now: the first backup is at its next time.
                    None => next.last_scheduled_time = Some(rfc3339(latest.unwrap_or(now))),
                    Some(last) => due_slot = latest.filter(|slot| *slot > last),
                }
                let upcoming = cron.find_next_occurrence(&at(now), false).ok().map(|t| t.timestamp());
                next.next_scheduled_time = upcoming.map(rfc3339);
                plan.next_in = upcoming.map(|t| (t - now).max(1));
            }
            Err(message) => {
                plan.events
                    .push((EventType::Warning, "BackupScheduleInvalid", message.clone()));
                plan.waiting = Some(message);
                next.next_scheduled_time = None;
            }
        },
        _ => next.next_scheduled_time = None,
    }
    let on_demand = requested.filter(|r| next.last_request.as_deref() != Some(*r));
    if (due_slot.is_some() || on_demand.is_some()) && running.is_none() {
        match pick_member(members) {
            // Still due: it starts once the references allow it.
            _ if refused.is_some() => {
                let message = format!("a backup is due and refused: {}", refused.unwrap_or_default());
                plan.events.push((EventType::Warning, "BackupRefused", message.clone()));
                plan.waiting = Some(message);
            }
            None => {
                plan.waiting = Some("a backup is due; waiting for a member that serves to read it from".into());
            }
            Some(member) => {
                let backup = format!("{cluster}-{}", compact_time(now));
                let job = job_name(cluster, BACKUP_KIND, now);
                if !jobs.iter().any(|j| j.job == job || j.backup == backup) {
                    if let Some(slot) = due_slot {
                        next.last_scheduled_time = Some(rfc3339(slot));
                    }
                    if let Some(request) = on_demand {
                        next.last_request = Some(request.to_string());
                    }
                    next.running = Some(job.clone());
                    plan.start = Some(StartBackup {
                        backup,
                        job,
                        member: member.pod.clone(),
                        ordinal: member.ordinal,
                        committed_zxid: member.zxid.unwrap_or(0),
                    });
                }
            }
        }
    }
    plan.status = Some(next);
    plan
}

/// Whether a cluster created from a backup may create its members yet.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreGate {
    pub create_members: bool,
    pub status: Option<RestoreStatus>,
    /// A restore-check job to start (its name).
    pub start_check: Option<String>,
    pub delete: Vec<String>,
    pub events: Vec<(EventType, &'static str, String)>,
    /// Look again in this many seconds.
    pub next_in: Option<i64>,
}

/// What decides whether a cluster's members may be created, and a restore's progress.
pub struct RestoreInputs<'a> {
    pub cluster: &'a str,
    pub spec: Option<&'a RestoreFromSpec>,
    pub generation: i64,
    /// The StatefulSet exists: members were created; they are never held back.
    pub members_exist: bool,
    /// Claims of this cluster's name created before it (see `observe::retained_volumes`).
    pub retained_volumes: &'a [String],
    pub status: Option<&'a RestoreStatus>,
    pub jobs: &'a [JobView],
    /// Why the restore target's Secrets or claim may not be used (`references`), if so.
    pub refused: Option<&'a str>,
    pub now: i64,
}

pub fn restore_gate(inputs: RestoreInputs<'_>) -> RestoreGate {
    let RestoreInputs {
        cluster,
        spec,
        generation,
        members_exist,
        retained_volumes,
        status,
        jobs,
        refused,
        now,
    } = inputs;
    let checks: Vec<&JobView> = jobs.iter().filter(|j| j.kind == RESTORE_CHECK_KIND).collect();
    let finished: Vec<String> = checks
        .iter()
        .filter(|j| j.state != JobState::Running)
        .map(|j| j.job.clone())
        .collect();
    let mut gate = RestoreGate {
        create_members: true,
        status: status.cloned(),
        start_check: None,
        delete: vec![],
        events: vec![],
        next_in: None,
    };
    let Some(spec) = spec else {
        gate.delete = finished;
        return gate;
    };
    if members_exist {
        gate.delete = finished;
        return gate;
    }
    let current = status.filter(|s| s.backup == spec.backup && s.observed_generation == Some(generation));
    let refuse = |gate: &mut RestoreGate, message: String| {
        gate.create_members = false;
        gate.delete = finished.clone();
        gate.next_in = Some(RETAINED_RECHECK_SECONDS);
        if current.and_then(|s| s.message.as_deref()) != Some(message.as_str()) {
            gate.events
                .push((EventType::Warning, "RestoreRefused", message.clone()));
        }
        gate.status = Some(RestoreStatus {
            backup: spec.backup.clone(),
            phase: "Refused".into(),
            zxid: None,
            message: Some(message),
            checked_at: current.and_then(|s| s.checked_at.clone()),
            observed_generation: Some(generation),
        });
    };
    if let Some(why) = refused {
        // The restore's containers would mount what the cluster may not use.
        refuse(
            &mut gate,
            format!("restore refused: {why}. No member was created. Checked again every {RETAINED_RECHECK_SECONDS} s"),
        );
        return gate;
    }
    if !retained_volumes.is_empty() {
        // Members started over these volumes keep their old data, and the agent leaves a
        // member's existing data alone rather than overwrite it: the restore would report
        // success and restore nothing. Refused until the volumes are gone.
        let message = format!(
            "restore refused: the volumes {} are left from an earlier cluster named {cluster} (storage.retention.whenDeleted: Retain), and members started over them would keep that data instead of the backup's. No member was created. To restore backup {}, delete those PersistentVolumeClaims; to keep their data instead, remove spec.restoreFrom. Checked again every {RETAINED_RECHECK_SECONDS} s",
            retained_volumes.join(", "),
            spec.backup
        );
        refuse(&mut gate, message);
        return gate;
    }
    if current.is_some_and(|s| s.phase == "Verified") {
        gate.delete = finished;
        return gate;
    }
    gate.create_members = false;
    let this_generation = |job: &JobView| job.backup == spec.backup && job.member == generation.to_string();
    if let Some(job) = checks
        .iter()
        .copied()
        .find(|j| this_generation(j) && matches!(j.state, JobState::Finished(_)))
    {
        let JobState::Finished(result) = &job.state else {
            unreachable!()
        };
        let mut restored = RestoreStatus {
            backup: spec.backup.clone(),
            phase: String::new(),
            zxid: None,
            message: None,
            checked_at: Some(rfc3339(now)),
            observed_generation: Some(generation),
        };
        match result {
            Ok(report) if report.ok => {
                restored.phase = "Verified".into();
                restored.zxid = report.zxid.clone();
                restored.message = Some(format!(
                    "backup {} verified ({} bytes): the members restore it as they start",
                    spec.backup, report.size_bytes
                ));
                gate.events.push((
                    EventType::Normal,
                    "RestoreVerified",
                    format!(
                        "backup {} verified up to zxid {}: creating the members from it",
                        spec.backup,
                        report.zxid.clone().unwrap_or_default()
                    ),
                ));
                gate.create_members = true;
            }
            other => {
                let why = match other {
                    Ok(report) => report.message.clone(),
                    Err(why) => why.clone(),
                };
                restored.phase = "Refused".into();
                restored.message = Some(format!(
                    "restore refused: {why}. No member was created. Fix spec.restoreFrom (or the backup); it is checked again every {RESTORE_RECHECK_SECONDS} s and at every change of the spec"
                ));
                gate.events.push((
                    EventType::Warning,
                    "RestoreRefused",
                    restored.message.clone().unwrap_or_default(),
                ));
                gate.next_in = Some(RESTORE_RECHECK_SECONDS);
            }
        }
        gate.status = Some(restored);
        gate.delete = finished;
        return gate;
    }
    if checks.iter().any(|j| j.state == JobState::Running) {
        gate.status = Some(RestoreStatus {
            backup: spec.backup.clone(),
            phase: "Checking".into(),
            observed_generation: Some(generation),
            message: Some(format!(
                "downloading and verifying backup {} before creating the members",
                spec.backup
            )),
            ..status.cloned().unwrap_or_default()
        });
        return gate;
    }
    gate.delete = finished;
    let refused_recently = current.is_some_and(|s| {
        s.phase == "Refused"
            && s.checked_at
                .as_deref()
                .and_then(parse_time)
                .is_some_and(|t| now - t < RESTORE_RECHECK_SECONDS)
    });
    if refused_recently {
        let checked = current
            .and_then(|s| s.checked_at.as_deref())
            .and_then(parse_time)
            .unwrap_or(now);
        gate.next_in = Some((checked + RESTORE_RECHECK_SECONDS - now).max(1));
        return gate;
    }
    gate.start_check = Some(job_name(cluster, RESTORE_CHECK_KIND, now));
    gate.status = Some(RestoreStatus {
        backup: spec.backup.clone(),
        phase: "Checking".into(),
        observed_generation: Some(generation),
        message: Some(format!(
            "downloading and verifying backup {} before creating the members",
            spec.backup
        )),
        ..status.cloned().unwrap_or_default()
    });
    gate
}

/// The prefix a restore reads: the one given, or `<namespace>/<cluster that made the backup>`.
pub fn restore_prefix(target_prefix: Option<&str>, namespace: &str, backup: &str) -> String {
    match target_prefix {
        Some(prefix) => prefix.to_string(),
        None => {
            let cluster = backup
                .rsplit_once('-')
                .filter(|(_, time)| parse_compact_time(time).is_some())
                .map(|(cluster, _)| cluster)
                .unwrap_or(backup);
            format!("{namespace}/{cluster}")
        }
    }
}

/// How a container reaches a target: arguments, environment, mounts, and the pod's volumes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Wiring {
    pub args: Vec<String>,
    pub env: Vec<Value>,
    pub mounts: Vec<Value>,
    pub volumes: Vec<Value>,
}

pub fn wiring(target: &BackupTarget, default_prefix: &str) -> Wiring {
    let mut wiring = Wiring::default();
    if let Some(s3) = &target.s3 {
        let prefix = s3.prefix.clone().unwrap_or_else(|| default_prefix.to_string());
        wiring
            .args
            .push(format!("--target=s3://{}/{}", s3.bucket, prefix.trim_matches('/')));
        if let Some(endpoint) = &s3.endpoint {
            wiring.args.push(format!("--s3-endpoint={endpoint}"));
        }
        wiring.args.push(format!(
            "--s3-region={}",
            s3.region.clone().unwrap_or_else(|| "us-east-1".into())
        ));
        for (env, key) in [
            ("AWS_ACCESS_KEY_ID", "accessKeyId"),
            ("AWS_SECRET_ACCESS_KEY", "secretAccessKey"),
        ] {
            wiring
                .env
                .push(json!({"name": env, "valueFrom": {"secretKeyRef": {"name": s3.credentials_secret, "key": key}}}));
        }
        if let Some(ca) = &s3.ca_secret {
            wiring.args.push(format!("--s3-ca-file={CA_MOUNT}/ca.crt"));
            wiring
                .mounts
                .push(json!({"name": "backup-ca", "mountPath": CA_MOUNT, "readOnly": true}));
            wiring.volumes.push(json!({"name": "backup-ca", "secret": {"secretName": ca, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}));
        }
    }
    if let Some(volume) = &target.persistent_volume_claim {
        let prefix = volume.prefix.clone().unwrap_or_else(|| default_prefix.to_string());
        wiring
            .args
            .push(format!("--target={TARGET_MOUNT}/{}", prefix.trim_matches('/')));
        wiring
            .mounts
            .push(json!({"name": "backup-target", "mountPath": TARGET_MOUNT}));
        wiring
            .volumes
            .push(json!({"name": "backup-target", "persistentVolumeClaim": {"claimName": volume.claim_name}}));
    }
    wiring
}

fn container_security() -> Value {
    json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}})
}

fn pod_security() -> Value {
    json!({
        "runAsNonRoot": true, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// zk-agent in the cluster's image, as the backup and restore steps run it: its report is the
/// termination message (or, if it crashed, the end of its log).
fn agent_container(zk: &ZooKeeperCluster, name: &str, args: Vec<String>, env: Vec<Value>, mounts: Vec<Value>) -> Value {
    json!({
        "name": name,
        "image": zk.spec.image(),
        "imagePullPolicy": zk.spec.image_pull_policy.clone().unwrap_or_else(|| "IfNotPresent".into()),
        "args": args,
        "env": env,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": container_security(),
        "volumeMounts": mounts,
    })
}

/// A job's pod: never restarted, restricted, no token; `placement` (affinity or node selector)
/// says where it runs.
fn job_pod(zk: &ZooKeeperCluster, names: &Names, container: Value, volumes: Vec<Value>, placement: Value) -> Value {
    let mut pod = json!({
        "restartPolicy": "Never",
        "serviceAccountName": names.statefulset(),
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": pod_security(),
        "tolerations": zk.spec.placement.tolerations,
        "containers": [container],
        "volumes": volumes,
    });
    if let (Some(pod), Value::Object(placement)) = (pod.as_object_mut(), placement) {
        pod.extend(placement);
    }
    pod
}

fn job_labels(names: &Names, kind: &str) -> Value {
    json!({
        "app.kubernetes.io/name": JOB_NAME_LABEL_VALUE,
        "app.kubernetes.io/instance": names.cluster,
        "app.kubernetes.io/managed-by": "zookeeper-operator",
        KIND_LABEL: kind,
    })
}

fn job(zk: &ZooKeeperCluster, names: &Names, name: &str, kind: &str, annotations: Value, pod_spec: Value) -> Job {
    typed(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {
            "name": name, "namespace": names.namespace,
            "labels": job_labels(names, kind),
            "annotations": annotations,
            "ownerReferences": [owner_reference(zk)],
        },
        "spec": {
            // The operator retries on the schedule; a job retried by Kubernetes would run with a
            // cut that is no longer the one it was given.
            "backoffLimit": 0,
            "activeDeadlineSeconds": JOB_DEADLINE_SECONDS,
            "template": {
                "metadata": {"labels": job_labels(names, kind)},
                "spec": pod_spec,
            },
        },
    }))
}

/// The backup job: on the member's node, its volume mounted read-only.
pub fn backup_job(zk: &ZooKeeperCluster, names: &Names, spec: &BackupSpec, start: &StartBackup, node: &str) -> Job {
    let wiring = wiring(&spec.target, &format!("{}/{}", names.namespace, names.cluster));
    let mut args = vec!["backup".to_string()];
    args.extend(wiring.args);
    args.extend([
        format!("--name={}", start.backup),
        format!("--namespace={}", names.namespace),
        format!("--cluster={}", names.cluster),
        format!("--member={}", start.member),
        format!("--server-id={}", vocabulary::myid_for_ordinal(start.ordinal)),
        format!("--committed-zxid=0x{:x}", start.committed_zxid),
    ]);
    if let Some(count) = spec.retention.count {
        args.push(format!("--keep-count={count}"));
    }
    if let Some(days) = spec.retention.max_age_days {
        args.push(format!("--max-age-seconds={}", i64::from(days) * 86400));
    }
    let mut mounts = vec![json!({"name": "data", "mountPath": "/data", "readOnly": true})];
    mounts.extend(wiring.mounts);
    let mut volumes = vec![
        json!({"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{}", start.member), "readOnly": true}}),
    ];
    volumes.extend(wiring.volumes);
    // The member's volume is where the member runs.
    let placement = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}],
    }}}});
    let container = agent_container(zk, "backup", args, wiring.env, mounts);
    let pod_spec = job_pod(zk, names, container, volumes, placement);
    job(
        zk,
        names,
        &start.job,
        BACKUP_KIND,
        json!({BACKUP_NAME_ANNOTATION: start.backup, MEMBER_ANNOTATION: start.member}),
        pod_spec,
    )
}

fn restore_args(restore: &RestoreFromSpec, namespace: &str) -> (Vec<String>, Wiring) {
    let prefix = restore_prefix(
        restore.target.s3.as_ref().and_then(|s| s.prefix.as_deref()).or(restore
            .target
            .persistent_volume_claim
            .as_ref()
            .and_then(|v| v.prefix.as_deref())),
        namespace,
        &restore.backup,
    );
    let wiring = wiring(&restore.target, &prefix);
    let mut args = vec!["restore".to_string()];
    args.extend(wiring.args.clone());
    args.push(format!("--name={}", restore.backup));
    if let Some(zxid) = &restore.zxid {
        args.push(format!("--up-to-zxid={zxid}"));
    }
    (args, wiring)
}

/// The job that downloads and verifies a backup before the members of a restored cluster exist.
pub fn restore_check_job(
    zk: &ZooKeeperCluster,
    names: &Names,
    restore: &RestoreFromSpec,
    job_name: &str,
    generation: i64,
) -> Job {
    let (mut args, wiring) = restore_args(restore, &names.namespace);
    args.push("--verify-only".into());
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    mounts.extend(wiring.mounts);
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}})];
    volumes.extend(wiring.volumes);
    let container = agent_container(zk, "restore-check", args, wiring.env, mounts);
    let placement = json!({"nodeSelector": zk.spec.placement.node_selector});
    let pod_spec = job_pod(zk, names, container, volumes, placement);
    job(
        zk,
        names,
        job_name,
        RESTORE_CHECK_KIND,
        // The generation checked rides in the member annotation: a check of an older spec is not
        // taken for this one.
        json!({BACKUP_NAME_ANNOTATION: restore.backup, MEMBER_ANNOTATION: generation.to_string()}),
        pod_spec,
    )
}

/// The init container of a restored cluster's members: writes the backup into an empty data
/// directory while the ensemble is new, and does nothing otherwise (a member that later loses
/// its disk syncs from the leader like any other).
pub fn restore_init_container(
    zk: &ZooKeeperCluster,
    names: &Names,
    restore: &RestoreFromSpec,
    ensemble_state_env: Value,
) -> (Value, Vec<Value>) {
    let (args, wiring) = restore_args(restore, &names.namespace);
    let mut env = vec![ensemble_state_env];
    env.extend(wiring.env);
    let mut mounts = vec![
        json!({"name": "data", "mountPath": "/data"}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
    ];
    mounts.extend(wiring.mounts);
    let container = agent_container(zk, "restore", args, env, mounts);
    (container, wiring.volumes)
}

/// A job as observed: its kind, backup, and (when finished) the agent's report from its pod's
/// termination message, or why there is none.
pub fn job_view(job: &Job, pod_messages: &[(String, Option<String>)]) -> Option<JobView> {
    let labels = job.metadata.labels.as_ref()?;
    let kind = labels.get(KIND_LABEL)?.clone();
    let annotations = job.metadata.annotations.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
            .map(|c| {
                c.message
                    .clone()
                    .unwrap_or_else(|| c.reason.clone().unwrap_or_default())
            })
    };
    let complete = condition("Complete");
    let failed = condition("Failed");
    let state = if complete.is_none() && failed.is_none() {
        JobState::Running
    } else {
        let report = pod_messages
            .iter()
            .filter_map(|(_, message)| message.as_deref())
            .find_map(|m| {
                m.lines()
                    .rev()
                    .find_map(|line| serde_json::from_str::<JobReport>(line.trim()).ok())
            });
        JobState::Finished(match report {
            Some(mut report) => {
                if let Some(claim) = target_claim(job) {
                    report.location = volume_location(&claim, &report.location);
                }
                Ok(report)
            }
            None => {
                let tail = pod_messages
                    .iter()
                    .filter_map(|(_, m)| m.as_deref())
                    .map(|m| m.lines().rev().take(3).collect::<Vec<_>>().join(" | "))
                    .next()
                    .filter(|t| !t.is_empty());
                Err(match (failed, tail) {
                    (Some(why), Some(tail)) => format!("the job failed ({why}): {tail}"),
                    (Some(why), None) => format!("the job failed: {why}"),
                    (None, Some(tail)) => format!("the job ended without a report: {tail}"),
                    (None, None) => "the job ended without a report".into(),
                })
            }
        })
    };
    Some(JobView {
        job: job.metadata.name.clone().unwrap_or_default(),
        kind,
        backup: annotations.get(BACKUP_NAME_ANNOTATION).cloned().unwrap_or_default(),
        member: annotations.get(MEMBER_ANNOTATION).cloned().unwrap_or_default(),
        state,
    })
}

/// The claim a job's target volume is, if its target is a PersistentVolumeClaim.
fn target_claim(job: &Job) -> Option<String> {
    let volumes = job.spec.as_ref()?.template.spec.as_ref()?.volumes.as_ref()?;
    volumes
        .iter()
        .find(|v| v.name == "backup-target")
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
}

/// A location in the job's mount of a target volume, as the user names it: the claim and the
/// path inside it.
fn volume_location(claim: &str, in_job: &str) -> String {
    let inside = in_job
        .strip_prefix(TARGET_MOUNT)
        .unwrap_or(in_job)
        .trim_start_matches('/');
    format!("persistentVolumeClaim {claim}: {inside}")
}

/// Seconds between two occurrences of the schedule (for the backup-age alert).
pub fn schedule_interval(expression: &str, now: i64) -> Option<i64> {
    let cron = schedule(expression).ok()?;
    let first = cron.find_next_occurrence(&at(now), false).ok()?;
    let second = cron.find_next_occurrence(&first, false).ok()?;
    Some((second - first).num_seconds())
}

/// Whether `controller` (a UID) is the controller owner of the object: the API server keeps the
/// Job controller's and ours truthful, while labels are anyone's to copy (a foreign chart's Job,
/// or a tenant forging a backup result).
pub fn controlled_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, controller: &str) -> bool {
    !controller.is_empty()
        && meta
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.controller == Some(true) && o.uid == controller)
}

/// The cluster's backup and restore-check jobs, with the reports of the finished ones. Only Jobs
/// the cluster controls count, and only their own pods' reports: a Job or pod that merely carries
/// the labels is neither read nor deleted.
pub async fn observe_jobs(
    client: &kube::Client,
    names: &Names,
    cluster_uid: &str,
) -> Result<Vec<JobView>, crate::error::Error> {
    use crate::error::{At, Stage};
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    let jobs: Api<Job> = Api::namespaced(client.clone(), &names.namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &names.namespace);
    let selector = format!(
        "app.kubernetes.io/name={JOB_NAME_LABEL_VALUE},app.kubernetes.io/instance={}",
        names.cluster
    );
    let listed = jobs
        .list(&ListParams::default().labels(&selector))
        .await
        .at(Stage::Observe, format!("Jobs {}/{selector}", names.namespace))?
        .items;
    let mut views = Vec::new();
    for job in listed.iter().filter(|j| controlled_by(&j.metadata, cluster_uid)) {
        let job_uid = job.metadata.uid.clone().unwrap_or_default();
        let finished = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            });
        let mut messages = Vec::new();
        if finished {
            let job_name = job.metadata.name.clone().unwrap_or_default();
            let job_pods = pods
                .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job_name}")))
                .await
                .at(Stage::Observe, format!("Pods of Job {}/{job_name}", names.namespace))?
                .items;
            for pod in job_pods.into_iter().filter(|p| controlled_by(&p.metadata, &job_uid)) {
                let message = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| {
                        c.iter()
                            .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
                    });
                messages.push((pod.metadata.name.unwrap_or_default(), message));
            }
        }
        if let Some(view) = job_view(job, &messages) {
            views.push(view);
        }
    }
    Ok(views)
}

/// The node a member's pod runs on (its volume is there).
pub async fn member_node(
    client: &kube::Client,
    names: &Names,
    pod: &str,
) -> Result<Option<String>, crate::error::Error> {
    use crate::error::{At, Stage};
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    let pods: Api<Pod> = Api::namespaced(client.clone(), &names.namespace);
    let listed = pods
        .list(&ListParams::default().fields(&format!("metadata.name={pod}")))
        .await
        .at(Stage::Backup, format!("Pod {}/{pod}", names.namespace))?
        .items;
    Ok(listed.into_iter().find_map(|p| p.spec?.node_name))
}

pub async fn create_job(client: &kube::Client, job: &Job) -> Result<(), crate::error::Error> {
    use crate::error::{object_name, At, Stage};
    use kube::api::{Api, PostParams};
    let jobs: Api<Job> = Api::namespaced(client.clone(), job.metadata.namespace.as_deref().unwrap_or("default"));
    match jobs.create(&PostParams::default(), job).await {
        Ok(_) => Ok(()),
        // Ours already (a retried start); someone else's is never taken for ours.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let owner = job
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone())
                .unwrap_or_default();
            let existing = jobs
                .get_opt(job.metadata.name.as_deref().unwrap_or_default())
                .await
                .at(Stage::Backup, object_name(job))?;
            match existing {
                Some(existing) if !controlled_by(&existing.metadata, &owner) => Err(crate::error::Error::NameClash {
                    object: object_name(job),
                }),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e).at(Stage::Backup, object_name(job)),
    }
}

/// Deletes a finished job and its pod.
pub async fn delete_job(client: &kube::Client, names: &Names, job: &str) -> Result<(), crate::error::Error> {
    use crate::error::{named, At, Stage};
    use kube::api::{Api, DeleteParams, PropagationPolicy};
    let jobs: Api<Job> = Api::namespaced(client.clone(), &names.namespace);
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match jobs.delete(job, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e).at(Stage::Backup, named::<Job>(&names.namespace, job)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::MemberState;

    #[test]
    fn only_the_controller_owner_counts_not_labels_or_other_owners() {
        let meta = |owners: serde_json::Value| -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            serde_json::from_value(
                json!({"name": "zk-backup-1", "labels": {KIND_LABEL: BACKUP_KIND}, "ownerReferences": owners}),
            )
            .unwrap()
        };
        let owner = |uid: &str, controller: bool| json!({"apiVersion": "zookeeper.zkop.io/v1alpha1", "kind": "ZooKeeperCluster", "name": "zk", "uid": uid, "controller": controller});
        assert!(controlled_by(&meta(json!([owner("uid-zk", true)])), "uid-zk"));
        // A Job with our labels and no owner, another cluster's, or ours only as a non-controller.
        assert!(!controlled_by(&meta(json!([])), "uid-zk"));
        assert!(!controlled_by(&meta(json!([owner("uid-other", true)])), "uid-zk"));
        assert!(!controlled_by(&meta(json!([owner("uid-zk", false)])), "uid-zk"));
        // A cluster read without a UID controls nothing.
        assert!(!controlled_by(&meta(json!([owner("", true)])), ""));
    }

    fn member(ordinal: u32, role: Option<ServingRole>, zxid: u64) -> MemberObservation {
        MemberObservation {
            pod: format!("zk-{ordinal}"),
            ordinal,
            uid: "u".into(),
            state: match role {
                Some(role) => MemberState::Serving(role),
                None => MemberState::Running,
            },
            up_to_date: true,
            address: None,
            host: String::new(),
            down_since: None,
            cause: None,
            restarts: 0,
            version: None,
            zxid: Some(zxid),
        }
    }

    fn spec(schedule: Option<&str>) -> BackupSpec {
        serde_json::from_value(
            json!({"schedule": schedule, "target": {"s3": {"bucket": "b", "credentialsSecret": "c"}}}),
        )
        .unwrap()
    }

    fn report(ok: bool, backup: &str) -> JobReport {
        JobReport {
            ok,
            backup: backup.into(),
            zxid: Some("0x10".into()),
            size_bytes: 10,
            location: "s3://b/x".into(),
            created: "2026-12-01T00:00:00Z".into(),
            seconds: 1.0,
            message: if ok { String::new() } else { "unreachable".into() },
            deleted: vec![],
        }
    }

    const NOW: i64 = 1_796_139_000; // 2026-12-01T15:30:00Z

    #[test]
    fn reads_from_the_newest_follower_never_the_leader_when_a_follower_serves() {
        let members = [
            member(0, Some(ServingRole::Leader), 9),
            member(1, Some(ServingRole::Follower), 7),
            member(2, Some(ServingRole::Follower), 8),
            member(3, None, 10),
        ];
        assert_eq!(pick_member(&members).unwrap().ordinal, 2);
        assert_eq!(pick_member(&members[..1]).unwrap().ordinal, 0);
        assert!(pick_member(&members[3..]).is_none());
    }

    #[test]
    fn a_new_schedule_waits_for_its_next_time_then_backs_up_once() {
        let members = [
            member(0, Some(ServingRole::Leader), 9),
            member(1, Some(ServingRole::Follower), 7),
        ];
        let first = plan_backups(
            "zk",
            Some(&spec(Some("0 * * * *"))),
            None,
            None,
            None,
            &[],
            &members,
            NOW,
        );
        assert!(first.start.is_none());
        let status = first.status.unwrap();
        assert_eq!(status.last_scheduled_time.as_deref(), Some("2026-12-01T15:00:00Z"));
        assert_eq!(first.next_in, Some(1800));
        let later = plan_backups(
            "zk",
            Some(&spec(Some("0 * * * *"))),
            Some(&status),
            None,
            None,
            &[],
            &members,
            NOW + 1800,
        );
        let start = later.start.clone().unwrap();
        assert_eq!((start.member.as_str(), start.committed_zxid), ("zk-1", 7));
        assert_eq!(start.backup, "zk-20261201T160000Z");
        let running = [JobView {
            job: start.job.clone(),
            kind: BACKUP_KIND.into(),
            backup: start.backup.clone(),
            member: "zk-1".into(),
            state: JobState::Running,
        }];
        let again = plan_backups(
            "zk",
            Some(&spec(Some("0 * * * *"))),
            later.status.as_ref(),
            None,
            None,
            &running,
            &members,
            NOW + 1810,
        );
        assert!(
            again.start.is_none(),
            "one backup per scheduled time, none while one runs"
        );
    }

    #[test]
    fn results_are_recorded_once_then_their_jobs_removed() {
        let members = [member(1, Some(ServingRole::Follower), 7)];
        let done = [JobView {
            job: "j".into(),
            kind: BACKUP_KIND.into(),
            backup: "zk-1".into(),
            member: "zk-1".into(),
            state: JobState::Finished(Ok(report(true, "zk-1"))),
        }];
        let plan = plan_backups("zk", Some(&spec(None)), None, None, None, &done, &members, NOW);
        assert_eq!(
            plan.status.as_ref().unwrap().last_successful.as_ref().unwrap().name,
            "zk-1"
        );
        assert_eq!(plan.events.len(), 1);
        assert!(plan.delete.is_empty(), "deleted only once status holds the result");
        let next = plan_backups(
            "zk",
            Some(&spec(None)),
            plan.status.as_ref(),
            None,
            None,
            &done,
            &members,
            NOW,
        );
        assert!(next.events.is_empty());
        assert_eq!(next.delete, ["j"]);
        let failed = [JobView {
            job: "k".into(),
            kind: BACKUP_KIND.into(),
            backup: "zk-2".into(),
            member: "zk-1".into(),
            state: JobState::Finished(Ok(report(false, "zk-2"))),
        }];
        let plan = plan_backups(
            "zk",
            Some(&spec(None)),
            next.status.as_ref(),
            None,
            None,
            &failed,
            &members,
            NOW,
        );
        let status = plan.status.unwrap();
        assert_eq!(status.last_failure.unwrap().reason, "unreachable");
        assert_eq!(
            status.last_successful.unwrap().name,
            "zk-1",
            "a failure keeps the last success"
        );
    }

    #[test]
    fn a_due_backup_waits_while_its_target_is_refused_and_runs_once_allowed() {
        let members = [member(1, Some(ServingRole::Follower), 7)];
        let why = "spec.backup.target.s3.credentialsSecret: Secret team/s3 does not allow cluster zk to use it";
        let plan = plan_backups(
            "zk",
            Some(&spec(None)),
            None,
            Some("now-1"),
            Some(why),
            &[],
            &members,
            NOW,
        );
        assert!(plan.start.is_none(), "no job mounts a Secret the cluster may not use");
        assert!(
            plan.waiting.as_deref().is_some_and(|w| w.contains(why)),
            "{:?}",
            plan.waiting
        );
        assert!(
            plan.events
                .iter()
                .any(|(kind, reason, message)| *kind == EventType::Warning
                    && *reason == "BackupRefused"
                    && message.contains(why)),
            "{:?}",
            plan.events
        );
        assert_eq!(plan.status.as_ref().unwrap().last_request, None, "still due");
        let allowed = plan_backups(
            "zk",
            Some(&spec(None)),
            plan.status.as_ref(),
            Some("now-1"),
            None,
            &[],
            &members,
            NOW + 5,
        );
        assert!(allowed.start.is_some(), "runs once the Secret allows the cluster");
    }

    #[test]
    fn an_on_demand_request_runs_once_per_value_and_waits_for_a_serving_member() {
        let members = [member(1, Some(ServingRole::Follower), 7)];
        let plan = plan_backups("zk", Some(&spec(None)), None, Some("now-1"), None, &[], &[], NOW);
        assert!(plan.start.is_none() && plan.waiting.is_some());
        assert_eq!(
            plan.status.as_ref().unwrap().last_request,
            None,
            "not consumed while waiting"
        );
        let plan = plan_backups("zk", Some(&spec(None)), None, Some("now-1"), None, &[], &members, NOW);
        assert!(plan.start.is_some());
        let again = plan_backups(
            "zk",
            Some(&spec(None)),
            plan.status.as_ref(),
            Some("now-1"),
            None,
            &[],
            &members,
            NOW + 5,
        );
        assert!(again.start.is_none());
    }

    #[test]
    fn a_request_without_spec_backup_is_refused_out_loud_once() {
        let plan = plan_backups("zk", None, None, Some("now"), None, &[], &[], NOW);
        assert_eq!(plan.events.len(), 1);
        assert!(plan.events[0].2.contains("spec.backup is not set"));
        let again = plan_backups("zk", None, plan.status.as_ref(), Some("now"), None, &[], &[], NOW + 1);
        assert!(again.events.is_empty());
    }

    #[test]
    fn job_names_fit_and_restore_prefixes_follow_the_backup_name() {
        let long = "a".repeat(52);
        assert!(job_name(&long, RESTORE_CHECK_KIND, NOW).len() <= 63);
        assert_eq!(
            restore_prefix(None, "prod", "zookeeper-20261201T153000Z"),
            "prod/zookeeper"
        );
        assert_eq!(restore_prefix(Some("x/y"), "prod", "zookeeper-20261201T153000Z"), "x/y");
        assert_eq!(schedule_interval("0 */6 * * *", NOW), Some(6 * 3600));
    }

    #[test]
    fn a_backup_job_reads_the_members_volume_read_only_on_its_node_and_is_no_member() {
        let zk: ZooKeeperCluster = serde_json::from_value(json!({
            "apiVersion": "zookeeper.zkop.io/v1alpha1", "kind": "ZooKeeperCluster",
            "metadata": {"name": "zk", "namespace": "prod", "uid": "u1"},
            "spec": {"backup": {"target": {"s3": {"bucket": "b", "credentialsSecret": "creds", "caSecret": "ca"}}}},
        }))
        .unwrap();
        let names = Names::of(&zk);
        let start = StartBackup {
            backup: "zk-20261201T153000Z".into(),
            job: "zk-backup-1".into(),
            member: "zk-2".into(),
            ordinal: 2,
            committed_zxid: 0x1f,
        };
        let job = serde_json::to_value(backup_job(
            &zk,
            &names,
            zk.spec.backup.as_ref().unwrap(),
            &start,
            "node-b",
        ))
        .unwrap();
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(
            pod["volumes"][0]["persistentVolumeClaim"],
            json!({"claimName": "data-zk-2", "readOnly": true})
        );
        assert_eq!(pod["containers"][0]["volumeMounts"][0]["readOnly"], json!(true));
        assert_eq!(
            pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
                ["matchFields"][0]["values"],
            json!(["node-b"])
        );
        let args: Vec<String> = serde_json::from_value(pod["containers"][0]["args"].clone()).unwrap();
        for expected in [
            "--target=s3://b/prod/zk",
            "--committed-zxid=0x1f",
            "--server-id=3",
            "--keep-count=7",
            "--s3-ca-file=/etc/backup-ca/ca.crt",
        ] {
            assert!(args.contains(&expected.to_string()), "{args:?} lacks {expected}");
        }
        let labels = &job["spec"]["template"]["metadata"]["labels"];
        assert_ne!(
            labels["app.kubernetes.io/name"],
            json!("zookeeper"),
            "the members' Services and budget must not select it"
        );
        assert_eq!(pod["automountServiceAccountToken"], json!(false));
    }

    #[test]
    fn a_backup_to_a_volume_mounts_the_claim_and_reports_where_in_it() {
        let zk: ZooKeeperCluster = serde_json::from_value(json!({
            "apiVersion": "zookeeper.zkop.io/v1alpha1", "kind": "ZooKeeperCluster",
            "metadata": {"name": "zk", "namespace": "prod", "uid": "u1"},
            "spec": {"backup": {"target": {"persistentVolumeClaim": {"claimName": "zk-backups"}}}},
        }))
        .unwrap();
        let names = Names::of(&zk);
        let start = StartBackup {
            backup: "zk-20261201T153000Z".into(),
            job: "zk-backup-1".into(),
            member: "zk-0".into(),
            ordinal: 0,
            committed_zxid: 0x1f,
        };
        let mut job = backup_job(&zk, &names, zk.spec.backup.as_ref().unwrap(), &start, "node-a");
        let pod = serde_json::to_value(&job.spec.as_ref().unwrap().template.spec).unwrap();
        assert_eq!(
            pod["volumes"][1],
            json!({"name": "backup-target", "persistentVolumeClaim": {"claimName": "zk-backups"}})
        );
        let args: Vec<String> = serde_json::from_value(pod["containers"][0]["args"].clone()).unwrap();
        assert!(args.contains(&"--target=/backup/prod/zk".to_string()), "{args:?}");
        job.status =
            Some(serde_json::from_value(json!({"conditions": [{"type": "Complete", "status": "True"}]})).unwrap());
        let report = JobReport {
            ok: true,
            backup: start.backup.clone(),
            zxid: Some("0x1f".into()),
            size_bytes: 1,
            location: "/backup/prod/zk/zk-20261201T153000Z".into(),
            created: String::new(),
            seconds: 0.1,
            message: String::new(),
            deleted: Vec::new(),
        };
        let message = serde_json::to_string(&report).unwrap();
        let view = job_view(&job, &[("pod".into(), Some(message))]).unwrap();
        let JobState::Finished(Ok(report)) = view.state else {
            panic!("{:?}", view.state)
        };
        assert_eq!(
            report.location,
            "persistentVolumeClaim zk-backups: prod/zk/zk-20261201T153000Z"
        );
    }

    fn restore(backup: &str) -> RestoreFromSpec {
        serde_json::from_value(json!({"backup": backup, "target": {"s3": {"bucket": "b", "credentialsSecret": "c"}}}))
            .unwrap()
    }

    fn gate_for(
        spec: &RestoreFromSpec,
        generation: i64,
        members_exist: bool,
        retained_volumes: &[String],
        status: Option<&RestoreStatus>,
        jobs: &[JobView],
        now: i64,
    ) -> RestoreGate {
        restore_gate(RestoreInputs {
            cluster: "new",
            spec: Some(spec),
            generation,
            members_exist,
            retained_volumes,
            status,
            jobs,
            refused: None,
            now,
        })
    }

    /// A restore whose target the cluster may not use (`references`) creates no member and no
    /// restore-check job (which would mount it), says why, and goes on once it is allowed.
    #[test]
    fn a_restore_from_a_target_the_cluster_may_not_use_is_refused() {
        let spec = restore("zk-20261201T153000Z");
        let why = "spec.restoreFrom.target.s3.credentialsSecret: Secret team/c does not allow cluster new to use it";
        let gate = |refused, status| {
            restore_gate(RestoreInputs {
                cluster: "new",
                spec: Some(&spec),
                generation: 1,
                members_exist: false,
                retained_volumes: &[],
                status,
                jobs: &[],
                refused,
                now: NOW,
            })
        };
        let refused = gate(Some(why), None);
        assert!(!refused.create_members && refused.start_check.is_none());
        let status = refused.status.clone().unwrap();
        assert_eq!(status.phase, "Refused");
        assert!(status
            .message
            .as_deref()
            .is_some_and(|m| m.contains(why) && m.contains("No member was created")));
        assert_eq!(refused.events.len(), 1);
        assert_eq!(gate(Some(why), Some(&status)).events, vec![], "said once");
        let allowed = gate(None, Some(&status));
        assert!(allowed.start_check.is_some(), "the backup is checked once allowed");
    }

    #[test]
    fn members_of_a_restored_cluster_wait_for_a_verified_backup() {
        let spec = restore("zk-20261201T153000Z");
        let gate = gate_for(&spec, 1, false, &[], None, &[], NOW);
        assert!(!gate.create_members);
        let job = gate.start_check.clone().unwrap();
        let status = gate.status.clone();
        let check = |result| {
            [JobView {
                job: job.clone(),
                kind: RESTORE_CHECK_KIND.into(),
                backup: spec.backup.clone(),
                member: "1".into(),
                state: JobState::Finished(result),
            }]
        };
        let refused = gate_for(
            &spec,
            1,
            false,
            &[],
            status.as_ref(),
            &check(Ok(report(false, &spec.backup))),
            NOW + 5,
        );
        assert!(!refused.create_members);
        assert_eq!(refused.status.as_ref().unwrap().phase, "Refused");
        assert!(refused
            .status
            .as_ref()
            .unwrap()
            .message
            .as_ref()
            .unwrap()
            .contains("unreachable"));
        let waiting = gate_for(&spec, 1, false, &[], refused.status.as_ref(), &[], NOW + 10);
        assert!(waiting.start_check.is_none() && !waiting.create_members);
        let retried = gate_for(
            &spec,
            1,
            false,
            &[],
            refused.status.as_ref(),
            &[],
            NOW + 5 + RESTORE_RECHECK_SECONDS,
        );
        assert!(retried.start_check.is_some());
        let changed = gate_for(&spec, 2, false, &[], refused.status.as_ref(), &[], NOW + 10);
        assert!(changed.start_check.is_some(), "a changed spec is checked at once");
        let verified = gate_for(
            &spec,
            1,
            false,
            &[],
            status.as_ref(),
            &check(Ok(report(true, &spec.backup))),
            NOW + 5,
        );
        assert!(verified.create_members);
        let after = gate_for(&spec, 1, false, &[], verified.status.as_ref(), &[], NOW + 6);
        assert!(after.create_members && after.start_check.is_none());
        assert!(
            gate_for(&spec, 3, true, &[], None, &[], NOW).create_members,
            "members that exist are never held"
        );
    }

    /// Members started over an earlier cluster's retained volumes keep that data: the restore
    /// is refused (not reported as done) until the volumes are gone, even once the backup was
    /// verified, and it says which volumes and what to do.
    #[test]
    fn a_restore_over_volumes_left_from_an_earlier_cluster_is_refused() {
        let spec = restore("zk-20261201T153000Z");
        let retained = ["data-new-0".to_string(), "data-new-1".to_string()];
        let refused = gate_for(&spec, 1, false, &retained, None, &[], NOW);
        assert!(!refused.create_members && refused.start_check.is_none());
        let status = refused.status.clone().unwrap();
        assert_eq!(status.phase, "Refused");
        let message = status.message.clone().unwrap();
        assert!(
            message.contains("data-new-0, data-new-1") && message.contains("delete those PersistentVolumeClaims"),
            "{message}"
        );
        assert_eq!(refused.events.len(), 1, "{:?}", refused.events);
        assert_eq!(refused.next_in, Some(RETAINED_RECHECK_SECONDS));
        let again = gate_for(&spec, 1, false, &retained, Some(&status), &[], NOW + 15);
        assert!(!again.create_members);
        assert!(again.events.is_empty(), "said once: {:?}", again.events);
        let verified = RestoreStatus {
            phase: "Verified".into(),
            ..status.clone()
        };
        assert!(
            !gate_for(&spec, 1, false, &retained, Some(&verified), &[], NOW + 20).create_members,
            "a verified backup does not make old volumes empty"
        );
        let gone = gate_for(&spec, 1, false, &[], Some(&status), &[], NOW + 30);
        assert!(gone.start_check.is_some(), "once they are gone, the backup is checked");
    }
}
