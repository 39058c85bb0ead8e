//! Execute: carry out the planner's step. Restarts go through the Eviction API, conditional on
//! the pod being the one observed, so that PodDisruptionBudgets and other disruptions (a drain)
//! are respected; reconfigurations are conditional on the configuration version the step was
//! planned from. A refusal is an outcome, not an error: the next reconcile observes again.

use crate::controller::Context;
use crate::ensemble::{self, Change};
use crate::error::{named, At, Error, Stage};
use crate::events::EventType;
use crate::observe::{roles_now, serving_targets, Observation};
use crate::planner::Step;
use crate::resources::Names;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, PostParams, Preconditions};
use std::time::{Duration, Instant};
use vocabulary::{ordinal_for_myid, ports, ServingRole};

/// How long a hand-off may take to show before the old leader is left to the next reconcile.
const HAND_OFF_WITHIN: Duration = Duration::from_secs(10);

/// What came of a step, for an event: its type, reason and note.
pub type Outcome = Option<(EventType, &'static str, String)>;

pub async fn execute(
    ctx: &Context,
    names: &Names,
    observation: &Observation,
    step: &Step,
    local_plaintext: bool,
) -> Result<Outcome, Error> {
    Ok(match step {
        Step::Restart { ordinal, reason } => restart(ctx, names, observation, *ordinal, reason).await?,
        Step::AddVoter { id } => match joiner_gone(ctx, names, observation, *id).await? {
            Some(why) => Some((
                EventType::Normal,
                "ReconfigurationPending",
                format!("server.{id} not made a voter: {why}; planning again"),
            )),
            None => {
                let change = Change::Join {
                    id: *id,
                    line: ensemble::member_line(names, &ctx.settings, *id, local_plaintext),
                };
                reconfigure(observation, &change, None).await
            }
        },
        Step::UpdateMember { id } => {
            let change = Change::Join {
                id: *id,
                line: ensemble::member_line(names, &ctx.settings, *id, local_plaintext),
            };
            reconfigure(observation, &change, None).await
        }
        Step::MoveClientPort { id } => move_client_port(ctx, names, observation, *id, local_plaintext).await?,
        Step::RemoveVoter { id } => reconfigure(observation, &Change::Leave { id: *id }, Some(*id)).await,
        Step::HandOff { id } => hand_off(ctx, names, observation, *id, local_plaintext).await?,
        Step::SetReplicas(n) => Some((
            EventType::Normal,
            "Resized",
            format!("StatefulSet resized to {n} members"),
        )),
        Step::DeleteVolume { ordinal } => {
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &names.namespace);
            let claim = names.claim(*ordinal);
            claims
                .delete(&claim, &DeleteParams::default())
                .await
                .at(Stage::Execute, named::<PersistentVolumeClaim>(&names.namespace, &claim))?;
            Some((
                EventType::Normal,
                "DeletedStaleVolume",
                format!("deleted {claim}, retained when member {ordinal} was removed: it is added again empty"),
            ))
        }
        Step::Wait(_) | Step::Idle => None,
    })
}

/// Commits server `id`'s line with its new client address, then restarts the member, which
/// listens on the new address when it starts again. The eviction is tried as a dry run first:
/// committed without the restart after it, the line would leave the member without its client
/// port until its liveness probe restarts it, maybe while another member is down (the
/// simulation's late views found that).
async fn move_client_port(
    ctx: &Context,
    names: &Names,
    observation: &Observation,
    id: u64,
    local_plaintext: bool,
) -> Result<Outcome, Error> {
    let Some(ordinal) = ordinal_for_myid(id) else {
        return Ok(None);
    };
    match evict(ctx, names, observation, ordinal, true).await? {
        Eviction::Done => {}
        Eviction::Deferred(why) => return Ok(Some((EventType::Normal, "RestartDeferred", why))),
        Eviction::Changed => return Ok(None),
    }
    let line = ensemble::member_line(names, &ctx.settings, id, local_plaintext);
    let change = Change::Join { id, line: line.clone() };
    match reconfigure(observation, &change, None).await {
        Some((EventType::Normal, ..)) => {
            let reason = format!("its client port moved ({line}): ZooKeeper cannot rebind it while it runs");
            restart(ctx, names, observation, ordinal, &reason).await
        }
        outcome => Ok(outcome),
    }
}

