//! The cluster's status, computed from what was observed: pure functions, no API calls.

use crate::observe::{MemberObservation, StatefulSetObservation};
use crate::planner::MemberState;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use vocabulary::ServingRole;
use zk_agent::guard::EnsembleState;
use zkop_api::{LastOperation, MemberStatus, ZooKeeperCluster, ZooKeeperClusterStatus};

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Whether the last reconcile went through; when not, which stage failed on which object.
pub const RECONCILED: &str = "Reconciled";

pub const NEW: &str = "new";
pub const EXISTING: &str = "existing";

pub fn state_name(state: EnsembleState) -> &'static str {
    match state {
        EnsembleState::New => NEW,
        EnsembleState::Existing => EXISTING,
    }
}

/// A quorum of the desired members serves, with a leader among them.
pub fn available(zk: &ZooKeeperCluster, members: &[MemberObservation]) -> bool {
    let serving = members.iter().filter(|m| m.serves()).count();
    let has_leader = members.iter().any(|m| m.role() == Some(ServingRole::Leader));
    has_leader && serving >= vocabulary::quorum(usize::try_from(zk.spec.replicas.max(1)).unwrap_or(1))
}

/// `new` only until the ensemble first has a quorum, then `existing` for good. Four witnesses,
/// any of which makes it `existing`: the live ConfigMap; a quorum now; the cluster's status,
/// which the operator never turns back (so a ConfigMap lost during a quorum loss comes back
/// `existing`); and volumes older than the resource (it was re-created over kept volumes).
/// Declaring an existing ensemble new would let a member with an empty disk vote.
pub fn ensemble_state(
    recorded: Option<&str>,
    available_now: bool,
    status: Option<&ZooKeeperClusterStatus>,
    volumes_predate_cluster: bool,
) -> EnsembleState {
    let remembered = status.is_some_and(|s| {
        s.ensemble_state.as_deref() == Some(EXISTING)
            || s.leader.is_some()
            || s.conditions.iter().any(|c| c.type_ == AVAILABLE && c.status == "True")
    });
    if recorded == Some(EXISTING) || available_now || remembered || volumes_predate_cluster {
        EnsembleState::Existing
    } else {
        EnsembleState::New
    }
}

/// A day-2 operation in progress: its kind (RollingRestart, ScaleUp, ScaleDown) and current step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub kind: String,
    pub step: String,
}

/// What status is computed from.
pub struct StatusInputs<'a> {
    /// This reconcile gave the StatefulSet a new pod template: a roll is starting, whatever
    /// the members observed before it show.
    pub template_changed: bool,
    pub members: &'a [MemberObservation],
    pub statefulset: Option<&'a StatefulSetObservation>,
    pub operation: Option<&'a Operation>,
    /// Pods of members that have not served for longer than the rollout's timeout.
    pub stuck: &'a [String],
    pub ensemble_state: EnsembleState,
    pub tls: Option<zkop_api::TlsStatus>,
    pub selector: String,
    /// Voters in the committed configuration, when it could be read.
    pub voters: Option<usize>,
    pub now: Time,
}

