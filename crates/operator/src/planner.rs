//! Day-2 planning: from what is observed, the one next safe step. Pure; the controller executes.
//!
//! Invariants, checked by the property tests below:
//! - never take a member down (restart it) unless every member serves: at most one member down;
//! - never reconfigure without a serving quorum of the current voters, nor into a configuration
//!   whose voters could not form a quorum from the members serving now;
//! - followers are restarted before the leader; the leader goes last;
//! - the StatefulSet shrinks only after the ensemble no longer counts the member it removes,
//!   and grows by one member at a time, which joins as a voter only once it has synced.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower,
    Observer,
}

/// One member (pod) as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub ordinal: u32,
    /// The pod runs the StatefulSet's current template (configuration, version).
    pub up_to_date: bool,
    /// Serving in a quorum (`srvr`), and in which role; `None` when down, starting or syncing.
    pub serving: Option<Role>,
    /// The pod is being deleted.
    pub terminating: bool,
}

impl MemberView {
    pub fn id(&self) -> u64 {
        zk_agent::identity::myid_for_ordinal(self.ordinal)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub desired_replicas: u32,
    /// `spec.replicas` of the StatefulSet.
    pub statefulset_replicas: u32,
    pub members: Vec<MemberView>,
    /// Voting members (server ids) of the ensemble's committed configuration, as ZooKeeper reports
    /// it; `None` when it could not be read (no quorum to ask).
    pub voters: Option<BTreeSet<u64>>,
    /// Ordinals beyond the StatefulSet's size whose volume was retained after a scale-down.
    pub leftover_volumes: BTreeSet<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing may be done now; the reason goes to status.
    Wait(String),
    /// Delete this member's pod so that it comes back with the current template.
    Restart { ordinal: u32, reason: String },
    /// Add this server id to the ensemble's voters (dynamic reconfiguration).
    AddVoter { id: u64 },
    /// Remove this server id from the ensemble (dynamic reconfiguration).
    RemoveVoter { id: u64 },
    /// Resize the StatefulSet.
    SetReplicas(u32),
    /// Delete the volume a removed member left behind, so that it is added again empty.
    DeleteVolume { ordinal: u32 },
    /// The ensemble matches the spec.
    Idle,
}

pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

pub fn plan(view: &ClusterView) -> Step {
    let serving_ids: BTreeSet<u64> = view
        .members
        .iter()
        .filter(|m| m.serving.is_some() && !m.terminating)
        .map(|m| m.id())
        .collect();
    let Some(voters) = &view.voters else {
        return Step::Wait("the ensemble's configuration cannot be read: no quorum serves".into());
    };
    let serving_voters = voters.intersection(&serving_ids).count();
    if serving_voters < quorum(voters.len()) {
        return Step::Wait(format!(
            "only {serving_voters} of {} voters serve; a quorum needs {}",
            voters.len(),
            quorum(voters.len())
        ));
    }
    // A deposed leader can still answer "leader" for a moment; act only on an agreed view.
    let leaders: Vec<u32> = view
        .members
        .iter()
        .filter(|m| m.serving == Some(Role::Leader))
        .map(|m| m.ordinal)
        .collect();
    if leaders.len() > 1 {
        return Step::Wait(format!(
            "members {leaders:?} all report being the leader; waiting until the ensemble agrees"
        ));
    }
    let down: Vec<u32> = view
        .members
        .iter()
        .filter(|m| m.serving.is_none() || m.terminating)
        .map(|m| m.ordinal)
        .collect();
    let pods: BTreeSet<u64> = view.members.iter().map(MemberView::id).collect();
    let desired: BTreeSet<u64> = (0..view.desired_replicas)
        .map(zk_agent::identity::myid_for_ordinal)
        .collect();

    // Scale down, one member at a time: the highest member beyond the desired size leaves the
    // ensemble by reconfiguration, then its pod goes away, then the next.
    if view.statefulset_replicas > view.desired_replicas {
        let top = zk_agent::identity::myid_for_ordinal(view.statefulset_replicas - 1);
        if !voters.contains(&top) {
            return Step::SetReplicas(view.statefulset_replicas - 1);
        }
    }
    if let Some(&leaving) = voters.iter().rev().find(|id| !desired.contains(id)) {
        let remaining: BTreeSet<u64> = voters.iter().copied().filter(|id| *id != leaving).collect();
        let serving_after = remaining.intersection(&serving_ids).count();
        if !down.is_empty() {
            return Step::Wait(format!(
                "waiting for members {down:?} to serve before removing server.{leaving}"
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
    if let Some(ordinal) = view
        .members
        .iter()
        .map(|m| m.ordinal)
        .max()
        .filter(|o| *o >= view.desired_replicas)
    {
        return Step::Wait(format!("waiting for the pod of ordinal {ordinal} to go away"));
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
            "waiting for server.{joining} to sync from the leader before it votes"
        ));
    }
    if view.statefulset_replicas < view.desired_replicas {
        if !down.is_empty() {
            return Step::Wait(format!("waiting for members {down:?} to serve before adding a member"));
        }
        // A member added again never starts from the data it had when it was removed.
        if view.leftover_volumes.contains(&view.statefulset_replicas) {
            return Step::DeleteVolume {
                ordinal: view.statefulset_replicas,
            };
        }
        return Step::SetReplicas(view.statefulset_replicas + 1);
    }

    // Rolling restart: one member at a time, followers first, the leader last.
    let outdated: Vec<&MemberView> = view.members.iter().filter(|m| !m.up_to_date).collect();
    if outdated.is_empty() {
        return if down.is_empty() {
            Step::Idle
        } else {
            Step::Wait(format!("waiting for members {down:?} to serve"))
        };
    }
    if !down.is_empty() {
        return Step::Wait(format!(
            "waiting for members {down:?} to serve before restarting the next"
        ));
    }
    let next = outdated
        .iter()
        .filter(|m| m.serving != Some(Role::Leader))
        .max_by_key(|m| m.ordinal)
        .or_else(|| outdated.first())
        .expect("outdated is not empty");
    let reason = if next.serving == Some(Role::Leader) {
        "leader, last"
    } else {
        "follower"
    };
    Step::Restart {
        ordinal: next.ordinal,
        reason: format!("rolling out the current template ({reason})"),
    }
}

/// The operation a step belongs to (RollingRestart, ScaleUp, ScaleDown) and what it does, for
/// status; `None` when the ensemble matches the spec (or only waits for a member to recover).
pub fn describe(view: &ClusterView, step: &Step) -> Option<(&'static str, String)> {
    let desired: BTreeSet<u64> = (0..view.desired_replicas)
        .map(zk_agent::identity::myid_for_ordinal)
        .collect();
    let voters = view.voters.clone().unwrap_or_default();
    let kind =
        if view.statefulset_replicas < view.desired_replicas || !desired.is_subset(&voters) && view.voters.is_some() {
            "ScaleUp"
        } else if view.statefulset_replicas > view.desired_replicas || voters.iter().any(|id| !desired.contains(id)) {
            "ScaleDown"
        } else if view.members.iter().any(|m| !m.up_to_date) {
            "RollingRestart"
        } else {
            return None;
        };
    let text = match step {
        Step::Wait(reason) => format!("waiting: {reason}"),
        Step::Restart { ordinal, reason } => format!("restarting member {ordinal}: {reason}"),
        Step::AddVoter { id } => format!("adding server.{id} to the ensemble's voters"),
        Step::RemoveVoter { id } => format!("removing server.{id} from the ensemble"),
        Step::SetReplicas(n) => format!("resizing the StatefulSet to {n} members"),
        Step::DeleteVolume { ordinal } => format!("deleting the volume member {ordinal} left behind"),
        Step::Idle => return None,
    };
    Some((kind, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(ordinal: u32, up_to_date: bool, serving: Option<Role>) -> MemberView {
        MemberView {
            ordinal,
            up_to_date,
            serving,
            terminating: false,
        }
    }

    fn view(desired: u32, sts: u32, members: Vec<MemberView>, voters: &[u64]) -> ClusterView {
        ClusterView {
            desired_replicas: desired,
            statefulset_replicas: sts,
            members,
            voters: Some(voters.iter().copied().collect()),
            leftover_volumes: BTreeSet::new(),
        }
    }

    #[test]
    fn rolling_restart_goes_followers_first_and_the_leader_last() {
        use Role::*;
        let mut members = vec![
            member(0, false, Some(Leader)),
            member(1, false, Some(Follower)),
            member(2, false, Some(Follower)),
        ];
        let mut order = Vec::new();
        loop {
            match plan(&view(3, 3, members.clone(), &[1, 2, 3])) {
                Step::Restart { ordinal, .. } => {
                    order.push(ordinal);
                    members[ordinal as usize].up_to_date = true;
                }
                Step::Idle => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(order, vec![2, 1, 0]);
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
                let step = plan(&ClusterView {
                    desired_replicas: desired,
                    statefulset_replicas: sts,
                    members: members.clone(),
                    voters: Some(voters.clone()),
                    leftover_volumes: BTreeSet::new(),
                });
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
                        members[(*id - 1) as usize].serving = Some(Follower);
                    }
                    Step::RemoveVoter { id } => {
                        voters.remove(id);
                        members[(*id - 1) as usize].serving = Some(Observer);
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
        let role = prop_oneof![
            Just(None),
            Just(Some(Role::Leader)),
            Just(Some(Role::Follower)),
            Just(Some(Role::Observer))
        ];
        (
            prop::sample::select(vec![1u32, 3, 5, 7]),
            1u32..=8,
            prop::collection::vec((any::<bool>(), role, prop::bool::weighted(0.1)), 1..=8),
            prop::collection::btree_set(1u64..=8, 1..=7),
            prop::collection::btree_set(0u32..=8, 0..=3),
        )
            .prop_map(|(desired, sts, members, voters, leftover_volumes)| ClusterView {
                desired_replicas: desired,
                statefulset_replicas: sts,
                members: members
                    .into_iter()
                    .enumerate()
                    .map(|(i, (up_to_date, serving, terminating))| MemberView {
                        ordinal: i as u32,
                        up_to_date,
                        serving,
                        terminating,
                    })
                    .collect(),
                voters: Some(voters),
                leftover_volumes,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        #[test]
        fn never_two_members_down(view in arbitrary_view()) {
            if let Step::Restart { ordinal, .. } = plan(&view) {
                prop_assert!(view.members.iter().all(|m| m.serving.is_some() && !m.terminating),
                    "restarted {ordinal} while another member was down: {view:?}");
            }
        }

        #[test]
        fn never_reconfigure_without_quorum(view in arbitrary_view()) {
            let voters = view.voters.clone().unwrap();
            let serving: BTreeSet<u64> = view.members.iter().filter(|m| m.serving.is_some() && !m.terminating).map(MemberView::id).collect();
            let after = match plan(&view) {
                Step::AddVoter { id } => { let mut v = voters.clone(); v.insert(id); Some((v, id)) }
                Step::RemoveVoter { id } => { let mut v = voters.clone(); v.remove(&id); Some((v, id)) }
                _ => None,
            };
            if let Some((after, id)) = after {
                prop_assert!(voters.intersection(&serving).count() >= quorum(voters.len()), "no quorum before changing server.{id}: {view:?}");
                prop_assert!(after.intersection(&serving).count() >= quorum(after.len()), "no quorum after changing server.{id}: {view:?}");
                prop_assert!(!after.is_empty());
            }
        }

        #[test]
        fn the_leader_is_restarted_last(view in arbitrary_view()) {
            if let Step::Restart { ordinal, .. } = plan(&view) {
                let restarted = view.members.iter().find(|m| m.ordinal == ordinal).unwrap();
                if restarted.serving == Some(Role::Leader) {
                    prop_assert!(view.members.iter().filter(|m| m.ordinal != ordinal).all(|m| m.up_to_date),
                        "leader restarted before an outdated follower: {view:?}");
                }
            }
        }

        #[test]
        fn the_statefulset_shrinks_only_after_the_ensemble_let_the_member_go(view in arbitrary_view()) {
            if let Step::SetReplicas(n) = plan(&view) {
                if n < view.statefulset_replicas {
                    let leaving = zk_agent::identity::myid_for_ordinal(n);
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
