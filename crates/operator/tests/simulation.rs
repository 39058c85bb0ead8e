//! The day-2 planner against a model of a cluster, over many steps, with random faults.
//!
//! Each run starts from a settled ensemble, changes the spec and injects faults for a while (pods
//! vanish and come back late, crash, stay Pending; a template that never serves, then fixed;
//! faults the operator sees a step late; the operator dying before it acts), then lets the faults
//! stop. Safety is checked at every step; liveness once the faults have stopped.
//!
//! A step planned from a late view is checked too: where it would be unsafe on the truth, the
//! guards the executor has (the eviction's UID precondition and the budget, ZooKeeper committing a
//! reconfiguration only on quorums of the old and the new voters, its version compare-and-set,
//! the check of a joining member) must stop it. Late is what comes from Kubernetes' caches; the
//! ensemble's configuration is read from ZooKeeper in each reconcile. With one operator acting,
//! the compare-and-set never decides in these runs (none of 20 000 failed without it): it guards
//! against two operators at once, which the Lease prevents.

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use zkop_operator::planner::{self, ClusterView, MemberState, MemberView, Role, Step};

/// A member's pod, as the model keeps it.
#[derive(Debug, Clone, PartialEq)]
struct Pod {
    revision: u32,
    state: PodState,
    uid: u64,
    /// The step it was created, or last served.
    up_since: u64,
}

/// Each model step stands for this much time.
const STEP: Duration = Duration::from_secs(5);
const MEMBER_READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq)]
enum PodState {
    /// Not scheduled until this step.
    Pending { until: u64 },
    /// The JVM starts; from this step on it can serve (given a quorum).
    Starting { ready_at: u64 },
    /// The JVM runs; it serves when the ensemble has a quorum.
    Running,
    /// The JVM crashed; the kubelet starts it again at this step.
    Crashed { until: u64 },
    /// Its template can never serve (an image that does not exist, a config that makes ZooKeeper exit).
    Broken,
    /// Deleted; gone at this step.
    Terminating { gone_at: u64 },
}

#[derive(Debug, Clone)]
struct Model {
    step: u64,
    desired: u32,
    sts_replicas: u32,
    /// The StatefulSet's update revision, and the revisions that never serve.
    revision: u32,
    broken_revisions: BTreeSet<u32>,
    pods: BTreeMap<u32, Pod>,
    /// A pod deleted by a fault comes back no earlier than this step.
    recreate_after: BTreeMap<u32, u64>,
    /// A pod recreated for this ordinal stays Pending for this many steps.
    pending_on_recreate: BTreeMap<u32, u64>,
    /// Ordinals whose volume holds data (a member with an empty volume must sync before voting).
    synced: BTreeSet<u32>,
    volumes: BTreeSet<u32>,
    voters: BTreeSet<u64>,
    leader: Option<u64>,
    /// Voters whose committed line has the hand-off quorum port.
    handed_off: BTreeSet<u64>,
    /// Voters whose line must move its client address (TLS fully on or off): committed live, the
    /// member loses its plaintext port until it restarts (ZooKeeper cannot rebind it).
    client_moves: BTreeSet<u64>,
    next_uid: u64,
    /// The ensemble's configuration version: every committed reconfiguration moves it on.
    config_version: u64,
    /// The executor's reconfigurations are conditional on the version they were planned from, as
    /// ZooKeeper's `reconfig -v` makes them. Off only in the control that shows why.
    reconfig_compare_and_set: bool,
    /// Before adding a voter, the executor checks that its pod is still the one observed, is not
    /// being deleted, and serves now. Off only in the control that shows why.
    joiner_check: bool,
    seen: Seen,
}