pub fn compute(zk: &ZooKeeperCluster, inputs: StatusInputs<'_>) -> ZooKeeperClusterStatus {
    let previous = zk.status.clone().unwrap_or_default();
    let generation = zk.metadata.generation;
    let desired = zk.spec.replicas;
    let members = inputs.members;
    let serving: Vec<&MemberObservation> = members.iter().filter(|m| m.serves()).collect();
    let leader = members.iter().find(|m| m.role() == Some(ServingRole::Leader));
    let is_available = available(zk, members);
    let sts = inputs.statefulset.cloned().unwrap_or_default();
    let down: Vec<&MemberObservation> = members.iter().filter(|m| !m.serves()).collect();
    let down_text = down
        .iter()
        .map(|m| match &m.cause {
            Some(cause) => format!("{} ({cause})", m.pod),
            None => format!("{} (not serving)", m.pod),
        })
        .collect::<Vec<_>>()
        .join(", ");

    // The planner is done with an operation once its last step is taken; the operation is done
    // when the members it restarted or added serve again (or are stuck, which ends it).
    let finishing = match (inputs.operation, previous.operation.as_ref()) {
        (None, Some(kind)) if !down.is_empty() && inputs.stuck.is_empty() => Some(Operation {
            kind: kind.clone(),
            step: format!("finishing: waiting for {down_text}"),
        }),
        _ => None,
    };
    let operation = inputs.operation.or(finishing.as_ref());

    let available_condition = if is_available {
        (
            true,
            "QuorumServing",
            format!(
                "{} of {desired} members serve in a quorum led by {}",
                serving.len(),
                leader.map(|l| l.pod.as_str()).unwrap_or("?")
            ),
        )
    } else if inputs.statefulset.is_none() {
        (false, "Creating", "the StatefulSet does not exist yet".to_string())
    } else {
        (
            false,
            "NoQuorum",
            format!(
                "{} of {desired} members serve; a quorum needs {} and a leader",
                serving.len(),
                vocabulary::quorum(usize::try_from(desired.max(1)).unwrap_or(1))
            ),
        )
    };
    let progressing = if inputs.statefulset.is_none() {
        (true, "Creating", "creating the ensemble's resources".to_string())
    } else if inputs.template_changed {
        (
            true,
            "RollingOut",
            "the members' template changed: restarting them one at a time".to_string(),
        )
    } else if let Some(op) = operation {
        if inputs.stuck.is_empty() {
            (true, op.kind.as_str(), op.step.clone())
        } else {
            // As a Deployment past its progress deadline: no longer progressing, and why.
            (false, "RolloutStuck", op.step.clone())
        }
    } else if !sts.rolled_out || sts.updated_replicas < desired {
        (
            true,
            "RollingOut",
            format!("{} of {desired} members run the current template", sts.updated_replicas),
        )
    } else if sts.replicas != desired {
        (true, "Scaling", format!("{} members, {desired} desired", sts.replicas))
    } else {
        (false, "Reconciled", "the ensemble matches the spec".to_string())
    };
    let degraded = if !inputs.stuck.is_empty() {
        (
            true,
            "MemberStuck",
            format!(
                "{} not serving for more than {}s: {down_text}",
                inputs.stuck.join(", "),
                zk.spec.rollout.member_ready_timeout_seconds
            ),
        )
    } else if !down.is_empty() {
        (true, "MembersNotServing", format!("not serving: {down_text}"))
    } else {
        (false, "AllMembersServing", format!("all {desired} members serve"))
    };
    let message = if !inputs.stuck.is_empty() || (!down.is_empty() && operation.is_none()) {
        degraded.2.clone()
    } else if let Some(op) = operation {
        op.step.clone()
    } else {
        available_condition.2.clone()
    };

    let mut conditions: Vec<Condition> = [
        (AVAILABLE, available_condition),
        (PROGRESSING, progressing),
        (DEGRADED, degraded),
        (
            RECONCILED,
            (true, "ReconcileSucceeded", "the last reconcile completed".to_string()),
        ),
    ]
    .into_iter()
    .map(|(kind, (status, reason, message))| {
        condition(
            &previous.conditions,
            kind,
            status,
            reason,
            message,
            generation,
            inputs.now.clone(),
        )
    })
    .collect();
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));

    let running_versions: std::collections::BTreeSet<&str> =
        serving.iter().filter_map(|m| m.version.as_deref()).collect();
    let version = if running_versions.is_empty() {
        previous.version.clone()
    } else {
        Some(running_versions.into_iter().collect::<Vec<_>>().join(", "))
    };
    let leader_zxid = leader.and_then(|l| l.zxid);
    let operation_now = operation.map(|o| o.kind.as_str());
    let last_operation = match previous.operation.as_deref() {
        Some(ended) if operation_now != Some(ended) => Some(LastOperation {
            kind: ended.to_string(),
            outcome: if down.is_empty() {
                "Succeeded".to_string()
            } else {
                format!("ended with members not serving: {down_text}")
            },
            finished_at: inputs.now.0.to_string(),
        }),
        _ => previous.last_operation.clone(),
    };

    let status_members: Vec<MemberStatus> = members
        .iter()
        .map(|m| MemberStatus {
            name: m.pod.clone(),
            id: vocabulary::myid_for_ordinal(m.ordinal),
            role: m.role().map_or("none", ServingRole::as_str).to_string(),
            ready: m.serves(),
            reason: match (&m.state, &m.cause) {
                (MemberState::Serving(_), _) => None,
                (_, Some(cause)) => Some(cause.clone()),
                (MemberState::Running, None) => Some("running, not serving: looking for a quorum or syncing".into()),
                (_, None) => None,
            },
            restarts: m.restarts,
            up_to_date: m.up_to_date,
            version: m.version.clone(),
        })
        .collect();

    ZooKeeperClusterStatus {
        observed_generation: generation,
        conditions,
        replicas: i32::try_from(members.iter().filter(|m| m.state != MemberState::Missing).count()).unwrap_or(i32::MAX),
        ready_replicas: i32::try_from(serving.len()).unwrap_or(i32::MAX),
        leader: leader.map(|l| l.pod.clone()),
        version,
        voters: inputs
            .voters
            .map(|v| i32::try_from(v).unwrap_or(i32::MAX))
            .or(previous.voters),
        epoch: leader_zxid
            .map(|z| i64::try_from(z >> 32).unwrap_or(i64::MAX))
            .or(previous.epoch),
        selector: Some(inputs.selector),
        members: status_members,
        operation: operation.map(|o| o.kind.clone()),
        operation_step: operation.map(|o| o.step.clone()),
        message: Some(message),
        ensemble_state: Some(state_name(inputs.ensemble_state).to_string()),
        tls: inputs.tls,
        last_operation,
        // The backup stage writes these after; until then they stay as they were.
        backup: previous.backup.clone(),
        restore: previous.restore.clone(),
    }
}