async fn restart(
    ctx: &Context,
    names: &Names,
    observation: &Observation,
    ordinal: u32,
    reason: &str,
) -> Result<Outcome, Error> {
    let pod = names.pod(ordinal);
    Ok(match evict(ctx, names, observation, ordinal, false).await? {
        Eviction::Done => Some((
            EventType::Normal,
            "RestartingMember",
            format!("evicted {pod}: {reason}"),
        )),
        Eviction::Deferred(why) => Some((EventType::Normal, "RestartDeferred", why)),
        Eviction::Changed => None,
    })
}

enum Eviction {
    /// Evicted (or, as a dry run, it would be).
    Done,
    /// The budget allows no disruption now (another member is down, or a drain is evicting).
    Deferred(String),
    /// The pod changed or went away since it was observed: plan again from what is there now.
    Changed,
}

/// Evicts the member's pod (`dry_run`: asks whether it may), conditional on it being the pod
/// observed.
async fn evict(
    ctx: &Context,
    names: &Names,
    observation: &Observation,
    ordinal: u32,
    dry_run: bool,
) -> Result<Eviction, Error> {
    let pod = names.pod(ordinal);
    let Some(uid) = observation
        .members
        .iter()
        .find(|m| m.ordinal == ordinal)
        .map(|m| m.uid.clone())
        .filter(|uid| !uid.is_empty())
    else {
        return Ok(Eviction::Changed);
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let params = EvictParams {
        delete_options: Some(DeleteParams {
            dry_run,
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        }),
        post_options: PostParams {
            dry_run,
            ..Default::default()
        },
    };
    Ok(match pods.evict(&pod, &params).await {
        Ok(_) => Eviction::Done,
        Err(kube::Error::Api(status)) if status.code == 429 => Eviction::Deferred(format!(
            "the PodDisruptionBudget allows no disruption now; {pod} is restarted when it does"
        )),
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Eviction::Changed,
        Err(error) => return Err(error).at(Stage::Execute, named::<Pod>(&names.namespace, &pod)),
    })
}

/// Why the member `id` may not become a voter now, though the plan said so: its pod is no longer
/// the one observed serving, is being deleted, or does not serve now. The plan came from
/// Kubernetes' caches, which can be a moment late (a scale-down, a deleted pod); ZooKeeper would
/// accept a voter that is going away, and the ensemble would then need one more member to keep
/// its quorum. Found by the simulation's late views (tests/simulation.rs).
async fn joiner_gone(
    ctx: &Context,
    names: &Names,
    observation: &Observation,
    id: u64,
) -> Result<Option<String>, Error> {
    let Some(member) = ordinal_for_myid(id).and_then(|o| observation.members.iter().find(|m| m.ordinal == o)) else {
        return Ok(Some("it has no pod".into()));
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let listed = pods
        .list(&ListParams::default().fields(&format!("metadata.name={}", member.pod)))
        .await
        .at(Stage::Execute, named::<Pod>(&names.namespace, &member.pod))?;
    let Some(pod) = listed.items.first() else {
        return Ok(Some(format!("{} is gone", member.pod)));
    };
    if pod.metadata.uid.as_deref() != Some(member.uid.as_str()) {
        return Ok(Some(format!("{} was replaced since it was observed", member.pod)));
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(Some(format!("{} is being deleted", member.pod)));
    }
    let roles = roles_now(std::slice::from_ref(member), &observation.credentials).await;
    if roles.iter().all(|(_, role)| role.is_none()) {
        return Ok(Some(format!("{} does not serve now", member.pod)));
    }
    Ok(None)
}

async fn reconfigure(observation: &Observation, change: &Change, leaving: Option<u64>) -> Outcome {
    let from_version = observation.ensemble.as_ref().and_then(|e| e.version);
    let targets = serving_targets(&observation.members, leaving);
    Some(
        match ensemble::reconfigure(&targets, &observation.credentials, change, from_version).await {
            Ok(()) => match change {
                Change::Join { id, line } => (
                    EventType::Normal,
                    "AddedVoter",
                    format!("server.{id} is a voter: {line}"),
                ),
                Change::Leave { id } => (
                    EventType::Normal,
                    "RemovedVoter",
                    format!("server.{id} left the ensemble"),
                ),
            },
            // Not an error of the reconcile: the next one observes the ensemble again and decides anew.
            Err(why) => (EventType::Warning, "ReconfigurationPending", why),
        },
    )
}

/// Hands leadership from server `id` to a follower, then restarts it. Its line is committed with
/// the other quorum port; ZooKeeper then designates a synced follower as the leader and the
/// followers switch to it without an election. The old leader goes on answering as a leader,
/// holding its clients' writes, until it notices it lost its followers (up to a tick): so it is
/// restarted as soon as a quorum of the others serves under the new leader. Its line moves back
/// afterwards (the planner's UpdateMember, without a restart). The line also carries the client
/// address the member should listen on: it binds that one when it starts again, since ZooKeeper
/// cannot move a listening client port while it runs (`ClusterView::client_moves`).
async fn hand_off(
    ctx: &Context,
    names: &Names,
    observation: &Observation,
    id: u64,
    local_plaintext: bool,
) -> Result<Outcome, Error> {
    let Some(committed) = observation.ensemble.as_ref().and_then(|e| e.members.get(&id)) else {
        return Ok(None);
    };
    let mut line = committed.clone();
    line.quorum_port = if line.quorum_port == ports::QUORUM_HANDOFF {
        ports::QUORUM
    } else {
        ports::QUORUM_HANDOFF
    };
    let ordinals = u32::try_from(id).unwrap_or(u32::MAX);
    if let Some(wanted) = crate::resources::membership(names, &ctx.settings, ordinals, local_plaintext).member(id) {
        line.client_address = wanted.client_address.clone();
        line.client_port = wanted.client_port;
    }
    let change = Change::Join {
        id,
        line: line.to_string(),
    };
    let from_version = observation.ensemble.as_ref().and_then(|e| e.version);
    let targets = serving_targets(&observation.members, Some(id));
    if let Err(why) = ensemble::reconfigure(&targets, &observation.credentials, &change, from_version).await {
        return Ok(Some((EventType::Warning, "HandOffPending", why)));
    }
    let Some(ordinal) = ordinal_for_myid(id) else {
        return Ok(None);
    };
    let voters = observation
        .ensemble
        .as_ref()
        .map(|e| e.voters.clone())
        .unwrap_or_default();
    let others: Vec<u32> = voters
        .iter()
        .filter(|v| **v != id)
        .filter_map(|v| ordinal_for_myid(*v))
        .collect();
    let deadline = Instant::now() + HAND_OFF_WITHIN;
    let successor = loop {
        let roles = roles_now(&observation.members, &observation.credentials).await;
        let role = |o: u32| roles.iter().find(|(ordinal, _)| *ordinal == o).and_then(|(_, r)| *r);
        let leader = others.iter().copied().find(|o| role(*o) == Some(ServingRole::Leader));
        let serving = others.iter().filter(|o| role(**o).is_some()).count();
        // A quorum of the whole configuration without the old leader's vote.
        if leader.is_some() && serving >= vocabulary::quorum(voters.len()) {
            break leader;
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let Some(successor) = successor else {
        return Ok(Some((
            EventType::Normal,
            "HandOffPending",
            format!(
                "server.{id}'s line now has quorum port {}, but no quorum of the other members serves under a new \
                 leader after {}s; the next reconcile looks again",
                line.quorum_port,
                HAND_OFF_WITHIN.as_secs()
            ),
        )));
    };
    let reason = format!(
        "rolling out the current template (leader, last): leadership handed to {} without an election",
        names.pod(successor)
    );
    restart(ctx, names, observation, ordinal, &reason).await
}