/// What a run went through, to show that the simulation reaches the faults it claims to.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    quorum_lost: bool,
    broken_member_restarted: bool,
    eviction_refused: bool,
    stale_view_acted_on: bool,
    /// A step planned from a stale view would have been unsafe on the truth, and a guard (the
    /// eviction's UID precondition or budget, the reconfiguration's version) stopped it.
    stale_step_stopped: bool,
    roll_stopped: bool,
    dead_voter_removed: bool,
    leadership_handed_off: bool,
    client_port_moved: bool,
}

/// What the operator saw: the planner's view, and the pod UIDs its evictions are conditional on.
#[derive(Debug, Clone, PartialEq)]
struct Observation {
    view: ClusterView,
    uids: BTreeMap<u32, u64>,
    config_version: u64,
}

fn id(ordinal: u32) -> u64 {
    u64::from(ordinal) + 1
}

fn ordinal(id: u64) -> u32 {
    (id - 1) as u32
}

impl Model {
    fn settled(replicas: u32) -> Model {
        let pods = (0..replicas)
            .map(|o| {
                (
                    o,
                    Pod {
                        revision: 0,
                        state: PodState::Running,
                        uid: u64::from(o),
                        up_since: 0,
                    },
                )
            })
            .collect();
        let mut model = Model {
            step: 0,
            desired: replicas,
            sts_replicas: replicas,
            revision: 0,
            broken_revisions: BTreeSet::new(),
            pods,
            recreate_after: BTreeMap::new(),
            pending_on_recreate: BTreeMap::new(),
            synced: (0..replicas).collect(),
            volumes: (0..replicas).collect(),
            voters: (0..replicas).map(id).collect(),
            leader: None,
            handed_off: BTreeSet::new(),
            client_moves: BTreeSet::new(),
            next_uid: 100,
            config_version: 0,
            reconfig_compare_and_set: true,
            joiner_check: true,
            seen: Seen::default(),
        };
        model.elect();
        model
    }

    fn running(&self, ordinal: u32) -> bool {
        self.pods.get(&ordinal).is_some_and(|p| p.state == PodState::Running)
    }

    /// Voters whose JVM runs with data: they can form a quorum.
    fn quorum_up(&self) -> bool {
        let up = self
            .voters
            .iter()
            .filter(|v| self.running(ordinal(**v)) && self.synced.contains(&ordinal(**v)))
            .count();
        up >= planner::quorum(self.voters.len())
    }

    fn serving(&self, ordinal: u32) -> Option<Role> {
        if !self.running(ordinal) || !self.quorum_up() || self.leader.is_none() {
            return None;
        }
        let id = id(ordinal);
        Some(if self.leader == Some(id) {
            Role::Leader
        } else if self.voters.contains(&id) {
            Role::Follower
        } else {
            Role::Observer
        })
    }

    /// A leader is elected among running voters with data while a quorum of them runs.
    fn elect(&mut self) {
        let leader_ok = self
            .leader
            .is_some_and(|l| self.voters.contains(&l) && self.running(ordinal(l)));
        if !self.quorum_up() {
            self.seen.quorum_lost = true;
            self.leader = None;
        } else if !leader_ok {
            self.leader = self
                .voters
                .iter()
                .copied()
                .find(|v| self.running(ordinal(*v)) && self.synced.contains(&ordinal(*v)));
        }
        // A member that serves has synced from the leader.
        let serving: Vec<u32> = self
            .pods
            .keys()
            .copied()
            .filter(|o| self.serving(*o).is_some())
            .collect();
        for ordinal in &serving {
            self.pods.get_mut(ordinal).unwrap().up_since = self.step;
        }
        self.synced.extend(serving);
    }

