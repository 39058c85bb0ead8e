//! Day-2 planning: from what is observed, the one next safe step. Pure; the controller executes.
//!
//! Invariants, checked by the property tests below and by the fault simulation in
//! `tests/simulation.rs`:
//! - never take a serving member down while any other member is down (a missing pod counts as
//!   down): at most one member down by the operator's hand;
//! - a member that is down on an outdated template is restarted first, so that fixing or
//!   reverting a spec that broke a member heals it with no human action;
//! - never reconfigure without a serving quorum of the current voters, nor into a configuration
//!   whose voters could not form a quorum from the members serving now;
//! - followers are restarted before the leader; the leader goes last, and hands leadership to a
//!   serving follower first when one votes (no election), once per restart;
//! - the StatefulSet shrinks only after the ensemble no longer counts the member it removes,
//!   and grows by one member at a time, which joins as a voter only once it has synced.

use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeSet;
use std::time::Duration;
pub use vocabulary::{myid_for_ordinal, quorum, ServingRole as Role};

/// How a member is doing, from its pod and its `srvr` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberState {
    /// No pod for this ordinal: the StatefulSet controller has not (re)created it yet.
    Missing,
    /// The pod is being deleted.
    Terminating,
    /// Serving in a quorum, in this role.
    Serving(Role),
    /// The container runs but the member does not serve: it looks for a quorum, or syncs.
    Running,
    /// The pod cannot run its member: not scheduled, image not pulled, container crash-looping
    /// or exited.
    Broken,
}

/// One member (an ordinal of the StatefulSet) as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub ordinal: u32,
    pub state: MemberState,
    /// The pod runs the StatefulSet's update revision (a missing pod will be created on it).
    pub up_to_date: bool,
    /// How long the member has not served on its current pod; zero while serving or unknown.
    pub down_for: Duration,
    /// Since when, for the texts: a time, not a duration, so that a wait's text (and the status
    /// that carries it) stays the same from one pass to the next while nothing changes.
    pub down_since: Option<Timestamp>,
    /// Why it does not serve, from its pod: image pull error, last termination, scheduler message.
    pub cause: Option<String>,
}

