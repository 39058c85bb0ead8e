//! The cluster's status, computed from what was observed: pure functions, no API calls.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use zk_agent::guard::EnsembleState;
use zk_agent::probe::ServingMode;
use zkop_api::{MemberStatus, ZooKeeperCluster, ZooKeeperClusterStatus};

/// One member as the operator sees it: its pod, and what its `srvr` said.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberObservation {
    pub pod: String,
    pub ordinal: u32,
    /// `None` when the member is not serving (no quorum, syncing, not running).
    pub serving: Option<ServingMode>,
    /// The pod runs the StatefulSet's current revision.
    pub up_to_date: bool,
    pub terminating: bool,
    /// `<pod IP>:<client port>`, when the pod has an address.
    pub address: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatefulSetObservation {
    pub replicas: i32,
    pub ready_replicas: i32,
    pub updated_replicas: i32,
    /// The StatefulSet controller has seen the latest spec and finished rolling it out.
    pub rolled_out: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub statefulset: Option<StatefulSetObservation>,
    pub members: Vec<MemberObservation>,
}

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// A quorum of the desired members serves, with a leader among them.
pub fn available(zk: &ZooKeeperCluster, observed: &Observed) -> bool {
    let serving = observed.members.iter().filter(|m| m.serving.is_some()).count();
    let has_leader = observed.members.iter().any(|m| m.serving == Some(ServingMode::Leader));
    has_leader && serving >= quorum(zk.spec.replicas)
}

pub fn quorum(replicas: i32) -> usize {
    usize::try_from(replicas.max(1)).unwrap_or(1) / 2 + 1
}

/// `new` until the ensemble first reaches quorum, then `existing` for good. The value lives in the
/// cluster's ConfigMap, so an operator restart never turns an existing ensemble into a new one;
/// the cluster's own status is a second witness, should the ConfigMap be deleted while the
/// ensemble has no quorum (declaring it new then would let an empty member vote).
pub fn ensemble_state(
    recorded: Option<&str>,
    available_now: bool,
    status: Option<&ZooKeeperClusterStatus>,
) -> EnsembleState {
    let has_had_quorum = status.is_some_and(|s| s.leader.is_some()) || condition_is_true(status, AVAILABLE);
    if recorded == Some("existing") || available_now || has_had_quorum {
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

pub fn compute(
    zk: &ZooKeeperCluster,
    observed: &Observed,
    operation: Option<&Operation>,
    selector: String,
    now: Time,
) -> ZooKeeperClusterStatus {
    let previous = zk.status.clone().unwrap_or_default();
    let generation = zk.metadata.generation;
    let desired = zk.spec.replicas;
    let serving: Vec<&MemberObservation> = observed.members.iter().filter(|m| m.serving.is_some()).collect();
    let leader = observed.members.iter().find(|m| m.serving == Some(ServingMode::Leader));
    let is_available = available(zk, observed);
    let sts = observed.statefulset.clone().unwrap_or_default();
    let not_serving: Vec<&str> = observed
        .members
        .iter()
        .filter(|m| m.serving.is_none())
        .map(|m| m.pod.as_str())
        .collect();
    let missing = usize::try_from(desired)
        .unwrap_or(0)
        .saturating_sub(observed.members.len());

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
    } else if observed.statefulset.is_none() {
        (false, "Creating", "the StatefulSet does not exist yet".to_string())
    } else {
        (
            false,
            "NoQuorum",
            format!(
                "{} of {desired} members serve; a quorum needs {} and a leader",
                serving.len(),
                quorum(desired)
            ),
        )
    };
    let progressing = if observed.statefulset.is_none() {
        (true, "Creating", "creating the ensemble's resources".to_string())
    } else if let Some(op) = operation {
        (true, op.kind.as_str(), op.step.clone())
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
    let degraded = if !not_serving.is_empty() || missing > 0 {
        let mut parts = Vec::new();
        if !not_serving.is_empty() {
            parts.push(format!("not serving: {}", not_serving.join(", ")));
        }
        if missing > 0 {
            parts.push(format!("{missing} member pods missing"));
        }
        (true, "MembersNotServing", parts.join("; "))
    } else {
        (false, "AllMembersServing", format!("all {desired} members serve"))
    };

    let conditions = [
        (AVAILABLE, available_condition),
        (PROGRESSING, progressing),
        (DEGRADED, degraded),
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
            now.clone(),
        )
    })
    .collect();

    let mut members: Vec<MemberStatus> = observed
        .members
        .iter()
        .map(|m| MemberStatus {
            name: m.pod.clone(),
            id: zk_agent::identity::myid_for_ordinal(m.ordinal),
            role: match m.serving {
                Some(ServingMode::Leader) => "leader",
                Some(ServingMode::Follower) => "follower",
                Some(ServingMode::Observer) => "observer",
                None => "none",
            }
            .to_string(),
            ready: m.serving.is_some(),
        })
        .collect();
    members.sort_by_key(|m| m.id);

    ZooKeeperClusterStatus {
        observed_generation: generation,
        conditions,
        replicas: i32::try_from(observed.members.len()).unwrap_or(i32::MAX),
        ready_replicas: i32::try_from(serving.len()).unwrap_or(i32::MAX),
        leader: leader.map(|l| l.pod.clone()),
        version: Some(zk.spec.version.clone()),
        selector: Some(selector),
        members,
        operation: operation.map(|o| o.kind.clone()),
        operation_step: operation.map(|o| o.step.clone()),
    }
}