    /// Time passes: pods start, crashed JVMs come back, the StatefulSet recreates missing pods.
    fn tick(&mut self) {
        self.step += 1;
        let now = self.step;
        let mut gone = Vec::new();
        for (ordinal, pod) in self.pods.iter_mut() {
            pod.state = match pod.state {
                PodState::Pending { until } if until <= now => PodState::Starting { ready_at: now + 1 },
                PodState::Starting { ready_at } if ready_at <= now => {
                    if self.broken_revisions.contains(&pod.revision) {
                        PodState::Broken
                    } else {
                        PodState::Running
                    }
                }
                PodState::Crashed { until } if until <= now => PodState::Starting { ready_at: now + 1 },
                PodState::Terminating { gone_at } if gone_at <= now => {
                    gone.push(*ordinal);
                    continue;
                }
                other => other,
            };
        }
        for ordinal in gone {
            self.pods.remove(&ordinal);
        }
        // The StatefulSet controller: pods beyond its size go, missing ones come back on the
        // update revision, with a new volume if theirs was deleted.
        for ordinal in self.pods.keys().copied().collect::<Vec<_>>() {
            if ordinal >= self.sts_replicas {
                let pod = self.pods.get_mut(&ordinal).unwrap();
                if !matches!(pod.state, PodState::Terminating { .. }) {
                    pod.state = PodState::Terminating { gone_at: now + 1 };
                }
            }
        }
        for ordinal in 0..self.sts_replicas {
            let late = self.recreate_after.get(&ordinal).is_some_and(|s| *s > now);
            if !self.pods.contains_key(&ordinal) && !late {
                self.recreate_after.remove(&ordinal);
                if self.volumes.insert(ordinal) {
                    self.synced.remove(&ordinal);
                }
                let state = match self.pending_on_recreate.remove(&ordinal) {
                    Some(steps) => PodState::Pending { until: now + steps },
                    None => PodState::Starting { ready_at: now + 1 },
                };
                self.next_uid += 1;
                self.pods.insert(
                    ordinal,
                    Pod {
                        revision: self.revision,
                        state,
                        uid: self.next_uid,
                        up_since: now,
                    },
                );
            }
        }
        self.elect();
    }

    /// What the operator sees: every pod that exists (missing ones are left for the planner to
    /// notice), its state, whether it runs the update revision, how long it has been down.
    fn observe(&self) -> Observation {
        let members = self
            .pods
            .iter()
            .map(|(ordinal, pod)| {
                let state = match (pod.state, self.serving(*ordinal)) {
                    (_, Some(role)) => MemberState::Serving(role),
                    (PodState::Terminating { .. }, _) => MemberState::Terminating,
                    (PodState::Starting { .. } | PodState::Running, _) => MemberState::Running,
                    (PodState::Pending { .. } | PodState::Crashed { .. } | PodState::Broken, _) => MemberState::Broken,
                };
                let down_for = if matches!(state, MemberState::Serving(_)) {
                    Duration::ZERO
                } else {
                    STEP * (self.step - pod.up_since) as u32
                };
                MemberView {
                    ordinal: *ordinal,
                    state,
                    up_to_date: pod.revision == self.revision,
                    down_for,
                    down_since: None,
                    cause: None,
                }
            })
            .collect();
        Observation {
            view: ClusterView {
                statefulset: "zk".into(),
                desired_replicas: self.desired,
                statefulset_replicas: self.sts_replicas,
                members,
                voters: self.quorum_up().then(|| self.voters.clone()),
                leftover_volumes: self
                    .volumes
                    .iter()
                    .copied()
                    .filter(|o| *o >= self.sts_replicas)
                    .collect(),
                member_ready_timeout: MEMBER_READY_TIMEOUT,
                outdated_lines: self
                    .handed_off
                    .union(&self.client_moves)
                    .filter(|v| self.voters.contains(v))
                    .copied()
                    .collect(),
                client_moves: self.client_moves.intersection(&self.voters).copied().collect(),
                handed_off: self.handed_off.intersection(&self.voters).copied().collect(),
                leader_hand_off: true,
            },
            uids: self.pods.iter().map(|(o, p)| (*o, p.uid)).collect(),
            config_version: self.config_version,
        }
    }