impl MemberView {
    pub fn id(&self) -> u64 {
        myid_for_ordinal(self.ordinal)
    }
    pub fn role(&self) -> Option<Role> {
        match self.state {
            MemberState::Serving(role) => Some(role),
            _ => None,
        }
    }
    pub fn serves(&self) -> bool {
        self.role().is_some()
    }
    /// A member absent from an observation, e.g. a pod the StatefulSet has not recreated yet.
    pub fn missing(ordinal: u32) -> MemberView {
        MemberView {
            ordinal,
            state: MemberState::Missing,
            up_to_date: true,
            down_for: Duration::ZERO,
            down_since: None,
            cause: Some("its pod does not exist; the StatefulSet controller creates it".into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The StatefulSet's name: member pods are `<statefulset>-<ordinal>`.
    pub statefulset: String,
    pub desired_replicas: u32,
    /// `spec.replicas` of the StatefulSet.
    pub statefulset_replicas: u32,
    /// Members by ordinal; an ordinal below `statefulset_replicas` that is absent counts as missing.
    pub members: Vec<MemberView>,
    /// Voting members (server ids) of the ensemble's committed configuration, as ZooKeeper reports
    /// it; `None` when it could not be read (no quorum to ask).
    pub voters: Option<BTreeSet<u64>>,
    /// Ordinals beyond the StatefulSet's size whose volume was retained after a scale-down.
    pub leftover_volumes: BTreeSet<u32>,
    /// A member that does not serve for this long stops the roll and is reported as stuck.
    pub member_ready_timeout: Duration,
    /// Voters whose committed `server.N=` line differs from the one they should have (the
    /// client address moves to 127.0.0.1 when TLS is fully on, and back when it is off).
    pub outdated_lines: BTreeSet<u64>,
    /// Voters whose committed line has the hand-off quorum port: leadership was handed from them.
    pub handed_off: BTreeSet<u64>,
    /// Outdated lines whose client address moves between all addresses and 127.0.0.1 (TLS fully
    /// on or off). ZooKeeper cannot move a listening client port so while it runs: it binds the
    /// new address first, which fails while the old one listens, and then closes the old one
    /// (NettyServerCnxnFactory.reconfigure), leaving the member without its plaintext port until
    /// it restarts. Seen in the TLS migration e2e test: committed live on all three members, the
    /// liveness probes restarted two of them at once, and quorum was lost.
    pub client_moves: BTreeSet<u64>,
    /// Hand leadership to a follower before the leader restarts (`spec.rollout.leaderHandOff`).
    pub leader_hand_off: bool,
}

impl ClusterView {
    /// Every member the StatefulSet should have, and any pod beyond its size, by ordinal.
    pub fn members_by_ordinal(&self) -> Vec<MemberView> {
        let mut members = self.members.clone();
        for ordinal in 0..self.statefulset_replicas {
            if !members.iter().any(|m| m.ordinal == ordinal) {
                members.push(MemberView::missing(ordinal));
            }
        }
        members.sort_by_key(|m| m.ordinal);
        members
    }

    fn pod(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.statefulset)
    }

    /// "zk-2 not running since 2026-12-03T10:05:00Z: ImagePullBackOff: ...", for wait reasons.
    fn describe_down(&self, members: &[&MemberView]) -> String {
        members
            .iter()
            .map(|m| {
                let mut text = format!(
                    "{} {}",
                    self.pod(m.ordinal),
                    match &m.state {
                        MemberState::Missing => "missing".to_string(),
                        MemberState::Terminating => "terminating".to_string(),
                        MemberState::Running => "running but not serving".to_string(),
                        MemberState::Broken => "not running".to_string(),
                        MemberState::Serving(role) => role.to_string(),
                    }
                );
                if let Some(since) = m.down_since.filter(|_| !m.down_for.is_zero()) {
                    let since = Timestamp::from_second(since.as_second()).unwrap_or(since);
                    text.push_str(&format!(" since {since}"));
                }
                if let Some(cause) = &m.cause {
                    text.push_str(&format!(": {cause}"));
                }
                text
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing may be done now; the reason goes to status.
    Wait(String),
    /// Evict this member's pod so that it comes back with the current template.
    Restart { ordinal: u32, reason: String },
    /// Add this server id to the ensemble's voters (dynamic reconfiguration).
    AddVoter { id: u64 },
    /// Remove this server id from the ensemble (dynamic reconfiguration).
    RemoveVoter { id: u64 },
    /// Commit server `id`'s line as it should be now (dynamic reconfiguration; no restart).
    UpdateMember { id: u64 },
    /// Commit server `id`'s line, whose client address moves (`ClusterView::client_moves`), and
    /// restart the member at once so that it listens on the new address.
    MoveClientPort { id: u64 },
    /// Move leadership off server `id`, the leader, before it restarts: commit its line with the
    /// other quorum port, and ZooKeeper designates a synced follower as the leader.
    HandOff { id: u64 },
    /// Resize the StatefulSet.
    SetReplicas(u32),
    /// Delete the volume a removed member left behind, so that it is added again empty.
    DeleteVolume { ordinal: u32 },
    /// The ensemble matches the spec.
    Idle,
}

/// Members that have not served for at least the view's `member_ready_timeout`.
pub fn stuck(view: &ClusterView) -> Vec<MemberView> {
    view.members_by_ordinal()
        .into_iter()
        .filter(|m| !m.serves() && m.down_for >= view.member_ready_timeout)
        .collect()
}

pub fn plan(view: &ClusterView) -> Step {
    let members = view.members_by_ordinal();
    let down: Vec<&MemberView> = members.iter().filter(|m| !m.serves()).collect();
    let serving_ids: BTreeSet<u64> = members.iter().filter(|m| m.serves()).map(MemberView::id).collect();
    let quorum_serves = view
        .voters
        .as_ref()
        .is_some_and(|voters| voters.intersection(&serving_ids).count() >= quorum(voters.len()));

    // An outdated member that is down is restarted first: it is down anyway, and it comes back on
    // the current template. This is how a reverted or fixed spec heals a member a bad template
    // broke. Without a quorum only members that cannot run are restarted: a member that runs may
    // be exactly what the quorum waits for.
    let repair = members.iter().find(|m| {
        m.ordinal < view.statefulset_replicas
            && !m.up_to_date
            && (m.state == MemberState::Broken || (m.state == MemberState::Running && quorum_serves))
    });
    if let Some(member) = repair {
        return Step::Restart {
            ordinal: member.ordinal,
            reason: format!(
                "{} is down on an outdated template: restarting it on the current one",
                view.describe_down(&[member])
            ),
        };
    }

    let Some(voters) = &view.voters else {
        return Step::Wait(format!(
            "the ensemble's configuration cannot be read: no quorum serves; down: {}",
            view.describe_down(&down)
        ));
    };
    let serving_voters = voters.intersection(&serving_ids).count();
    if serving_voters < quorum(voters.len()) {
        return Step::Wait(format!(
            "only {serving_voters} of {} voters serve; a quorum needs {}; down: {}",
            voters.len(),
            quorum(voters.len()),
            view.describe_down(&down)
        ));
    }
    // A deposed leader can still answer "leader" for a moment; act only on an agreed view.
    let leaders: Vec<String> = members
        .iter()
        .filter(|m| m.role() == Some(Role::Leader))
        .map(|m| view.pod(m.ordinal))
        .collect();
    if leaders.len() > 1 {
        return Step::Wait(format!(
            "{} all report being the leader; waiting until the ensemble agrees",
            leaders.join(", ")
        ));
    }
    let pods: BTreeSet<u64> = members
        .iter()
        .filter(|m| m.state != MemberState::Missing)
        .map(MemberView::id)
        .collect();
    let desired: BTreeSet<u64> = (0..view.desired_replicas).map(myid_for_ordinal).collect();

    // Scale down, one member at a time: the highest member beyond the desired size leaves the
    // ensemble by reconfiguration, then its pod goes away, then the next. A member that is down
    // may leave; any other member being down makes the removal wait, so that the ensemble never
    // gives up a spare voter while it is short of one.
    if view.statefulset_replicas > view.desired_replicas {
        let top = myid_for_ordinal(view.statefulset_replicas - 1);
        if !voters.contains(&top) {
            return Step::SetReplicas(view.statefulset_replicas - 1);
        }
    }
    if let Some(&leaving) = voters.iter().rev().find(|id| !desired.contains(id)) {
        let remaining: BTreeSet<u64> = voters.iter().copied().filter(|id| *id != leaving).collect();
        let serving_after = remaining.intersection(&serving_ids).count();
        let others_down: Vec<&MemberView> = down.iter().copied().filter(|m| m.id() != leaving).collect();
        if !others_down.is_empty() {
            return Step::Wait(format!(
                "waiting for members to serve before removing server.{leaving}: {}",
                view.describe_down(&others_down)
            ));
        }
        if serving_after < quorum(remaining.len()) {
            return Step::Wait(format!("removing server.{leaving} would leave no serving quorum"));
        }
        return Step::RemoveVoter { id: leaving };
    }
    if view.statefulset_replicas > view.desired_replicas {
        return Step::SetReplicas(view.statefulset_replicas - 1);
    }
    if let Some(ordinal) = members
        .iter()
        .filter(|m| m.state != MemberState::Missing)
        .map(|m| m.ordinal)
        .max()
        .filter(|o| *o >= view.desired_replicas)
    {
        return Step::Wait(format!("waiting for the pod {} to go away", view.pod(ordinal)));
    }

    // Scale up: one new member at a time; it becomes a voter once it has synced.
    if let Some(joining) = desired
        .iter()
        .copied()
        .find(|id| !voters.contains(id) && pods.contains(id))
    {
        if serving_ids.contains(&joining) && down.is_empty() {
            return Step::AddVoter { id: joining };
        }
        return Step::Wait(format!(
            "waiting for server.{joining} to sync from the leader before it votes; down: {}",
            view.describe_down(&down)
        ));
    }
    if view.statefulset_replicas < view.desired_replicas {
        if !down.is_empty() {
            return Step::Wait(format!(
                "waiting for members to serve before adding one: {}",
                view.describe_down(&down)
            ));
        }
        // A member added again never starts from the data it had when it was removed.
        if view.leftover_volumes.contains(&view.statefulset_replicas) {
            return Step::DeleteVolume {
                ordinal: view.statefulset_replicas,
            };
        }
        return Step::SetReplicas(view.statefulset_replicas + 1);
    }

    // Rolling restart: one member at a time, followers first, the leader last; it stops while
    // any member is down, and says for how long and why.
    let outdated: Vec<&MemberView> = members.iter().filter(|m| !m.up_to_date).collect();
    if outdated.is_empty() {
        if !down.is_empty() {
            return Step::Wait(format!("waiting for members to serve: {}", view.describe_down(&down)));
        }
        // Once every member runs the current template: lines to commit anew, one at a time. A
        // line whose client address moves means a restart: the leader hands off first (its
        // hand-off line carries the new address), a follower restarts right after the commit.
        return match view.outdated_lines.iter().find(|id| voters.contains(id)) {
            Some(&id) if view.client_moves.contains(&id) => {
                let leads = members.iter().any(|m| m.id() == id && m.role() == Some(Role::Leader));
                let successor = members
                    .iter()
                    .any(|m| m.id() != id && m.role() == Some(Role::Follower) && voters.contains(&m.id()));
                if leads && view.leader_hand_off && successor && !view.handed_off.contains(&id) {
                    Step::HandOff { id }
                } else {
                    Step::MoveClientPort { id }
                }
            }
            Some(&id) => Step::UpdateMember { id },
            None => Step::Idle,
        };
    }
    if !down.is_empty() {
        let stopped = down.iter().any(|m| m.down_for >= view.member_ready_timeout);
        return Step::Wait(if stopped {
            format!(
                "roll stopped: a member has not served for {}s; fix or revert the spec: {}",
                view.member_ready_timeout.as_secs(),
                view.describe_down(&down)
            )
        } else {
            format!("roll paused while a member is down: {}", view.describe_down(&down))
        });
    }
    let next = outdated
        .iter()
        .filter(|m| m.role() != Some(Role::Leader))
        .max_by_key(|m| m.ordinal)
        .or_else(|| outdated.first())
        .expect("outdated is not empty");
    let reason = if next.role() == Some(Role::Leader) {
        // Leadership is handed over once: should the leader lead again before its restart (it
        // was elected back), it restarts as it is, and the members elect.
        let successor = members
            .iter()
            .any(|m| m.id() != next.id() && m.role() == Some(Role::Follower) && voters.contains(&m.id()));
        if view.leader_hand_off && successor && voters.contains(&next.id()) && !view.handed_off.contains(&next.id()) {
            return Step::HandOff { id: next.id() };
        }
        "leader, last"
    } else {
        "follower"
    };
    Step::Restart {
        ordinal: next.ordinal,
        reason: format!("rolling out the current template ({reason})"),
    }
}

/// Every kind of day-2 operation `describe` names.
pub const OPERATIONS: [&str; 4] = ["RollingRestart", "ScaleUp", "ScaleDown", "Reconfiguring"];

/// The operation a step belongs to (RollingRestart, ScaleUp, ScaleDown) and what it does, for
/// status; `None` when the ensemble matches the spec (or only waits for a member to recover).
pub fn describe(view: &ClusterView, step: &Step) -> Option<(&'static str, String)> {
    let desired: BTreeSet<u64> = (0..view.desired_replicas).map(myid_for_ordinal).collect();
    let voters = view.voters.clone().unwrap_or_default();
    let kind =
        if view.statefulset_replicas < view.desired_replicas || !desired.is_subset(&voters) && view.voters.is_some() {
            "ScaleUp"
        } else if view.statefulset_replicas > view.desired_replicas || voters.iter().any(|id| !desired.contains(id)) {
            "ScaleDown"
        } else if view.members.iter().any(|m| !m.up_to_date) {
            "RollingRestart"
        } else if !view.outdated_lines.is_empty() {
            "Reconfiguring"
        } else {
            return None;
        };
    let text = match step {
        Step::Wait(reason) => format!("waiting: {reason}"),
        Step::Restart { ordinal, reason } => format!("restarting {}: {reason}", view.pod(*ordinal)),
        Step::AddVoter { id } => format!("adding server.{id} to the ensemble's voters"),
        Step::RemoveVoter { id } => format!("removing server.{id} from the ensemble"),
        Step::UpdateMember { id } => format!("committing server.{id}'s line as it should be now"),
        Step::MoveClientPort { id } => {
            format!("moving server.{id}'s client port: committing its line, then restarting it")
        }
        Step::HandOff { id } => format!("handing leadership from server.{id} to a follower before it restarts"),
        Step::SetReplicas(n) => format!("resizing the StatefulSet to {n} members"),
        Step::DeleteVolume { ordinal } => format!("deleting the volume {} left behind", view.pod(*ordinal)),
        Step::Idle => return None,
    };
    Some((kind, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn state(serving: Option<Role>) -> MemberState {
        serving.map_or(MemberState::Running, MemberState::Serving)
    }

    fn member(ordinal: u32, up_to_date: bool, serving: Option<Role>) -> MemberView {
        MemberView {
            ordinal,
            state: state(serving),
            up_to_date,
            down_for: Duration::ZERO,
            down_since: None,
            cause: None,
        }
    }

    fn view(desired: u32, sts: u32, members: Vec<MemberView>, voters: &[u64]) -> ClusterView {
        ClusterView {
            statefulset: "zk".into(),
            desired_replicas: desired,
            statefulset_replicas: sts,
            members,
            voters: Some(voters.iter().copied().collect()),
            leftover_volumes: BTreeSet::new(),
            member_ready_timeout: Duration::from_secs(180),
            outdated_lines: BTreeSet::new(),
            client_moves: BTreeSet::new(),
            handed_off: BTreeSet::new(),
            leader_hand_off: true,
        }
    }

    #[test]
    fn a_moving_client_port_restarts_its_member_and_the_leader_hands_off_first() {
        use Role::*;
        let members = vec![
            member(0, true, Some(Follower)),
            member(1, true, Some(Leader)),
            member(2, true, Some(Follower)),
        ];
        let mut v = view(3, 3, members, &[1, 2, 3]);
        v.outdated_lines = [1, 2, 3].into();
        v.client_moves = [1, 2, 3].into();
        assert_eq!(plan(&v), Step::MoveClientPort { id: 1 });
        v.outdated_lines = [2, 3].into();
        assert_eq!(
            plan(&v),
            Step::HandOff { id: 2 },
            "the leader's hand-off line carries the new address"
        );
        v.leader_hand_off = false;
        assert_eq!(plan(&v), Step::MoveClientPort { id: 2 });
        v.client_moves.clear();
        assert_eq!(
            plan(&v),
            Step::UpdateMember { id: 2 },
            "a line whose client address stays is committed live"
        );
    }

    #[test]
    fn lines_are_updated_one_at_a_time_once_the_roll_is_done() {
        use Role::*;
        let members = vec![
            member(0, true, Some(Leader)),
            member(1, true, Some(Follower)),
            member(2, true, Some(Follower)),
        ];
        let mut v = view(3, 3, members, &[1, 2, 3]);
        v.outdated_lines = [2, 3].into();
        assert_eq!(plan(&v), Step::UpdateMember { id: 2 });
        v.members[2].up_to_date = false;
        assert!(matches!(plan(&v), Step::Restart { ordinal: 2, .. }), "the roll first");
        v.members[2].up_to_date = true;
        v.members[1].state = MemberState::Running;
        assert!(matches!(plan(&v), Step::Wait(_)), "not while a member is down");
    }

    #[test]
    fn rolling_restart_goes_followers_first_and_the_leader_last() {
        use Role::*;
        let mut members = vec![
            member(0, false, Some(Leader)),
            member(1, false, Some(Follower)),
            member(2, false, Some(Follower)),
        ];
        let mut handed_off = BTreeSet::new();
        let mut order = Vec::new();
        loop {
            let mut v = view(3, 3, members.clone(), &[1, 2, 3]);
            v.handed_off = handed_off.clone();
            match plan(&v) {
                Step::Restart { ordinal, .. } => {
                    order.push(format!("restart {ordinal}"));
                    members[ordinal as usize].up_to_date = true;
                }
                Step::HandOff { id } => {
                    order.push(format!("hand off from server.{id}"));
                    // ZooKeeper designates a synced follower; here the highest ordinal.
                    members[ordinal_for(id)].state = MemberState::Serving(Follower);
                    members[2].state = MemberState::Serving(Leader);
                    handed_off.insert(id);
                }
                Step::Idle => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(order, ["restart 2", "restart 1", "hand off from server.1", "restart 0"]);
    }

    fn ordinal_for(id: u64) -> usize {
        vocabulary::ordinal_for_myid(id).unwrap() as usize
    }

    #[test]
    fn a_leader_elected_back_after_its_hand_off_restarts_as_it_is() {
        use Role::*;
        let members = vec![
            member(0, false, Some(Leader)),
            member(1, true, Some(Follower)),
            member(2, true, Some(Follower)),
        ];
        let mut v = view(3, 3, members, &[1, 2, 3]);
        assert_eq!(plan(&v), Step::HandOff { id: 1 });
        v.handed_off.insert(1);
        assert!(matches!(plan(&v), Step::Restart { ordinal: 0, .. }));
    }

    #[test]
    fn without_leader_hand_off_the_leader_restarts_as_it_is() {
        use Role::*;
        let members = vec![
            member(0, false, Some(Leader)),
            member(1, true, Some(Follower)),
            member(2, true, Some(Follower)),
        ];
        let mut v = view(3, 3, members, &[1, 2, 3]);
        v.leader_hand_off = false;
        assert!(matches!(plan(&v), Step::Restart { ordinal: 0, .. }));
    }

    #[test]
    fn a_single_member_or_a_leader_without_voting_followers_restarts_as_it_is() {
        use Role::*;
        assert!(matches!(
            plan(&view(1, 1, vec![member(0, false, Some(Leader))], &[1])),
            Step::Restart { ordinal: 0, .. }
        ));
        // A leader whose only other member is an observer beyond the desired size: the
        // StatefulSet shrinks first (the observer votes in nothing); the leader is then alone,
        // the case above.
        let members = vec![member(0, false, Some(Leader)), member(1, true, Some(Observer))];
        assert_eq!(plan(&view(1, 2, members, &[1])), Step::SetReplicas(1));
    }

    #[test]
    fn waits_while_a_member_is_down() {
        use Role::*;
        let members = vec![
            member(0, false, Some(Leader)),
            member(1, true, None),
            member(2, false, Some(Follower)),
        ];
        assert!(matches!(plan(&view(3, 3, members, &[1, 2, 3])), Step::Wait(_)));
    }

    #[test]
    fn a_missing_pod_counts_as_down() {
        // The example: zk-2 has no pod (the StatefulSet controller has not recreated it).
        use Role::*;
        let members = vec![member(0, false, Some(Leader)), member(1, false, Some(Follower))];
        match plan(&view(3, 3, members, &[1, 2, 3])) {
            Step::Wait(reason) => assert!(reason.contains("zk-2 missing"), "{reason}"),
            other => panic!("restarting with zk-2 missing loses quorum: {other:?}"),
        }
    }

    #[test]
    fn a_member_broken_by_a_bad_template_is_restarted_first_once_the_spec_is_fixed() {
        use Role::*;
        let mut broken = member(2, false, None);
        broken.state = MemberState::Broken;
        broken.cause = Some("ImagePullBackOff".into());
        let members = vec![member(0, false, Some(Leader)), member(1, false, Some(Follower)), broken];
        match plan(&view(3, 3, members, &[1, 2, 3])) {
            Step::Restart { ordinal: 2, reason } => assert!(reason.contains("ImagePullBackOff"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_quorum_only_members_that_cannot_run_are_restarted() {
        let mut broken = member(1, false, None);
        broken.state = MemberState::Broken;
        let mut v = view(
            3,
            3,
            vec![member(0, false, None), broken, member(2, false, None)],
            &[1, 2, 3],
        );
        v.voters = None;
        assert!(matches!(plan(&v), Step::Restart { ordinal: 1, .. }));
        v.members[1].state = MemberState::Running;
        assert!(
            matches!(plan(&v), Step::Wait(_)),
            "a running member may be what the quorum waits for"
        );
    }

    #[test]
    fn a_roll_stops_after_the_timeout_and_says_why() {
        use Role::*;
        let mut stuck_member = member(2, true, None);
        stuck_member.state = MemberState::Broken;
        stuck_member.cause = Some("CrashLoopBackOff: back-off restarting failed container".into());
        stuck_member.down_for = Duration::from_secs(200);
        let v = view(
            3,
            3,
            vec![
                member(0, false, Some(Leader)),
                member(1, false, Some(Follower)),
                stuck_member,
            ],
            &[1, 2, 3],
        );
        match plan(&v) {
            Step::Wait(reason) => {
                assert!(
                    reason.contains("roll stopped") && reason.contains("zk-2") && reason.contains("CrashLoopBackOff"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stuck(&v).iter().map(|m| m.ordinal).collect::<Vec<_>>(), vec![2]);
    }

    /// The wait's text goes into status, and a status write starts the next pass: a text that
    /// changed with every second a member stayed down rewrote status on every pass.
    #[test]
    fn a_wait_says_the_same_while_only_time_passes() {
        use Role::*;
        let since = Timestamp::from_second(1_800_000_000).unwrap();
        for (up_to_date, timeout) in [(true, 180), (false, 180), (false, 30)] {
            let at = |seconds: u64| {
                let mut down = member(2, true, None);
                down.state = MemberState::Broken;
                down.cause = Some("ErrImagePull: zookeeper:3.9.99 not found".into());
                down.down_for = Duration::from_secs(seconds);
                down.down_since = Some(since);
                let mut v = view(
                    3,
                    3,
                    vec![
                        member(0, up_to_date, Some(Leader)),
                        member(1, up_to_date, Some(Follower)),
                        down,
                    ],
                    &[1, 2, 3],
                );
                v.member_ready_timeout = Duration::from_secs(timeout);
                plan(&v)
            };
            let first = at(40);
            let Step::Wait(text) = &first else { panic!("{first:?}") };
            assert!(
                text.contains("zk-2 not running since 2027-01-15T08:00:00Z: ErrImagePull"),
                "{text}"
            );
            assert_eq!(at(41), first);
            assert_eq!(at(45), first);
        }
    }

    #[test]
    fn a_dead_voter_can_be_scaled_away() {
        use Role::*;
        let mut dead = member(4, true, None);
        dead.state = MemberState::Broken;
        let members = vec![
            member(0, true, Some(Leader)),
            member(1, true, Some(Follower)),
            member(2, true, Some(Follower)),
            member(3, true, Some(Follower)),
            dead,
        ];
        assert_eq!(
            plan(&view(3, 5, members.clone(), &[1, 2, 3, 4, 5])),
            Step::RemoveVoter { id: 5 }
        );
        // Another member down: the removal waits rather than give up a spare voter.
        let mut others = members;
        others[1].state = MemberState::Running;
        assert!(matches!(plan(&view(3, 5, others, &[1, 2, 3, 4, 5])), Step::Wait(_)));
    }

    #[test]
    fn scales_three_to_five_and_back_one_member_at_a_time() {
        use Role::*;
        let mut members: Vec<MemberView> = (0..3)
            .map(|o| member(o, true, Some(if o == 0 { Leader } else { Follower })))
            .collect();
        let mut voters: BTreeSet<u64> = [1, 2, 3].into();
        let mut sts = 3;
        let mut steps = Vec::new();
        for desired in [5u32, 3] {
            for _ in 0..20 {
                let mut v = view(desired, sts, members.clone(), &[]);
                v.voters = Some(voters.clone());
                let step = plan(&v);
                match &step {
                    Step::SetReplicas(n) => {
                        if *n > sts {
                            members.push(member(sts, true, Some(Observer)));
                        } else {
                            members.pop();
                        }
                        sts = *n;
                    }
                    Step::AddVoter { id } => {
                        voters.insert(*id);
                        members[(*id - 1) as usize].state = MemberState::Serving(Follower);
                    }
                    Step::RemoveVoter { id } => {
                        voters.remove(id);
                        members[(*id - 1) as usize].state = MemberState::Serving(Observer);
                    }
                    Step::Idle => break,
                    other => panic!("unexpected {other:?}"),
                }
                steps.push(step);
            }
        }
        use Step::*;
        assert_eq!(
            steps,
            vec![
                SetReplicas(4),
                AddVoter { id: 4 },
                SetReplicas(5),
                AddVoter { id: 5 },
                RemoveVoter { id: 5 },
                SetReplicas(4),
                RemoveVoter { id: 4 },
                SetReplicas(3),
            ]
        );
    }

    #[test]
    fn a_member_added_again_starts_without_its_old_volume() {
        use Role::*;
        let members = (0..3)
            .map(|o| member(o, true, Some(if o == 0 { Leader } else { Follower })))
            .collect();
        let mut v = view(5, 3, members, &[1, 2, 3]);
        v.leftover_volumes = [3, 4].into();
        assert_eq!(plan(&v), Step::DeleteVolume { ordinal: 3 });
        v.leftover_volumes = [4].into();
        assert_eq!(plan(&v), Step::SetReplicas(4));
    }

    #[test]
    fn two_members_reporting_leader_means_wait() {
        use Role::*;
        let members = vec![
            member(0, false, Some(Leader)),
            member(1, false, Some(Leader)),
            member(2, true, Some(Follower)),
        ];
        assert!(matches!(plan(&view(3, 3, members, &[1, 2, 3])), Step::Wait(reason) if reason.contains("leader")));
    }

    #[test]
    fn a_request_without_quorum_waits_and_says_why() {
        let members = vec![
            member(0, true, Some(Role::Leader)),
            member(1, true, None),
            member(2, true, None),
        ];
        match plan(&view(5, 3, members, &[1, 2, 3])) {
            Step::Wait(reason) => assert!(reason.contains("quorum"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    fn arbitrary_view() -> impl Strategy<Value = ClusterView> {
        let state = prop_oneof![
            Just(None),
            Just(Some(MemberState::Running)),
            Just(Some(MemberState::Broken)),
            Just(Some(MemberState::Terminating)),
            Just(Some(MemberState::Serving(Role::Leader))),
            Just(Some(MemberState::Serving(Role::Follower))),
            Just(Some(MemberState::Serving(Role::Observer))),
        ];
        (
            prop::sample::select(vec![1u32, 3, 5, 7]),
            1u32..=8,
            prop::collection::vec((any::<bool>(), state, 0u64..400), 1..=8),
            prop::option::weighted(0.9, prop::collection::btree_set(1u64..=8, 1..=7)),
            prop::collection::btree_set(0u32..=8, 0..=3),
            prop::collection::btree_set(1u64..=8, 0..=2),
            (
                prop::collection::btree_set(1u64..=8, 0..=2),
                any::<bool>(),
                prop::collection::btree_set(1u64..=8, 0..=2),
            ),
        )
            .prop_map(
                |(
                    desired,
                    sts,
                    members,
                    voters,
                    leftover_volumes,
                    outdated_lines,
                    (handed_off, leader_hand_off, client_moves),
                )| {
                    ClusterView {
                        statefulset: "zk".into(),
                        desired_replicas: desired,
                        statefulset_replicas: sts,
                        members: members
                            .into_iter()
                            .enumerate()
                            .filter_map(|(i, (up_to_date, state, down))| {
                                Some(MemberView {
                                    ordinal: i as u32,
                                    up_to_date,
                                    down_for: Duration::from_secs(if matches!(state, Some(MemberState::Serving(_))) {
                                        0
                                    } else {
                                        down
                                    }),
                                    state: state?,
                                    down_since: None,
                                    cause: None,
                                })
                            })
                            .collect(),
                        voters,
                        leftover_volumes,
                        member_ready_timeout: Duration::from_secs(180),
                        client_moves: client_moves.intersection(&outdated_lines).copied().collect(),
                        outdated_lines,
                        handed_off,
                        leader_hand_off,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn never_two_members_down(view in arbitrary_view()) {
            if let Step::Restart { ordinal, .. } = plan(&view) {
                let members = view.members_by_ordinal();
                let target = members.iter().find(|m| m.ordinal == ordinal).unwrap();
                if target.serves() {
                    prop_assert!(members.iter().all(|m| m.serves()),
                        "restarted serving member {ordinal} while another member was down: {view:?}");
                } else {
                    prop_assert!(!target.up_to_date, "restarted {ordinal}, down on the current template: pointless: {view:?}");
                }
            }
        }

        #[test]
        fn never_reconfigure_without_quorum(view in arbitrary_view()) {
            let serving: BTreeSet<u64> = view.members.iter().filter(|m| m.serves()).map(MemberView::id).collect();
            let step = plan(&view);
            let after = match (&step, &view.voters) {
                (Step::AddVoter { id }, Some(voters)) => { let mut v = voters.clone(); v.insert(*id); Some((voters, v, *id)) }
                (Step::RemoveVoter { id }, Some(voters)) => { let mut v = voters.clone(); v.remove(id); Some((voters, v, *id)) }
                (Step::AddVoter { .. } | Step::RemoveVoter { .. }, None) => { prop_assert!(false, "reconfigured without reading the configuration: {view:?}"); None }
                _ => None,
            };
            if let Some((voters, after, id)) = after {
                prop_assert!(voters.intersection(&serving).count() >= quorum(voters.len()), "no quorum before changing server.{id}: {view:?}");
                prop_assert!(after.intersection(&serving).count() >= quorum(after.len()), "no quorum after changing server.{id}: {view:?}");
                prop_assert!(!after.is_empty());
                if matches!(step, Step::AddVoter { .. }) {
                    prop_assert!(serving.contains(&id), "server.{id} votes before it synced: {view:?}");
                }
            }
        }

        #[test]
        fn lines_change_only_with_a_serving_quorum_and_nobody_down(view in arbitrary_view()) {
            if let Step::UpdateMember { id } = plan(&view) {
                let voters = view.voters.clone().unwrap();
                prop_assert!(voters.contains(&id), "server.{id} is not a voter: {view:?}");
                prop_assert!(view.members_by_ordinal().iter().all(|m| m.serves() && m.up_to_date), "a member is down or outdated: {view:?}");
            }
        }

        #[test]
        fn a_client_port_moves_with_everyone_serving_and_the_leader_hands_off_first(view in arbitrary_view()) {
            if let Step::MoveClientPort { id } = plan(&view) {
                let members = view.members_by_ordinal();
                let voters = view.voters.clone().unwrap();
                prop_assert!(voters.contains(&id) && view.client_moves.contains(&id), "server.{id}: {view:?}");
                prop_assert!(members.iter().all(|m| m.serves() && m.up_to_date), "a member is down or outdated: {view:?}");
                let leads = members.iter().any(|m| m.id() == id && m.role() == Some(Role::Leader));
                let successor = members.iter().any(|m| m.id() != id && m.role() == Some(Role::Follower) && voters.contains(&m.id()));
                prop_assert!(!(leads && view.leader_hand_off && successor && !view.handed_off.contains(&id)),
                    "the leader restarted for its client port without handing off: {view:?}");
            }
        }

        #[test]
        fn the_leader_is_restarted_last(view in arbitrary_view()) {
            if let Step::Restart { ordinal, .. } = plan(&view) {
                let restarted = view.members.iter().find(|m| m.ordinal == ordinal).unwrap();
                if restarted.role() == Some(Role::Leader) {
                    prop_assert!(view.members.iter().filter(|m| m.ordinal != ordinal).all(|m| m.up_to_date),
                        "leader restarted before an outdated follower: {view:?}");
                    let voters = view.voters.clone().unwrap_or_default();
                    let successor = view.members.iter().any(|m| m.ordinal != ordinal && m.role() == Some(Role::Follower) && voters.contains(&m.id()));
                    prop_assert!(!view.leader_hand_off || !successor || !voters.contains(&restarted.id()) || view.handed_off.contains(&restarted.id()),
                        "leader restarted by the roll without handing leadership to a voting follower: {view:?}");
                }
            }
        }

        #[test]
        fn leadership_is_handed_off_only_by_the_leader_with_everyone_serving(view in arbitrary_view()) {
            if let Step::HandOff { id } = plan(&view) {
                let members = view.members_by_ordinal();
                let voters = view.voters.clone().unwrap();
                prop_assert!(members.iter().any(|m| m.id() == id && m.role() == Some(Role::Leader)), "server.{id} does not lead: {view:?}");
                prop_assert!(members.iter().all(|m| m.serves()), "a member is down: {view:?}");
                prop_assert!(voters.contains(&id), "server.{id} does not vote: {view:?}");
                prop_assert!(members.iter().any(|m| m.id() != id && m.role() == Some(Role::Follower) && voters.contains(&m.id())), "no follower to hand to: {view:?}");
                prop_assert!(!view.handed_off.contains(&id), "handed off twice: {view:?}");
                prop_assert!(members.iter().filter(|m| m.id() != id).all(|m| m.up_to_date), "before an outdated follower restarted: {view:?}");
            }
        }

        #[test]
        fn the_statefulset_shrinks_only_after_the_ensemble_let_the_member_go(view in arbitrary_view()) {
            if let Step::SetReplicas(n) = plan(&view) {
                if n < view.statefulset_replicas {
                    let leaving = myid_for_ordinal(n);
                    prop_assert!(!view.voters.as_ref().unwrap().contains(&leaving), "pod {n} removed while server.{leaving} still votes: {view:?}");
                }
                prop_assert!(n.abs_diff(view.statefulset_replicas) == 1, "one member at a time");
                if n > view.statefulset_replicas {
                    prop_assert!(!view.leftover_volumes.contains(&view.statefulset_replicas),
                        "member {} added again onto its old volume: {view:?}", view.statefulset_replicas);
                }
            }
        }
    }
}
