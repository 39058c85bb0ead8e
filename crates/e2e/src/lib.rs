//! End-to-end tests live in tests/; they need a cluster (make e2e). This library says how
//! `e2e-run` (src/bin/e2e-run.rs, what `make e2e` runs) may schedule them side by side on the one
//! shared cluster, each in its own namespaces.

/// What a test does to the cluster beyond its own namespaces, or cannot bear from other tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    /// Stays in its own namespaces, and its waits bear an operator that stops for a minute.
    Shares,
    /// Asserts on the operator's timing (alerts, the stuck timeout, short certificate lifetimes,
    /// minute-long windows): never alongside a test that stops the operator.
    NeedsOperator,
    /// Stops or cuts off the operator: alongside `Shares` tests only, and one at a time.
    StopsOperator,
    /// Drains, cordons or stops nodes, which reaches every test's pods: runs with nothing else,
    /// after all the others.
    Alone,
}

/// One e2e test: its test binary (the file in tests/), its name, how it shares the cluster,
/// how long it takes here (the longest start first), and whether `make test` runs it.
#[derive(Clone, Copy, Debug)]
pub struct Planned {
    pub suite: &'static str,
    pub test: &'static str,
    pub sharing: Sharing,
    pub seconds: u32,
    /// The most ZooKeeper members it runs at once (`MEMBER_BUDGET`).
    pub members: u32,
    /// Run by `make test`. The others run in `make e2e-full` only: each repeats what a test of
    /// the gate shows already (`covered_by` names it).
    pub covered_by: Option<&'static str>,
    /// What must be installed on the cluster before it starts, beyond the operator.
    pub needs: Option<Need>,
}

/// A part of the test cluster that `make test` installs beside the first e2e tests. The tests
/// that need it start once it is there, the others do not wait for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Prometheus in namespace monitoring (cluster/prometheus.sh).
    Prometheus,
}

/// Whether a need is met, as the run that installs it says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Not yet: the test waits.
    Pending,
    /// Its installation failed: the test fails at once, with this reason.
    Failed(String),
}

impl Need {
    /// The variable naming the file in which `make test` says whether the need is met: `ready`,
    /// or why not. Unset (e2e-run by hand, after `make prometheus`): met.
    pub fn variable(self) -> &'static str {
        match self {
            Need::Prometheus => "E2E_PROMETHEUS_READY",
        }
    }

    /// Reads the need's file: `content` is None while the file does not exist yet.
    pub fn readiness(self, variable_set: bool, content: Option<&str>) -> Readiness {
        match (variable_set, content.map(str::trim)) {
            (false, _) | (true, Some("ready")) => Readiness::Ready,
            (true, None) => Readiness::Pending,
            (true, Some(why)) => Readiness::Failed(format!("{self:?} was not installed: {why}")),
        }
    }
}

const fn plan(suite: &'static str, test: &'static str, sharing: Sharing, seconds: u32) -> Planned {
    Planned {
        suite,
        test,
        sharing,
        seconds,
        members: 3,
        covered_by: None,
        needs: None,
    }
}

/// A test of `make e2e-full` only: `covered_by` (suite::test) shows its claim in the gate.
const fn full_only(
    suite: &'static str,
    test: &'static str,
    sharing: Sharing,
    seconds: u32,
    covered_by: &'static str,
) -> Planned {
    Planned {
        suite,
        test,
        sharing,
        seconds,
        members: 3,
        covered_by: Some(covered_by),
        needs: None,
    }
}

impl Planned {
    /// A test that runs more (or fewer) than three members at its peak.
    pub const fn with_members(mut self, members: u32) -> Planned {
        self.members = members;
        self
    }

    /// A test that starts only once `need` is installed.
    pub const fn needing(mut self, need: Need) -> Planned {
        self.needs = Some(need);
        self
    }

    pub fn in_gate(&self) -> bool {
        self.covered_by.is_none()
    }
}

use Sharing::{Alone, NeedsOperator, Shares, StopsOperator};