    /// A reconfiguration planned from `observation` to the voters `after` commits only as
    /// ZooKeeper commits one: acknowledged by a serving quorum of the old voters and of the new
    /// ones; and (with the compare-and-set) only if no other one committed since it was observed.
    fn reconfiguration_commits(&self, observation: &Observation, after: &BTreeSet<u64>) -> bool {
        self.quorum_up()
            && self.serving_voters(after) >= planner::quorum(after.len())
            && (!self.reconfig_compare_and_set || observation.config_version == self.config_version)
    }

    /// The executor's check of a joining member, against the truth.
    fn joiner_still_there(&self, id: u64, observation: &Observation) -> bool {
        let member = ordinal(id);
        !self.joiner_check
            || (self.pods.get(&member).is_some_and(|p| {
                Some(&p.uid) == observation.uids.get(&member) && !matches!(p.state, PodState::Terminating { .. })
            }) && self.serving(member).is_some())
    }

    /// The Eviction API: the pod must still be the one observed (UID precondition), and the
    /// PodDisruptionBudget (one member unavailable; unhealthy pods always evictable) must allow it.
    /// Whether the API server would accept an eviction of `ordinal`'s pod: the one observed, and
    /// the budget allows it (what a dry run of the eviction says).
    fn eviction_allowed(&self, ordinal: u32, observed_uid: Option<u64>) -> bool {
        let Some(pod) = self.pods.get(&ordinal) else {
            return false;
        };
        if Some(pod.uid) != observed_uid {
            return false;
        }
        let healthy = (0..self.sts_replicas).filter(|o| self.serving(*o).is_some()).count();
        self.serving(ordinal).is_none() || healthy >= self.sts_replicas as usize
    }

    fn evict(&mut self, ordinal: u32, observed_uid: Option<u64>) {
        let now = self.step;
        let Some(pod) = self.pods.get(&ordinal) else { return };
        if !self.eviction_allowed(ordinal, observed_uid) {
            self.seen.eviction_refused = true;
            return;
        }
        if self.serving(ordinal).is_none()
            && matches!(
                pod.state,
                PodState::Broken | PodState::Crashed { .. } | PodState::Pending { .. }
            )
        {
            self.seen.broken_member_restarted = true;
        }
        self.pods.get_mut(&ordinal).unwrap().state = PodState::Terminating { gone_at: now + 1 };
    }

    /// Members down in truth: no pod, a terminating pod, or a pod that does not serve.
    fn down(&self) -> BTreeSet<u32> {
        (0..self.sts_replicas.max(self.pods.keys().max().map_or(0, |m| m + 1)))
            .filter(|o| self.serving(*o).is_none())
            .filter(|o| *o < self.sts_replicas || self.pods.contains_key(o))
            .collect()
    }

    fn serving_voters(&self, voters: &BTreeSet<u64>) -> usize {
        voters.iter().filter(|v| self.serving(ordinal(**v)).is_some()).count()
    }

