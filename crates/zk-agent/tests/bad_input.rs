//! Bad flags, environment and files: a message naming the problem, a non-zero exit, nothing written.

mod common;

use common::Ensemble;
use std::process::Output;

fn run(command: &mut std::process::Command) -> (i32, String) {
    let Output { status, stderr, .. } = command.output().expect("running zk-agent");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn assert_rejected(zk: &Ensemble, member: u32, (code, stderr): (i32, String), exit: i32, expected: &[&str]) {
    assert_eq!(code, exit, "exit status; stderr:\n{stderr}");
    for text in expected {
        assert!(stderr.contains(text), "expected {text:?} in:\n{stderr}");
    }
    assert!(
        !zk.data_dir(member).join("conf").exists(),
        "configuration written despite the error"
    );
}

#[test]
fn owned_configuration_override_is_rejected() {
    let zk = Ensemble::new("bad-override", 3, 22100);
    let overrides = zk.root.join("overrides.cfg");
    std::fs::write(&overrides, "tickTime=3000\ndataDir=/somewhere/else\n").unwrap();
    let result = run(zk
        .agent(0, "configure", "new")
        .env("ZK_CONFIG_OVERRIDES_FILE", &overrides));
    assert_rejected(
        &zk,
        0,
        result,
        2,
        &["overrides.cfg line 2", "dataDir is managed by zk-agent", "remove it"],
    );

    std::fs::write(&overrides, "server.9=evil:1:2;3\n").unwrap();
    let result = run(zk
        .agent(0, "configure", "new")
        .env("ZK_CONFIG_OVERRIDES_FILE", &overrides));
    assert_rejected(&zk, 0, result, 2, &["server.9 is managed by zk-agent", "members file"]);

    let result = run(zk
        .agent(0, "configure", "new")
        .env("ZK_CONFIG_OVERRIDES_FILE", zk.root.join("missing.cfg")));
    assert_rejected(
        &zk,
        0,
        result,
        2,
        &["ZK_CONFIG_OVERRIDES_FILE", "missing.cfg is not a file"],
    );
}

#[test]
fn bad_identity_and_membership_are_rejected() {
    let zk = Ensemble::new("bad-identity", 3, 22200);
    let result = run(zk.agent(0, "configure", "new").env("ZK_HOSTNAME", "zookeeper"));
    assert_rejected(&zk, 0, result, 2, &["ZK_HOSTNAME", "<name>-<ordinal>"]);

    let result = run(&mut zk.agent(5, "configure", "new"));
    assert_rejected(&zk, 5, result, 2, &["does not list this member (server.6"]);

    let result = run(zk
        .agent(0, "configure", "new")
        .env("ZK_MEMBERS_FILE", zk.root.join("nope")));
    assert_rejected(&zk, 0, result, 2, &["no membership", "ZK_REPLICAS"]);

    let members = zk.root.join("broken-members");
    std::fs::write(&members, "server.1=zk-0:1:2;3\nserver.2=zk-1:2888;2181\n").unwrap();
    let result = run(zk.agent(0, "configure", "new").env("ZK_MEMBERS_FILE", &members));
    assert_rejected(
        &zk,
        0,
        result,
        2,
        &["broken-members line 2", "<host>:<quorum port>:<election port>"],
    );

    let result = run(&mut zk.agent(0, "configure", "maybe"));
    assert_rejected(&zk, 0, result, 2, &["maybe", "ensemble-state", "new", "existing"]);
}

#[test]
fn options_that_defeat_the_lost_disk_guard_are_rejected() {
    let zk = Ensemble::new("bad-jvm", 3, 22300);
    let result = run(zk
        .agent(0, "run", "new")
        .env("ZK_JVM_OPTS", "-Xmx100m -Dzookeeper.db.autocreate=true"));
    assert_rejected(
        &zk,
        0,
        result,
        2,
        &["ZK_JVM_OPTS", "zookeeper.db.autocreate", "lost-disk guard"],
    );
}

#[test]
fn a_volume_of_another_member_is_refused() {
    let zk = Ensemble::new("bad-volume", 3, 22400);
    std::fs::create_dir_all(zk.data_dir(0).join("zookeeper")).unwrap();
    std::fs::write(zk.data_dir(0).join("zookeeper/myid"), "3\n").unwrap();
    let result = run(&mut zk.agent(0, "configure", "existing"));
    assert_rejected(&zk, 0, result, 1, &["belongs to server.3", "this member is server.1"]);
}

#[test]
fn unresolvable_names_time_out_with_the_names() {
    let zk = Ensemble::new("bad-dns", 3, 22500);
    zk.set_resolvable(&[]);
    let result = run(zk.agent(1, "configure", "new").env("ZK_DNS_TIMEOUT_SECONDS", "1"));
    assert_rejected(
        &zk,
        1,
        result,
        1,
        &[
            "gave up waiting for DNS after 1s",
            &zk.host(1),
            &zk.host(2),
            "headless Service",
        ],
    );
}

#[test]
fn replicas_give_a_statefulset_membership_when_no_members_file_exists() {
    let zk = Ensemble::new("replicas", 3, 22600);
    let (code, stderr) = run(zk
        .agent(2, "configure", "new")
        .env("ZK_MEMBERS_FILE", zk.root.join("not-mounted"))
        .env("ZK_REPLICAS", "3")
        .env("ZK_NAMESPACE", "it")
        .env("ZK_DNS_PEER_GRACE_SECONDS", "0"));
    assert_eq!(code, 0, "{stderr}");
    let dynamic = std::fs::read_to_string(zk.data_dir(2).join("conf/zoo.cfg.dynamic")).unwrap();
    assert_eq!(
        dynamic,
        "server.1=zk-0.zk-headless.it.svc.cluster.local:2888:3888:participant;2181\n\
         server.2=zk-1.zk-headless.it.svc.cluster.local:2888:3888:participant;2181\n\
         server.3=zk-2.zk-headless.it.svc.cluster.local:2888:3888:participant;2181\n"
    );
    assert_eq!(
        std::fs::read_to_string(zk.data_dir(2).join("zookeeper/myid")).unwrap(),
        "3\n"
    );
    assert!(
        zk.data_dir(2).join("zookeeper/initialize").exists(),
        "a new ensemble's empty member may vote"
    );
}

/// A member removed by reconfiguration keeps ZooKeeper's last configuration on its volume, which no
/// longer lists it; added again, it must take the members file instead of refusing to start.
#[test]
fn a_member_added_again_after_removal_takes_the_members_file() {
    let zk = Ensemble::new("readded", 3, 22700);
    let conf = zk.data_dir(2).join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let without_me: String = zk.members_text().lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(conf.join("zoo.cfg.dynamic.200000003"), &without_me).unwrap();
    std::fs::write(
        conf.join("zoo.cfg"),
        format!(
            "dynamicConfigFile={}\n",
            conf.join("zoo.cfg.dynamic.200000003").display()
        ),
    )
    .unwrap();
    let (code, stderr) = run(&mut zk.agent(2, "configure", "existing"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("no longer lists this member"), "{stderr}");
    let cfg = std::fs::read_to_string(conf.join("zoo.cfg")).unwrap();
    assert!(
        cfg.contains(&format!("dynamicConfigFile={}", conf.join("zoo.cfg.dynamic").display())),
        "{cfg}"
    );
    assert_eq!(
        std::fs::read_to_string(conf.join("zoo.cfg.dynamic")).unwrap(),
        zk.members_text()
    );
}