/// The previous status with `Reconciled` set to false: which stage failed, on which object.
/// Everything else is kept as it was, so a failing reconcile does not erase what was known.
pub fn failed(zk: &ZooKeeperCluster, reason: &str, message: String, now: Time) -> ZooKeeperClusterStatus {
    let mut status = zk.status.clone().unwrap_or_default();
    let failed = condition(
        &status.conditions,
        RECONCILED,
        false,
        reason,
        message.clone(),
        zk.metadata.generation,
        now,
    );
    status.conditions.retain(|c| c.type_ != RECONCILED);
    status.conditions.push(failed);
    status.conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
    status.message = Some(message);
    status
}

/// A condition, keeping its lastTransitionTime while its status does not change.
pub(crate) fn condition(
    previous: &[Condition],
    kind: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == kind && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(now);
    Condition {
        type_: kind.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

pub fn condition_is_true(status: Option<&ZooKeeperClusterStatus>, kind: &str) -> bool {
    status.is_some_and(|s| s.conditions.iter().any(|c| c.type_ == kind && c.status == "True"))
}

pub fn condition_reason<'a>(status: Option<&'a ZooKeeperClusterStatus>, kind: &str) -> Option<&'a str> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.reason.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn cluster(replicas: i32) -> ZooKeeperCluster {
        let spec = serde_json::from_value(serde_json::json!({"replicas": replicas})).unwrap();
        let mut zk = ZooKeeperCluster::new("zk", spec);
        zk.metadata.generation = Some(4);
        zk
    }

    fn member(ordinal: u32, serving: Option<ServingRole>) -> MemberObservation {
        MemberObservation {
            pod: format!("zk-{ordinal}"),
            ordinal,
            uid: format!("u{ordinal}"),
            state: serving.map_or(MemberState::Running, MemberState::Serving),
            up_to_date: true,
            address: None,
            host: format!("zk-{ordinal}.zk-headless.ns.svc.cluster.local"),
            down_since: None,
            cause: None,
            restarts: 0,
            version: serving.map(|_| "3.9.4".to_string()),
            zxid: serving.map(|_| 0x2_0000_0010),
        }
    }

    fn rolled_out(replicas: i32) -> StatefulSetObservation {
        StatefulSetObservation {
            replicas,
            updated_replicas: replicas,
            rolled_out: true,
        }
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn inputs<'a>(members: &'a [MemberObservation], sts: &'a StatefulSetObservation, now: Time) -> StatusInputs<'a> {
        StatusInputs {
            template_changed: false,
            members,
            statefulset: Some(sts),
            operation: None,
            stuck: &[],
            ensemble_state: EnsembleState::Existing,
            tls: None,
            selector: "sel".into(),
            voters: Some(3),
            now,
        }
    }

    #[test]
    fn status_says_what_members_run_and_how_the_last_operation_ended() {
        let mut zk = cluster(3);
        let sts = rolled_out(3);
        let mut members: Vec<_> = (0..3)
            .map(|i| {
                member(
                    i,
                    Some(if i == 0 {
                        ServingRole::Leader
                    } else {
                        ServingRole::Follower
                    }),
                )
            })
            .collect();
        members[2].version = Some("3.8.3".into());
        zk.status = Some(ZooKeeperClusterStatus {
            operation: Some("RollingRestart".into()),
            ..Default::default()
        });
        let s = compute(&zk, inputs(&members, &sts, now()));
        assert_eq!(s.version.as_deref(), Some("3.8.3, 3.9.4"), "read from the members");
        assert_eq!(s.voters, Some(3));
        assert_eq!(s.epoch, Some(2));
        assert_eq!(s.members[2].version.as_deref(), Some("3.8.3"));
        let ended = s.last_operation.clone().unwrap();
        assert_eq!(
            (ended.kind.as_str(), ended.outcome.as_str()),
            ("RollingRestart", "Succeeded")
        );

        // Later reconciles keep it.
        zk.status = Some(s);
        let kept = compute(&zk, inputs(&members, &sts, now()));
        assert_eq!(kept.last_operation, zk.status.as_ref().unwrap().last_operation);

        // The planner has taken its last step but a member it restarted does not serve yet:
        // the operation goes on until it does.
        zk.status.as_mut().unwrap().operation = Some("ScaleUp".into());
        members[1].state = MemberState::Running;
        let s = compute(&zk, inputs(&members, &sts, now()));
        assert_eq!(s.operation.as_deref(), Some("ScaleUp"));
        assert!(s.operation_step.as_deref().unwrap().contains("zk-1"), "{s:?}");
        assert_eq!(s.last_operation, kept.last_operation);
        // ... or until it is stuck, which ends it and says so.
        let stuck = vec!["zk-1".to_string()];
        let mut with_stuck = inputs(&members, &sts, now());
        with_stuck.stuck = &stuck;
        let s = compute(&zk, with_stuck);
        let ended = s.last_operation.unwrap();
        assert_eq!(ended.kind, "ScaleUp");
        assert!(ended.outcome.contains("zk-1"), "{}", ended.outcome);
        assert_eq!(s.operation, None);
    }

    #[test]
    fn status_does_not_change_with_every_write() {
        // Each status write starts a reconcile: a status that followed the zxid would never rest.
        let zk = cluster(3);
        let sts = rolled_out(3);
        let members_at = |zxid: u64| -> Vec<MemberObservation> {
            (0..3)
                .map(|i| {
                    let mut m = member(
                        i,
                        Some(if i == 0 {
                            ServingRole::Leader
                        } else {
                            ServingRole::Follower
                        }),
                    );
                    m.zxid = Some(zxid + u64::from(i));
                    m
                })
                .collect()
        };
        let first = compute(&zk, inputs(&members_at(0x2_0000_0010), &sts, now()));
        let later = compute(&zk, inputs(&members_at(0x2_0000_0999), &sts, now()));
        assert_eq!(first, later);
        assert_eq!(first.epoch, Some(2));
    }

    fn get<'a>(s: &'a ZooKeeperClusterStatus, kind: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn a_quorum_with_a_leader_is_available() {
        use ServingRole::*;
        let zk = cluster(3);
        let sts = rolled_out(3);
        let members = [member(0, Some(Follower)), member(1, Some(Leader)), member(2, None)];
        let s = compute(&zk, inputs(&members, &sts, now()));
        assert_eq!(get(&s, AVAILABLE).status, "True");
        assert_eq!(get(&s, DEGRADED).status, "True");
        assert!(get(&s, DEGRADED).message.contains("zk-2"));
        assert_eq!(get(&s, PROGRESSING).status, "False");
        assert_eq!(get(&s, RECONCILED).status, "True");
        assert_eq!(s.leader.as_deref(), Some("zk-1"));
        assert_eq!(s.ready_replicas, 2);
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(s.members[2].role, "none");
        assert!(s.members[2].reason.as_deref().unwrap().contains("not serving"));
        assert_eq!(s.members[1].id, 2);
        assert_eq!(s.ensemble_state.as_deref(), Some("existing"));
        assert!(s.message.unwrap().contains("zk-2"), "what is wrong comes first");

        let no_leader = [member(0, Some(Follower)), member(1, Some(Follower))];
        assert_eq!(
            get(&compute(&zk, inputs(&no_leader, &sts, now())), AVAILABLE).status,
            "False"
        );
        let one = [member(0, Some(Leader)), member(1, None), member(2, None)];
        assert_eq!(
            get(&compute(&zk, inputs(&one, &sts, now())), AVAILABLE).reason,
            "NoQuorum"
        );
    }

    #[test]
    fn a_stuck_member_stops_progress_and_is_named_with_its_cause() {
        use ServingRole::*;
        let zk = cluster(3);
        let sts = rolled_out(3);
        let mut broken = member(2, None);
        broken.state = MemberState::Broken;
        broken.cause = Some("ImagePullBackOff: Back-off pulling image \"zkop/zookeeper:3.9.99\"".into());
        let members = [member(0, Some(Leader)), member(1, Some(Follower)), broken];
        let operation = Operation {
            kind: "RollingRestart".into(),
            step: "waiting: roll stopped ...".into(),
        };
        let stuck = vec!["zk-2".to_string()];
        let s = compute(
            &zk,
            StatusInputs {
                operation: Some(&operation),
                stuck: &stuck,
                ..inputs(&members, &sts, now())
            },
        );
        assert_eq!(get(&s, PROGRESSING).status, "False");
        assert_eq!(get(&s, PROGRESSING).reason, "RolloutStuck");
        assert_eq!(get(&s, DEGRADED).reason, "MemberStuck");
        let message = s.message.unwrap();
        assert!(
            message.contains("zk-2") && message.contains("ImagePullBackOff"),
            "{message}"
        );
        assert!(s.members[2].reason.as_deref().unwrap().contains("3.9.99"));
    }

    #[test]
    fn a_failed_reconcile_keeps_what_was_known_and_says_where_it_failed() {
        use ServingRole::*;
        let mut zk = cluster(1);
        let sts = rolled_out(1);
        let members = [member(0, Some(Leader))];
        zk.status = Some(compute(&zk, inputs(&members, &sts, now())));
        let s = failed(&zk, "ApplyFailed", "apply StatefulSet ns/zk: Invalid".into(), now());
        assert_eq!(get(&s, RECONCILED).status, "False");
        assert_eq!(get(&s, RECONCILED).reason, "ApplyFailed");
        assert_eq!(get(&s, AVAILABLE).status, "True");
        assert_eq!(s.leader.as_deref(), Some("zk-0"));
    }

    #[test]
    fn transition_time_changes_only_with_the_status() {
        use ServingRole::*;
        let mut zk = cluster(1);
        let sts = rolled_out(1);
        let up = [member(0, Some(Leader))];
        zk.status = Some(compute(&zk, inputs(&up, &sts, now())));
        let later = Time(Timestamp::from_second(1_800_000_100).unwrap());
        let again = compute(&zk, inputs(&up, &sts, later.clone()));
        assert_eq!(get(&again, AVAILABLE).last_transition_time, now());
        let down = [member(0, None)];
        assert_eq!(
            get(&compute(&zk, inputs(&down, &sts, later.clone())), AVAILABLE).last_transition_time,
            later
        );
    }

    #[test]
    fn the_ensemble_is_new_only_until_its_first_quorum() {
        assert_eq!(ensemble_state(None, false, None, false), EnsembleState::New);
        assert_eq!(ensemble_state(Some(NEW), false, None, false), EnsembleState::New);
        assert_eq!(ensemble_state(Some(NEW), true, None, false), EnsembleState::Existing);
        assert_eq!(
            ensemble_state(Some(EXISTING), false, None, false),
            EnsembleState::Existing
        );
        // Re-created over volumes an earlier ensemble kept.
        assert_eq!(ensemble_state(None, false, None, true), EnsembleState::Existing);
        // The ConfigMap is gone during a quorum loss: no leader and not available now, but the
        // status remembers.
        let during_quorum_loss = ZooKeeperClusterStatus {
            ensemble_state: Some(EXISTING.into()),
            ..Default::default()
        };
        assert_eq!(
            ensemble_state(None, false, Some(&during_quorum_loss), false),
            EnsembleState::Existing
        );
    }

    #[test]
    fn status_never_forgets_that_the_ensemble_exists() {
        // Quorum lost: no leader, not available; the status computed now still says existing.
        let mut zk = cluster(3);
        let sts = rolled_out(3);
        let members = [member(0, None), member(1, None), member(2, None)];
        zk.status = Some(ZooKeeperClusterStatus {
            ensemble_state: Some(EXISTING.into()),
            ..Default::default()
        });
        let state = ensemble_state(None, false, zk.status.as_ref(), false);
        let s = compute(
            &zk,
            StatusInputs {
                ensemble_state: state,
                ..inputs(&members, &sts, now())
            },
        );
        assert_eq!(s.leader, None);
        assert_eq!(s.ensemble_state.as_deref(), Some(EXISTING));
    }
}