    /// Checks a step against the truth before it is carried out; returns the violated rule.
    fn unsafe_step(&self, step: &Step) -> Option<String> {
        match step {
            Step::Restart { ordinal, .. } => {
                // A pod beyond the StatefulSet's replicas that does not vote is on its way out
                // (an observer of an abandoned scale-up): the ensemble does not count on it.
                let others_down: Vec<u32> = self
                    .down()
                    .into_iter()
                    .filter(|o| o != ordinal && (*o < self.sts_replicas || self.voters.contains(&id(*o))))
                    .collect();
                if self.serving(*ordinal).is_some() && !others_down.is_empty() {
                    return Some(format!(
                        "restarted serving member {ordinal} while members {others_down:?} were down"
                    ));
                }
                None
            }
            Step::AddVoter { id } | Step::RemoveVoter { id } => {
                let mut after = self.voters.clone();
                if matches!(step, Step::AddVoter { .. }) {
                    if !self.synced.contains(&ordinal(*id)) || self.serving(ordinal(*id)).is_none() {
                        return Some(format!("server.{id} made a voter before it synced"));
                    }
                    after.insert(*id);
                } else {
                    after.remove(id);
                }
                if self.serving_voters(&self.voters) < planner::quorum(self.voters.len()) {
                    return Some(format!("reconfigured server.{id} without a serving quorum before"));
                }
                if after.is_empty() || self.serving_voters(&after) < planner::quorum(after.len()) {
                    return Some(format!(
                        "reconfigured server.{id} into a configuration without a serving quorum"
                    ));
                }
                None
            }
            Step::UpdateMember { id } if self.client_moves.contains(id) => Some(format!(
                "committed server.{id}'s client address live: ZooKeeper closes its client port until it restarts"
            )),
            Step::MoveClientPort { id } => self.unsafe_step(&Step::Restart {
                ordinal: ordinal(*id),
                reason: String::new(),
            }),
            Step::HandOff { id } => (self.serving_voters(&self.voters) < planner::quorum(self.voters.len()))
                .then(|| format!("handed leadership off server.{id} without a serving quorum")),
            Step::SetReplicas(n) if *n < self.sts_replicas => {
                let leaving = id(*n);
                self.voters
                    .contains(&leaving)
                    .then(|| format!("shrank the StatefulSet while server.{leaving} still votes"))
            }
            _ => None,
        }
    }

    fn execute(&mut self, step: &Step, observation: &Observation) {
        match step {
            Step::Restart { ordinal, .. } => self.evict(*ordinal, observation.uids.get(ordinal).copied()),
            Step::AddVoter { id } => {
                let mut after = self.voters.clone();
                after.insert(*id);
                if self.reconfiguration_commits(observation, &after) && self.joiner_still_there(*id, observation) {
                    self.voters.insert(*id);
                    self.handed_off.remove(id);
                    self.config_version += 1;
                }
            }
            Step::UpdateMember { id } => {
                if self.reconfiguration_commits(observation, &self.voters) {
                    self.handed_off.remove(id);
                    self.config_version += 1;
                }
            }
            // The executor asks for a dry run of the eviction first: a line committed without the
            // restart after it would leave the member without its client port.
            Step::MoveClientPort { id } => {
                let member = ordinal(*id);
                if !self.eviction_allowed(member, observation.uids.get(&member).copied()) {
                    self.seen.eviction_refused = true;
                } else if self.reconfiguration_commits(observation, &self.voters) {
                    self.handed_off.remove(id);
                    self.client_moves.remove(id);
                    self.seen.client_port_moved = true;
                    self.config_version += 1;
                    self.evict(member, observation.uids.get(&member).copied());
                }
            }
            // The executor commits the line, then restarts the member once every other member
            // serves (under the designated leader, if it led).
            Step::HandOff { id } => {
                if self.reconfiguration_commits(observation, &self.voters) && self.voters.contains(id) {
                    if !self.handed_off.insert(*id) {
                        self.handed_off.remove(id);
                    }
                    self.client_moves.remove(id);
                    self.config_version += 1;
                    if self.leader == Some(*id) {
                        let successor = self
                            .voters
                            .iter()
                            .copied()
                            .find(|v| v != id && self.serving(ordinal(*v)).is_some());
                        if successor.is_some() {
                            self.leader = successor;
                            self.seen.leadership_handed_off = true;
                        }
                    }
                    let member = ordinal(*id);
                    let others_serve = self
                        .pods
                        .keys()
                        .chain(&(0..self.sts_replicas).collect::<Vec<_>>())
                        .filter(|o| **o != member)
                        .all(|o| self.serving(*o).is_some());
                    if others_serve && self.leader != Some(*id) {
                        self.evict(member, observation.uids.get(&member).copied());
                    }
                }
            }
            Step::RemoveVoter { id } => {
                if self.serving(ordinal(*id)).is_none() {
                    self.seen.dead_voter_removed = true;
                }
                let mut after = self.voters.clone();
                after.remove(id);
                if !after.is_empty() && self.reconfiguration_commits(observation, &after) {
                    self.voters = after;
                    self.handed_off.remove(id);
                    self.client_moves.remove(id);
                    self.config_version += 1;
                }
            }
            Step::SetReplicas(n) => self.sts_replicas = *n,
            Step::DeleteVolume { ordinal } => {
                self.volumes.remove(ordinal);
                self.synced.remove(ordinal);
            }
            Step::Wait(_) | Step::Idle => {}
        }
        self.elect();
    }