/// A condition, keeping its lastTransitionTime while its status does not change.
fn condition(
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

    fn member(ordinal: u32, serving: Option<ServingMode>) -> MemberObservation {
        MemberObservation {
            pod: format!("zk-{ordinal}"),
            ordinal,
            serving,
            up_to_date: true,
            terminating: false,
            address: None,
        }
    }

    fn rolled_out(replicas: i32) -> Option<StatefulSetObservation> {
        Some(StatefulSetObservation {
            replicas,
            ready_replicas: replicas,
            updated_replicas: replicas,
            rolled_out: true,
        })
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn get<'a>(s: &'a ZooKeeperClusterStatus, kind: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == kind).unwrap()
    }

    #[test]
    fn a_quorum_with_a_leader_is_available() {
        use ServingMode::*;
        let zk = cluster(3);
        let observed = Observed {
            statefulset: rolled_out(3),
            members: vec![member(0, Some(Follower)), member(1, Some(Leader)), member(2, None)],
        };
        let s = compute(&zk, &observed, None, "sel".into(), now());
        assert_eq!(get(&s, AVAILABLE).status, "True");
        assert_eq!(get(&s, DEGRADED).status, "True");
        assert!(get(&s, DEGRADED).message.contains("zk-2"));
        assert_eq!(get(&s, PROGRESSING).status, "False");
        assert_eq!(s.leader.as_deref(), Some("zk-1"));
        assert_eq!(s.ready_replicas, 2);
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(s.members[2].role, "none");
        assert_eq!(s.members[1].id, 2);

        let no_leader = Observed {
            statefulset: rolled_out(3),
            members: vec![member(0, Some(Follower)), member(1, Some(Follower))],
        };
        assert_eq!(
            get(&compute(&zk, &no_leader, None, "sel".into(), now()), AVAILABLE).status,
            "False"
        );
        let one = Observed {
            statefulset: rolled_out(3),
            members: vec![member(0, Some(Leader)), member(1, None), member(2, None)],
        };
        assert_eq!(
            get(&compute(&zk, &one, None, "sel".into(), now()), AVAILABLE).reason,
            "NoQuorum"
        );
    }

    #[test]
    fn transition_time_changes_only_with_the_status() {
        use ServingMode::*;
        let mut zk = cluster(1);
        let observed = Observed {
            statefulset: rolled_out(1),
            members: vec![member(0, Some(Leader))],
        };
        zk.status = Some(compute(&zk, &observed, None, "sel".into(), now()));
        let later = Time(Timestamp::from_second(1_800_000_100).unwrap());
        let again = compute(&zk, &observed, None, "sel".into(), later.clone());
        assert_eq!(get(&again, AVAILABLE).last_transition_time, now());
        let down = Observed {
            statefulset: rolled_out(1),
            members: vec![member(0, None)],
        };
        assert_eq!(
            get(&compute(&zk, &down, None, "sel".into(), later.clone()), AVAILABLE).last_transition_time,
            later
        );
    }

    #[test]
    fn the_ensemble_is_new_only_until_its_first_quorum() {
        assert_eq!(ensemble_state(None, false, None), EnsembleState::New);
        assert_eq!(ensemble_state(Some("new"), false, None), EnsembleState::New);
        assert_eq!(ensemble_state(Some("new"), true, None), EnsembleState::Existing);
        assert_eq!(ensemble_state(Some("existing"), false, None), EnsembleState::Existing);
        // The ConfigMap is gone and there is no quorum now, but the status remembers a leader.
        let seen = ZooKeeperClusterStatus {
            leader: Some("zk-0".into()),
            ..Default::default()
        };
        assert_eq!(ensemble_state(None, false, Some(&seen)), EnsembleState::Existing);
    }
}