/// Every e2e test. `e2e-run` refuses to start while a test is missing here.
pub const SCHEDULE: &[Planned] = &[
    // zk (3) and the one-member cluster restored from a volume beside it.
    plan(
        "backup",
        "backups_restore_into_a_new_cluster_and_failures_say_why",
        Shares,
        225,
    )
    .with_members(4),
    plan("day2", "deleting_the_leaders_pod_hands_leadership_off", Shares, 125),
    plan("day2", "lost_disk_member_resyncs_and_rejoins", Shares, 50),
    // The operator killed right after AddVoter of a scale-up is one of the steps there.
    full_only(
        "day2",
        "operator_restart_during_scale_up_resumes",
        StopsOperator,
        80,
        "faults::the_operator_killed_at_each_step_resumes",
    )
    .with_members(5),
    plan("day2", "quorum_loss_recovers_by_itself", Shares, 60),
    plan(
        "day2",
        "rolling_restart_on_request_restarts_the_leader_last",
        Shares,
        130,
    ),
    plan("day2", "scaling_along_one_three_five_and_back_to_one", Shares, 120).with_members(5),
    // 7 members run beside nothing else (MEMBER_BUDGET): the same path through 5 is in the gate.
    full_only(
        "day2",
        "scaling_along_one_three_seven_and_back_to_one",
        Shares,
        180,
        "day2::scaling_along_one_three_five_and_back_to_one",
    )
    .with_members(7),
    // 3-5-3 under a workload, the removed members' volumes deleted: the scale there.
    full_only(
        "day2",
        "scaling_three_to_five_and_back_keeps_every_write",
        Shares,
        70,
        "faults::the_operator_killed_at_each_step_resumes",
    )
    .with_members(5),
    plan("day2", "version_upgrade_from_3_8_to_3_9", Shares, 90),
    // The same roll from 3.9.4 (an image only make e2e-full builds).
    full_only(
        "day2",
        "patch_upgrade_from_the_previous_release",
        Shares,
        110,
        "day2::version_upgrade_from_3_8_to_3_9",
    ),
    plan("faults", "a_member_cut_off_from_its_peers_rejoins", NeedsOperator, 95),
    plan("faults", "a_stopped_node_comes_back_and_its_member_rejoins", Alone, 95),
    plan(
        "faults",
        "bad_rollouts_stop_after_one_member_and_heal_when_reverted",
        NeedsOperator,
        200,
    ),
    plan(
        "faults",
        "drains_respect_the_budget_and_a_member_waits_for_its_node",
        Alone,
        140,
    ),
    plan("faults", "the_ensemble_is_never_new_twice", NeedsOperator, 100),
    plan("faults", "the_operator_killed_at_each_step_resumes", StopsOperator, 215).with_members(5),
    plan("observability", "metric_names_are_read_from_expressions", Shares, 1).with_members(0),
    plan(
        "observability",
        "prometheus_scrapes_alerts_fire_and_the_dashboard_has_data",
        NeedsOperator,
        130,
    )
    .needing(Need::Prometheus),
    plan(
        "operator",
        "a_name_clash_is_reported_and_nothing_is_taken_over",
        NeedsOperator,
        10,
    ),
    plan(
        "operator",
        "an_illegible_resource_does_not_stall_the_others",
        NeedsOperator,
        30,
    ),
    plan("operator", "configuration_change_reaches_every_member", Shares, 70),
    plan("operator", "deletion_follows_the_volume_retention_policy", Shares, 25),
    plan(
        "operator",
        "invalid_resources_are_rejected_and_the_ensemble_is_untouched",
        Shares,
        25,
    ),
    plan(
        "operator",
        "operator_restart_during_creation_converges",
        StopsOperator,
        45,
    ),
    plan(
        "operator",
        "seed_test_member_survives_pod_deletion_with_its_volume",
        Shares,
        55,
    ),
    plan("security", "only_authenticated_clients_get_a_session", Shares, 85),
    plan("security", "only_what_the_spec_allows_is_reachable", Shares, 50),
    plan(
        "tenants",
        "backups_use_only_allowed_claims_and_never_a_forged_job",
        Shares,
        70,
    )
    .with_members(1),
    plan("tenants", "the_operators_account_is_fenced", Shares, 10).with_members(0),
    plan("tls", "a_plaintext_ensemble_moves_to_tls_in_place", Shares, 110),
    plan(
        "tls",
        "certificates_and_the_authority_rotate_without_restarts",
        NeedsOperator,
        260,
    ),
];