    /// The spec is met: every desired member serves on the update revision and votes.
    fn settled_to_spec(&self) -> bool {
        self.sts_replicas == self.desired
            && self.pods.len() == self.desired as usize
            && self.voters == (0..self.desired).map(id).collect()
            && self.handed_off.is_disjoint(&self.voters)
            && self.client_moves.is_disjoint(&self.voters)
            && (0..self.desired)
                .all(|o| self.serving(o).is_some() && self.pods.get(&o).is_some_and(|p| p.revision == self.revision))
    }
}

#[derive(Debug, Clone)]
enum Event {
    /// The user changes the template (config, version); `broken`: it can never serve.
    ChangeTemplate {
        broken: bool,
    },
    /// The user changes spec.replicas.
    Scale(u32),
    /// A pod is deleted (drain, eviction, a person) and the StatefulSet recreates it late.
    PodVanishes {
        ordinal: u32,
        late: u64,
    },
    /// The JVM crashes and is down for a while.
    Crash {
        ordinal: u32,
        steps: u64,
    },
    /// The pod is recreated but stays Pending for a while.
    Unschedulable {
        ordinal: u32,
        steps: u64,
    },
    /// A fault that the operator sees a step late: it plans from the state before it.
    SeenLate(Box<Event>),
    /// TLS goes fully on or off: every voter's line must move its client address.
    MoveClientPorts,
    /// The operator dies before carrying out its step.
    OperatorRestart,
    Nothing,
}

fn fault() -> impl Strategy<Value = Event> {
    prop_oneof![
        2 => any::<bool>().prop_map(|broken| Event::ChangeTemplate { broken }),
        1 => prop::sample::select(vec![1u32, 3, 5, 7]).prop_map(Event::Scale),
        2 => (0u32..7, 1u64..8).prop_map(|(ordinal, late)| Event::PodVanishes { ordinal, late }),
        2 => (0u32..7, 1u64..6).prop_map(|(ordinal, steps)| Event::Crash { ordinal, steps }),
        1 => (0u32..7, 1u64..10).prop_map(|(ordinal, steps)| Event::Unschedulable { ordinal, steps }),
        2 => Just(Event::OperatorRestart),
        1 => Just(Event::MoveClientPorts),
        8 => Just(Event::Nothing),
    ]
}

/// A fault, seen at once or (in one of six steps) a step late.
fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        5 => fault(),
        1 => fault().prop_map(|f| Event::SeenLate(Box::new(f))),
    ]
}

/// Steps that may pass after the faults stop before the ensemble must match the spec again.
const LIVENESS_BOUND: u64 = 150;

fn run(replicas: u32, events: &[Event]) -> Result<Seen, String> {
    run_with(Model::settled(replicas), events)
}

