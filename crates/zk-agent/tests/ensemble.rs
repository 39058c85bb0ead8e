//! zk-agent against real ZooKeeper servers (no Kubernetes): three JVMs on this machine, each
//! started by `zk-agent run` as in a pod, checked with a real ZooKeeper client.

mod common;

use common::{create, read_through, Ensemble};
use std::time::{Duration, Instant};

const READY: Duration = Duration::from_secs(90);

/// The seed README's test: write /foo through one member, kill it, read /foo through another,
/// bring the killed member back under the same identity and data, read /foo there.
#[tokio::test(flavor = "multi_thread")]
async fn seed_scenario_member_comes_back_with_its_data() {
    let mut zk = Ensemble::new("seed", 3, 21100);
    zk.start_all("new");
    zk.wait_ready(&[0, 1, 2], READY);
    for i in 0..3 {
        let myid = std::fs::read_to_string(zk.data_dir(i).join("zookeeper/myid")).unwrap();
        assert_eq!(myid.trim(), (i + 1).to_string());
        assert!(
            !zk.data_dir(i).join("zookeeper/initialize").exists(),
            "ZooKeeper consumes the bootstrap marker"
        );
    }
    let probe = zk
        .agent(0, "probe", "existing")
        .args(["ready", "--address", &zk.client_address(0)])
        .output()
        .unwrap();
    assert!(probe.status.success(), "probe ready: {probe:?}");
    assert!(String::from_utf8_lossy(&probe.stdout).contains("serving as"));

    create(&common::client(&zk.client_address(0)).await, "/foo", "bar").await;
    zk.kill(0);
    let probe = zk
        .agent(0, "probe", "existing")
        .args(["ready", "--address", &zk.client_address(0)])
        .output()
        .unwrap();
    assert!(!probe.status.success(), "a killed member is not ready");
    assert_eq!(read_through(&zk, 1, "/foo").await.as_deref(), Some("bar"));

    // Back under the same name with the same volume, as the StatefulSet recreates it.
    zk.start(0, "existing");
    zk.wait_ready(&[0], READY);
    assert_eq!(read_through(&zk, 0, "/foo").await.as_deref(), Some("bar"));
    let log = zk.log(0);
    assert!(
        log.contains("configured from") && log.contains("zoo.cfg.dynamic."),
        "a restarted member takes the configuration ZooKeeper itself committed:\n{log}"
    );
}

/// A member whose disk was lost comes back empty: it serves nothing until it has synced from the
/// leader, then serves /foo. The two others stay ready throughout.
#[tokio::test(flavor = "multi_thread")]
async fn lost_disk_member_syncs_before_serving() {
    let mut zk = Ensemble::new("lostdisk", 3, 21200);
    zk.start_all("new");
    zk.wait_ready(&[0, 1, 2], READY);
    create(&common::client(&zk.connect_string(&[0, 1])).await, "/foo", "bar").await;

    zk.kill(2);
    zk.wipe(2);
    // If member 2 was the leader, the two others elect a new one first.
    zk.wait_ready(&[0, 1], READY);
    zk.start(2, "existing");
    let started = Instant::now();
    while !zk.ready(2) {
        for intact in [0, 1] {
            assert!(
                !zk.stopped_serving(intact),
                "the two intact members must stay in quorum: member {intact} stopped serving.\n\
                 member 0:\n{}\nmember 1:\n{}\nmember 2:\n{}",
                zk.log_tail(0),
                zk.log_tail(1),
                zk.log_tail(2)
            );
        }
        assert!(zk.exited(2).is_none(), "member 2 exited:\n{}", zk.log(2));
        assert!(started.elapsed() < READY, "member 2 never synced:\n{}", zk.log_tail(2));
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = zk.log(2);
    assert!(log.contains("will not vote until it has synced"), "{log}");
    assert!(
        log.contains("setting zxid to -1"),
        "ZooKeeper must have started with the empty-database guard:\n{log}"
    );
    assert_eq!(read_through(&zk, 2, "/foo").await.as_deref(), Some("bar"));
}

/// Why the guard exists: member 0 and member 2 committed /critical while member 1 was down.
/// Member 2's disk is then lost and member 0 is down. Member 1 (stale) and member 2 (empty)
/// together are a majority by count, but must not form a quorum: member 2 does not vote.
/// When member 0 returns, the ensemble forms around its data and nothing committed is lost.
#[tokio::test(flavor = "multi_thread")]
async fn empty_member_never_votes_with_a_stale_one() {
    let mut zk = Ensemble::new("novote", 3, 21300);
    write_critical_then_lose_disk(&mut zk).await;

    zk.start(1, "existing");
    zk.start(2, "existing");
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(15) {
        assert!(
            !zk.ready(1) && !zk.ready(2),
            "a stale and an empty member formed a quorum without the member holding the data"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    zk.start(0, "existing");
    zk.wait_ready(&[0, 1, 2], READY);
    for i in 0..3 {
        assert_eq!(
            read_through(&zk, i, "/critical").await.as_deref(),
            Some("committed"),
            "member {i}"
        );
    }
}

/// Control for the test above, showing what the guard prevents: declaring the ensemble `new`
/// lets the empty member vote (the bootstrap marker), and the stale member then leads a quorum
/// that has lost /critical. This is why the operator declares `new` only until the ensemble
/// first reaches quorum.
#[tokio::test(flavor = "multi_thread")]
async fn control_an_empty_voter_with_a_stale_member_loses_committed_data() {
    let mut zk = Ensemble::new("control", 3, 21400);
    write_critical_then_lose_disk(&mut zk).await;

    zk.start(1, "existing");
    zk.start(2, "new");
    zk.wait_ready(&[1, 2], READY);
    assert_eq!(
        read_through(&zk, 1, "/critical").await,
        None,
        "without the guard the committed write is gone"
    );
}

async fn write_critical_then_lose_disk(zk: &mut Ensemble) {
    zk.start_all("new");
    zk.wait_ready(&[0, 1, 2], READY);
    zk.kill(1);
    create(
        &common::client(&zk.connect_string(&[0])).await,
        "/critical",
        "committed",
    )
    .await;
    zk.kill(2);
    zk.wipe(2);
    zk.kill(0);
}

/// Members started before their peers' names resolve wait, write nothing, then form one ensemble.
#[tokio::test(flavor = "multi_thread")]
async fn members_wait_for_dns_then_form_one_ensemble() {
    let mut zk = Ensemble::new("dns", 3, 21500);
    zk.set_resolvable(&[0]);
    zk.start_all("new");
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..3 {
        assert!(zk.exited(i).is_none(), "member {i} gave up:\n{}", zk.log(i));
        assert!(!zk.ready(i));
        assert!(
            !zk.data_dir(i).join("conf/zoo.cfg").exists(),
            "member {i} wrote its configuration before DNS was ready"
        );
        let log = zk.log(i);
        assert!(
            log.contains("waiting for DNS") && log.contains(&zk.host(2)),
            "member {i}:\n{log}"
        );
    }
    zk.set_resolvable(&[0, 1, 2]);
    zk.wait_ready(&[0, 1, 2], READY);
    let leaders: Vec<u32> = (0..3)
        .filter(|i| {
            zk_agent::probe::ready(&zk.client_address(*i), Duration::from_secs(1))
                == Ok(zk_agent::probe::ServingMode::Leader)
        })
        .collect();
    assert_eq!(leaders.len(), 1, "one ensemble has one leader, found {leaders:?}");
    create(&common::client(&zk.client_address(0)).await, "/dns", "ok").await;
    assert_eq!(read_through(&zk, 2, "/dns").await.as_deref(), Some("ok"));
}