/// The plan for a test, by its binary and name.
pub fn planned(suite: &str, test: &str) -> Option<&'static Planned> {
    SCHEDULE.iter().find(|p| p.suite == suite && p.test == test)
}

/// ZooKeeper members that may run at once across the tests side by side. On two cores, a
/// 7-member ensemble beside a 3-member one starved the JVMs: a TLS client's session expired in a
/// 14 s stall of a roll (docs/ci.md, 2026-12-03 evening). Two ensembles of 3 to 5 fit.
pub const MEMBER_BUDGET: u32 = 8;

/// Whether a test running `members` may start beside tests running `running` members: always
/// when nothing runs (a test bigger than the budget runs alone).
pub fn fits(members: u32, running: &[u32]) -> bool {
    running.is_empty() || running.iter().sum::<u32>() + members <= MEMBER_BUDGET
}

/// Whether a test with `sharing` may start while tests with `running` run.
pub fn may_join(sharing: Sharing, running: &[Sharing]) -> bool {
    let has = |s: Sharing| running.contains(&s);
    match sharing {
        Alone => running.is_empty(),
        _ if has(Alone) => false,
        Shares => true,
        NeedsOperator => !has(StopsOperator),
        StopsOperator => !has(StopsOperator) && !has(NeedsOperator),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_run_beside_whom() {
        assert!(may_join(Alone, &[]));
        for other in [Shares, NeedsOperator, StopsOperator, Alone] {
            assert!(!may_join(Alone, &[other]), "{other:?}");
            assert!(!may_join(other, &[Alone]), "{other:?}");
        }
        assert!(may_join(Shares, &[StopsOperator, Shares]));
        assert!(may_join(NeedsOperator, &[NeedsOperator, Shares]));
        assert!(!may_join(NeedsOperator, &[StopsOperator]));
        assert!(!may_join(StopsOperator, &[NeedsOperator]));
        assert!(!may_join(StopsOperator, &[StopsOperator]));
        assert!(may_join(StopsOperator, &[Shares, Shares]));
    }

    #[test]
    fn the_member_budget_keeps_the_big_ensembles_apart() {
        assert!(fits(7, &[]), "a test bigger than the others runs, alone");
        assert!(fits(3, &[3]));
        assert!(fits(3, &[5]));
        assert!(!fits(3, &[7]), "7 members beside 3 starved them on two cores");
        assert!(fits(1, &[7]));
        let scaling = planned("day2", "scaling_along_one_three_seven_and_back_to_one").unwrap();
        assert_eq!(scaling.members, 7);
        assert!(!scaling.in_gate(), "the gate scales through 5, beside another test");
    }

    #[test]
    fn a_need_is_met_by_its_file_or_by_running_by_hand() {
        let need = Need::Prometheus;
        assert_eq!(need.readiness(false, None), Readiness::Ready, "by hand");
        assert_eq!(need.readiness(true, None), Readiness::Pending);
        assert_eq!(need.readiness(true, Some("ready\n")), Readiness::Ready);
        let Readiness::Failed(why) = need.readiness(true, Some("prometheus-build failed")) else {
            panic!("a failed installation fails the test");
        };
        assert!(
            why.contains("Prometheus") && why.contains("prometheus-build failed"),
            "{why}"
        );
    }

    #[test]
    fn a_test_left_out_of_the_gate_names_one_in_it() {
        for p in SCHEDULE.iter().filter(|p| !p.in_gate()) {
            let by = p.covered_by.unwrap();
            let (suite, test) = by.split_once("::").expect("suite::test");
            assert!(
                planned(suite, test).is_some_and(|c| c.in_gate()),
                "{}::{} is covered by {by}, which is not a test of the gate",
                p.suite,
                p.test
            );
        }
    }

    #[test]
    fn each_test_is_planned_once() {
        for (i, a) in SCHEDULE.iter().enumerate() {
            assert!(
                !SCHEDULE[i + 1..].iter().any(|b| b.suite == a.suite && b.test == a.test),
                "{}::{} is planned twice",
                a.suite,
                a.test
            );
        }
    }
}