fn run_with(model: Model, events: &[Event]) -> Result<Seen, String> {
    let mut model = model;
    let mut previous = model.observe();
    let mut trace: Vec<String> = Vec::new();
    let check = |model: &mut Model, observation: &Observation, act: bool, trace: &mut Vec<String>| {
        let step = planner::plan(&observation.view);
        if observation != &model.observe() && act && step != Step::Idle && !matches!(step, Step::Wait(_)) {
            model.seen.stale_view_acted_on = true;
        }
        if matches!(&step, Step::Wait(reason) if reason.contains("roll stopped")) {
            model.seen.roll_stopped = true;
        }
        trace.push(format!(
            "step {}: pods {:?} voters {:?} -> {step:?}",
            model.step,
            model
                .pods
                .iter()
                .map(|(o, p)| (*o, p.revision, p.state, model.serving(*o)))
                .collect::<Vec<_>>(),
            model.voters
        ));
        if let Some(violation) = model.unsafe_step(&step) {
            if observation == &model.observe() {
                return Err(violation);
            }
            // Planned from a view a step old: unsafe on the truth, so only the guards stand
            // between it and the ensemble. Carried out, it must change nothing.
            if act {
                let mut tried = model.clone();
                tried.execute(&step, observation);
                let changed = tried.pods != model.pods
                    || tried.voters != model.voters
                    || tried.handed_off != model.handed_off
                    || tried.client_moves != model.client_moves
                    || tried.sts_replicas != model.sts_replicas
                    || tried.volumes != model.volumes;
                if changed {
                    return Err(format!(
                        "{violation} (planned from a stale view, and no guard stopped it)"
                    ));
                }
                model.seen.stale_step_stopped = true;
            }
        }
        if act {
            model.execute(&step, observation);
        }
        Ok(step)
    };
    for event in events {
        let mut act = true;
        let (event, stale) = match event {
            Event::SeenLate(fault) => (fault.as_ref(), true),
            fault => (fault, false),
        };
        match event {
            Event::ChangeTemplate { broken } => {
                model.revision += 1;
                if *broken {
                    model.broken_revisions.insert(model.revision);
                }
            }
            Event::Scale(n) => model.desired = *n,
            Event::MoveClientPorts => model.client_moves = model.voters.clone(),
            Event::PodVanishes { ordinal, late } => {
                if let Some(pod) = model.pods.get_mut(ordinal) {
                    pod.state = PodState::Terminating {
                        gone_at: model.step + 1,
                    };
                    model.recreate_after.insert(*ordinal, model.step + 1 + late);
                }
            }
            Event::Crash { ordinal, steps } => {
                if let Some(pod) = model.pods.get_mut(ordinal) {
                    if pod.state == PodState::Running {
                        pod.state = PodState::Crashed {
                            until: model.step + steps,
                        };
                    }
                }
            }
            Event::Unschedulable { ordinal, steps } => {
                if let Some(pod) = model.pods.get_mut(ordinal) {
                    pod.state = PodState::Terminating {
                        gone_at: model.step + 1,
                    };
                    model.pending_on_recreate.insert(*ordinal, *steps);
                }
            }
            Event::OperatorRestart => act = false,
            Event::SeenLate(_) => unreachable!("a fault is seen late once, not twice"),
            Event::Nothing => {}
        }
        model.elect();
        // Late is what the operator reads from Kubernetes' caches: pods, the StatefulSet, the
        // spec. The ensemble's configuration it reads from ZooKeeper in every reconcile.
        let observation = if stale {
            let now = model.observe();
            let mut late = previous.clone();
            late.view.voters = now.view.voters;
            late.view.outdated_lines = now.view.outdated_lines;
            late.view.client_moves = now.view.client_moves;
            late.view.handed_off = now.view.handed_off;
            late.config_version = now.config_version;
            late
        } else {
            model.observe()
        };
        previous = model.observe();
        check(&mut model, &observation, act, &mut trace).map_err(|v| explain(&v, &trace))?;
        model.tick();
    }
    // Faults stop. A template that cannot serve is fixed by the user, as the issue describes.
    if model.broken_revisions.contains(&model.revision) {
        model.revision += 1;
        trace.push(format!("step {}: the user fixes the template", model.step));
    }
    for _ in 0..LIVENESS_BOUND {
        let observation = model.observe();
        let step = check(&mut model, &observation, true, &mut trace).map_err(|v| explain(&v, &trace))?;
        if step == Step::Idle && model.settled_to_spec() {
            return Ok(model.seen);
        }
        model.tick();
    }
    Err(explain(
        &format!("not settled {LIVENESS_BOUND} steps after the faults stopped"),
        &trace,
    ))
}

fn explain(violation: &str, trace: &[String]) -> String {
    let tail: Vec<&String> = trace
        .iter()
        .rev()
        .take(12)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!(
        "{violation}\nlast steps:\n{}",
        tail.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("SIMULATION_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(3_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn safe_at_every_step_and_settles_once_faults_stop(
        replicas in prop::sample::select(vec![1u32, 3, 5]),
        events in prop::collection::vec(event(), 1..60),
    ) {
        if let Err(failure) = run(replicas, &events) {
            prop_assert!(false, "{failure}");
        }
    }
}

/// The random runs reach every kind of fault the simulation claims to inject.
#[test]
fn random_runs_reach_every_fault() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        cases: 2_000,
        failure_persistence: None,
        ..Config::default()
    });
    let mut counts = [0u32; 9];
    let strategy = (
        prop::sample::select(vec![1u32, 3, 5]),
        prop::collection::vec(event(), 1..60),
    );
    for _ in 0..2_000 {
        let (replicas, events) = strategy.new_tree(&mut runner).unwrap().current();
        let seen = run(replicas, &events).unwrap();
        for (count, hit) in counts.iter_mut().zip([
            seen.quorum_lost,
            seen.broken_member_restarted,
            seen.eviction_refused,
            seen.stale_view_acted_on,
            seen.stale_step_stopped,
            seen.roll_stopped,
            seen.dead_voter_removed,
            seen.leadership_handed_off,
            seen.client_port_moved,
        ]) {
            *count += u32::from(hit);
        }
    }
    eprintln!("runs of 2000 with: quorum lost, broken member restarted, eviction refused, stale view acted on, unsafe stale step stopped by a guard, roll stopped, dead voter removed, leadership handed off, client port moved by a restart: {counts:?}");
    assert!(counts.iter().all(|c| *c > 0), "{counts:?}");
}

/// The first of `cases` random runs that is unsafe or does not settle, with `configure` applied
/// to the model (a guard switched off).
fn first_failure(cases: u32, configure: fn(&mut Model)) -> Option<String> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRunner};
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::sample::select(vec![1u32, 3, 5]),
        prop::collection::vec(event(), 1..60),
    );
    (0..cases).find_map(|_| {
        let (replicas, events) = strategy.new_tree(&mut runner).unwrap().current();
        let mut model = Model::settled(replicas);
        configure(&mut model);
        run_with(model, &events).err()
    })
}

/// Control for the executor's check of a joining member: without it, a view a step late (the
/// pod deleted, the StatefulSet shrunk since) makes a voter of a member that is going away.
#[test]
fn without_the_joiner_check_a_late_view_adds_a_voter_that_is_going_away() {
    // About one random run in 700 meets it (29 of 20,000 here): the search stops at the first.
    let failure = first_failure(20_000, |m| m.joiner_check = false).expect("a run that fails without the check");
    assert!(
        failure.contains("made a voter before it synced") && failure.contains("stale view"),
        "{failure}"
    );
}

/// The two failures the issue reported, as fixed scenarios.
#[test]
fn a_reverted_bad_rollout_recovers() {
    let events = [
        Event::ChangeTemplate { broken: true },
        Event::Nothing,
        Event::Nothing,
        Event::Nothing,
        Event::Nothing,
        Event::Nothing,
    ];
    run(3, &events).unwrap();
}

#[test]
fn a_missing_pod_counts_as_down() {
    let events = [
        Event::PodVanishes { ordinal: 2, late: 10 },
        Event::Nothing,
        Event::ChangeTemplate { broken: false },
    ];
    run(3, &events).unwrap();
}
