//! Backups to a real S3-compatible object store on the local cluster (crates/s3-store: TLS,
//! signatures checked) and restores into a new cluster, under a client workload.

mod common;

use common::store::{in_store, scale_store, start_store, BUCKET, STORE};
use common::workload::{self, Workload};
use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;
use zkop_api::ZooKeeperCluster;
use zookeeper_client::{Acls, CreateMode};

const AVAILABLE: Duration = Duration::from_secs(300);
const BACKUP: Duration = Duration::from_secs(180);

fn backup_spec(endpoint: &str, schedule: &str, count: u32) -> serde_json::Value {
    json!({
        "schedule": schedule,
        "retention": {"count": count},
        "target": {"s3": {"endpoint": endpoint, "bucket": BUCKET, "credentialsSecret": "backup-credentials", "caSecret": "backup-ca"}},
    })
}

fn restore_spec(endpoint: &str, backup: &str) -> serde_json::Value {
    json!({
        "backup": backup,
        "target": {"s3": {"endpoint": endpoint, "bucket": BUCKET, "credentialsSecret": "backup-credentials", "caSecret": "backup-ca"}},
    })
}

fn backup_status(zk: &ZooKeeperCluster) -> zkop_api::BackupStatus {
    zk.status.as_ref().and_then(|s| s.backup.clone()).unwrap_or_default()
}

/// Waits for a successful backup other than `after`; returns it.
async fn next_backup(ns: &TestNamespace, cluster: &str, after: Option<&str>) -> zkop_api::BackupRecord {
    let started = std::time::Instant::now();
    loop {
        let zk = ns.clusters().get(cluster).await.unwrap();
        if let Some(found) = backup_status(&zk)
            .last_successful
            .filter(|b| Some(b.name.as_str()) != after)
        {
            return found;
        }
        assert!(
            started.elapsed() < BACKUP,
            "no backup of {cluster} after {after:?} within {BACKUP:?}: {:?}",
            zk.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn request_backup(ns: &TestNamespace, cluster: &str, value: &str) {
    let annotation = json!({"metadata": {"annotations": {zkop_api::BACKUP_ANNOTATION: value}}});
    ns.clusters()
        .patch(cluster, &PatchParams::default(), &Patch::Merge(annotation))
        .await
        .unwrap();
}

async fn delete_cluster_and_volumes(ns: &TestNamespace, cluster: &str) {
    ns.clusters().delete(cluster, &DeleteParams::default()).await.unwrap();
    let pods: Api<Pod> = ns.api();
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let selector = format!("app.kubernetes.io/name=zookeeper,app.kubernetes.io/instance={cluster}");
    wait_for(Duration::from_secs(180), "the cluster's pods to go", || async {
        pods.list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
    for claim in claims
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap()
        .items
    {
        let _ = claims
            .delete(&claim.metadata.name.unwrap(), &DeleteParams::default())
            .await;
    }
    wait_for(Duration::from_secs(180), "the cluster's volumes to go", || async {
        claims
            .list(&ListParams::default().labels(&selector))
            .await
            .unwrap()
            .items
            .is_empty()
    })
    .await;
}

async fn wait_refused(ns: &TestNamespace, cluster: &str) -> String {
    let started = std::time::Instant::now();
    let message = loop {
        let zk = ns.clusters().get(cluster).await.unwrap();
        if let Some(c) = condition(&zk, "Restored").filter(|c| c.reason == "RestoreRefused") {
            break c.message.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{cluster}'s restore not refused: {:?}",
            zk.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let statefulsets: Api<StatefulSet> = ns.api();
    assert!(
        statefulsets.get_opt(cluster).await.unwrap().is_none(),
        "no member is created from a refused backup"
    );
    message
}

/// The whole life of a backup: scheduled and on-demand backups under the workload, the cluster
/// and its volumes deleted, a new cluster restored from the on-demand one (every acknowledged
/// write up to its zxid, nothing after, the ACLs, the seed's test), a missing and a corrupt
/// backup refused, the target unreachable (a failed backup with a condition, then the next
/// one succeeds), retention; then a backup to a PersistentVolumeClaim and a one-member
/// cluster restored from it.
#[tokio::test]
async fn backups_restore_into_a_new_cluster_and_failures_say_why() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-backup").await;
    let endpoint = start_store(&ns, &["zk", "from-missing", "from-corrupt", "from-retained"]).await;
    // Refused at admission, naming the field: a target with neither kind, a schedule that is not cron.
    let mut invalid = small_cluster(3, zkop_api::DEFAULT_VERSION);
    invalid["backup"] = json!({"schedule": "0 * * * *", "target": {}});
    let message = rejection(ns.create_cluster("invalid", invalid.clone()).await);
    assert!(
        message.contains("exactly one of s3 and persistentVolumeClaim"),
        "{message}"
    );
    invalid["backup"] = backup_spec(&endpoint, "hourly", 3);
    let message = rejection(ns.create_cluster("invalid", invalid).await);
    assert!(
        message.contains("spec.backup.schedule must be a cron expression"),
        "{message}"
    );

    let mut spec = small_cluster(3, zkop_api::DEFAULT_VERSION);
    spec["backup"] = backup_spec(&endpoint, "* * * * *", 10);
    ns.create_cluster("zk", spec.clone()).await.unwrap();
    ns.wait_available("zk", AVAILABLE).await;

    let zk_endpoint = ns.endpoint("zk").await;
    let locked = workload::connect(&zk_endpoint).await;
    locked
        .create(
            "/locked",
            b"read-only",
            &CreateMode::Persistent.with_acls(Acls::anyone_read()),
        )
        .await
        .unwrap();
    let load = Workload::start(&zk_endpoint).await;

    let scheduled = next_backup(&ns, "zk", None).await;
    eprintln!("scheduled backup: {scheduled:?}");
    request_backup(&ns, "zk", "on-demand-1").await;
    let on_demand = next_backup(&ns, "zk", Some(&scheduled.name)).await;
    eprintln!("on-demand backup: {on_demand:?}");
    // Writes go on after the backup's zxid (finish waits for them): none of them may come back.
    let (report, missing) = load.finish().await;
    assert!(
        missing.is_empty(),
        "acknowledged writes lost in the live cluster: {missing:?}"
    );
    let cut = zk_agent::backup::parse_zxid(&on_demand.zxid).unwrap() as i64;
    let before: Vec<u64> = report
        .acked
        .iter()
        .filter(|(_, z)| *z <= cut)
        .map(|(s, _)| *s)
        .collect();
    let after: Vec<u64> = report.acked.iter().filter(|(_, z)| *z > cut).map(|(s, _)| *s).collect();
    assert!(
        !before.is_empty() && !after.is_empty(),
        "writes on both sides of the backup's zxid: {} / {}",
        before.len(),
        after.len()
    );
    eprintln!(
        "workload: {} writes acknowledged, largest stall {:?} over the run (two backups taken during it)",
        report.acked.len(),
        report.largest_gap
    );
    let objects = in_store(&ns, &format!("ls /data/{BUCKET}/{}/zk/{}", ns.name, on_demand.name));
    assert!(
        objects.contains("manifest.json") && objects.contains("snapshot."),
        "{objects}"
    );

    // Lose everything: the resource and its volumes.
    delete_cluster_and_volumes(&ns, "zk").await;
    let mut restored = small_cluster(3, zkop_api::DEFAULT_VERSION);
    restored["restoreFrom"] = restore_spec(&endpoint, &on_demand.name);
    ns.create_cluster("zk", restored).await.unwrap();
    let zk = ns.wait_available("zk", AVAILABLE).await;
    let restore = zk.status.as_ref().unwrap().restore.clone().unwrap();
    assert_eq!(
        (restore.phase.as_str(), restore.zxid.as_deref()),
        ("Verified", Some(on_demand.zxid.as_str()))
    );
    // Members restore while the ensemble is new. One that starts after a majority restored and
    // formed the ensemble (its state is then `existing`) is not restored: it syncs from the
    // leader, as a member with an empty disk does.
    let mut restored_members = Vec::new();
    for i in 0..3 {
        let member = format!("zk-{i}");
        let (_, log) = ns.kubectl(&["logs", &member, "-c", "restore"]);
        if log.contains(&format!("of backup {} written", on_demand.name)) {
            restored_members.push(member.clone());
        } else {
            assert!(
                log.contains("the ensemble exists already"),
                "{member} restored from the backup, or joined the ensemble restored without it: {log}"
            );
            let out = ns.zkcli(&member, &["get", "/locked"]);
            assert!(
                out.lines().any(|l| l == "read-only"),
                "{member} has the data from the leader: {out}"
            );
        }
        let (_, log) = ns.kubectl(&["logs", &member, "-c", "zookeeper"]);
        assert!(
            !log.contains("initialize marker written"),
            "{member} starts as an existing ensemble: {log}"
        );
    }
    assert!(
        restored_members.len() >= 2,
        "a majority of the members restored from the backup: {restored_members:?}"
    );
    let zk_endpoint = ns.endpoint("zk").await;
    let reader = workload::connect(&zk_endpoint).await;
    reader.sync("/workload").await.unwrap();
    let present: std::collections::HashSet<String> =
        reader.list_children("/workload").await.unwrap().into_iter().collect();
    let name = |seq: &u64| format!("{}-w-{seq:08}", report.run);
    let lost: Vec<&u64> = before.iter().filter(|s| !present.contains(&name(s))).collect();
    let resurrected: Vec<&u64> = after.iter().filter(|s| present.contains(&name(s))).collect();
    assert!(
        lost.is_empty(),
        "writes up to the backup's zxid missing after the restore: {lost:?}"
    );
    assert!(
        resurrected.is_empty(),
        "writes after the backup's zxid present after the restore: {resurrected:?}"
    );
    for seq in [before[0], before[before.len() / 2], *before.last().unwrap()] {
        let (data, _) = reader.get_data(&format!("/workload/{}", name(&seq))).await.unwrap();
        assert_eq!(data, seq.to_string().as_bytes());
    }
    let (acl, _) = reader.get_acl("/locked").await.unwrap();
    assert_eq!(
        acl.as_slice(),
        &Acls::anyone_read() as &[zookeeper_client::Acl],
        "ACLs come back"
    );
    eprintln!(
        "restored {} writes up to zxid {}, none of the {} after it",
        before.len(),
        on_demand.zxid,
        after.len()
    );

    // The seed's test on the restored ensemble.
    let out = ns.zkcli("zk-0", &["create", "/foo", "bar"]);
    assert!(out.contains("Created /foo"), "{out}");
    let pods: Api<Pod> = ns.api();
    let old_uid = pods.get("zk-0").await.unwrap().metadata.uid;
    pods.delete("zk-0", &DeleteParams::default()).await.unwrap();
    let out = ns.zkcli("zk-1", &["get", "/foo"]);
    assert!(out.lines().any(|l| l == "bar"), "read through zk-1: {out}");
    wait_for(Duration::from_secs(240), "zk-0 to come back ready", || async {
        pods.get_opt("zk-0").await.unwrap().is_some_and(|p| {
            p.metadata.uid != old_uid
                && p.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    })
    .await;
    let out = ns.zkcli("zk-0", &["get", "/foo"]);
    assert!(out.lines().any(|l| l == "bar"), "read through zk-0: {out}");
    let (_, log) = ns.kubectl(&["logs", "zk-0", "-c", "restore"]);
    assert!(
        log.contains("not restored again") || log.contains("has data already"),
        "a member that comes back is not restored over: {log}"
    );

    // Refused: a backup that does not exist, and one with a byte flipped.
    let missing_name = "zk-20200101T000000Z";
    let mut bad = small_cluster(3, zkop_api::DEFAULT_VERSION);
    bad["restoreFrom"] = restore_spec(&endpoint, missing_name);
    ns.create_cluster("from-missing", bad.clone()).await.unwrap();
    let message = wait_refused(&ns, "from-missing").await;
    assert!(
        message.contains("not found") && message.contains(missing_name),
        "{message}"
    );
    let corrupt_name = "zk-20200102T000000Z";
    let dir = format!("/data/{BUCKET}/{}/zk", ns.name);
    in_store(
        &ns,
        &format!(
            "cp -r {dir}/{src} {dir}/{corrupt_name} && f=$(ls {dir}/{corrupt_name}/snapshot.*) && n=$(( $(stat -c %s $f) / 2 )) \
             && b=$(od -An -tu1 -j$n -N1 $f | tr -d ' ') && printf \"\\\\$(printf %03o $(( b ^ 1 )))\" | dd of=$f bs=1 seek=$n conv=notrunc 2>/dev/null",
            src = on_demand.name
        ),
    );
    bad["restoreFrom"] = restore_spec(&endpoint, corrupt_name);
    ns.create_cluster("from-corrupt", bad).await.unwrap();
    let message = wait_refused(&ns, "from-corrupt").await;
    assert!(
        message.contains("corrupt") && message.contains("snapshot."),
        "{message}"
    );
    // Refused: a restore into a cluster whose volume is left from an earlier one of its name
    // (members started over it would keep that data; the restore would say it worked and
    // restore nothing). The claim is made as a retained member's would be: its name and labels.
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let retained: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data-from-retained-0", "labels": {
            "app.kubernetes.io/name": "zookeeper", "app.kubernetes.io/instance": "from-retained"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }))
    .unwrap();
    claims.create(&PostParams::default(), &retained).await.unwrap();
    // Claims are dated to the second: the cluster must be created in a later one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut over_retained = small_cluster(1, zkop_api::DEFAULT_VERSION);
    over_retained["restoreFrom"] = restore_spec(&endpoint, &on_demand.name);
    ns.create_cluster("from-retained", over_retained).await.unwrap();
    let message = wait_refused(&ns, "from-retained").await;
    assert!(
        message.contains("data-from-retained-0") && message.contains("delete those PersistentVolumeClaims"),
        "{message}"
    );
    // Once the volume is gone, the restore goes on: the backup is checked.
    claims
        .delete("data-from-retained-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(60),
        "the restore to go on once the volume is gone",
        || async {
            let zk = ns.clusters().get("from-retained").await.unwrap();
            condition(&zk, "Restored").is_some_and(|c| c.reason != "RestoreRefused")
        },
    )
    .await;
    for cluster in ["from-missing", "from-corrupt", "from-retained"] {
        ns.clusters().delete(cluster, &DeleteParams::default()).await.unwrap();
    }
    in_store(&ns, &format!("rm -rf {dir}/{corrupt_name}"));

    // The restored cluster backs up in turn; retention keeps 2 of the cluster's backups.
    ns.patch_spec("zk", json!({"backup": backup_spec(&endpoint, "* * * * *", 2)}))
        .await
        .unwrap();
    // Asked for, not waited for: the schedule was shown to work above.
    request_backup(&ns, "zk", "after-the-restore").await;
    let first = next_backup(&ns, "zk", None).await;
    let zxid = |r: &zkop_api::BackupRecord| zk_agent::backup::parse_zxid(&r.zxid).unwrap();
    assert!(
        zxid(&first) > zxid(&on_demand),
        "the restored ensemble goes on from the backup's zxid"
    );

    // The target unreachable: the backup fails and says why; the next one succeeds once it is back.
    scale_store(&ns, 0).await;
    let mark = ns.event_mark("zk").await;
    request_backup(&ns, "zk", "while-the-store-is-down").await;
    let failure_event = ns.wait_for_event("zk", "BackupFailed", &mark, BACKUP).await;
    eprintln!("with the store down: {failure_event}");
    // The event is published in the reconcile that then writes the status: wait for the write
    // (read at once, the condition was still the last success's; seen in make test).
    wait_for(Duration::from_secs(30), "the failure in the status", || async {
        let zk = ns.clusters().get("zk").await.unwrap();
        condition(&zk, "BackupSucceeded").is_some_and(|c| c.reason == "BackupFailed")
    })
    .await;
    let zk = ns.clusters().get("zk").await.unwrap();
    let failed = condition(&zk, "BackupSucceeded").unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("False", "BackupFailed"),
        "{failed:?}"
    );
    assert!(
        failed.message.contains(STORE) || failed.message.contains("error sending request"),
        "{}",
        failed.message
    );
    let last_good = backup_status(&zk).last_successful.unwrap();
    scale_store(&ns, 1).await;
    request_backup(&ns, "zk", "once-the-store-is-back").await;
    let recovered = next_backup(&ns, "zk", Some(&last_good.name)).await;
    let zk = ns.clusters().get("zk").await.unwrap();
    let healthy = condition(&zk, "BackupSucceeded").unwrap();
    assert_eq!(healthy.status, "True", "{healthy:?}");
    eprintln!("after the store came back: {recovered:?}");

    // Retention: at most 2 complete backups of zk, the newest among them; the old cluster's gone.
    request_backup(&ns, "zk", "for-retention").await;
    let _ = next_backup(&ns, "zk", Some(&recovered.name)).await;
    let zk = ns.clusters().get("zk").await.unwrap();
    let newest = backup_status(&zk).last_successful.unwrap();
    let complete = in_store(&ns, &format!("cd {dir} && ls -d */manifest.json | cut -d/ -f1"));
    let complete: Vec<&str> = complete.lines().filter(|l| !l.is_empty()).collect();
    assert!(complete.len() <= 2, "retention keeps 2: {complete:?}");
    assert!(
        complete.contains(&newest.name.as_str()),
        "the newest backup is kept: {complete:?}"
    );
    assert!(
        !complete.contains(&scheduled.name.as_str()) && !complete.contains(&on_demand.name.as_str()),
        "{complete:?}"
    );

    // A PersistentVolumeClaim target: zk backs up to a volume, and a one-member cluster is
    // restored from it. The claim is node-local here (local-path): it is bound on the node of
    // the member the backup reads, and the restored member is scheduled there.
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "backup-volume", "labels": common::allowing(&["zk", "from-volume"])},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "256Mi"}}},
    }))
    .unwrap();
    claims.create(&Default::default(), &claim).await.unwrap();
    let volume_target = json!({"persistentVolumeClaim": {"claimName": "backup-volume"}});
    ns.patch_spec(
        "zk",
        // A merge patch: the S3 target is removed by name.
        json!({"backup": {"schedule": "0 0 1 1 *", "target": {"s3": null, "persistentVolumeClaim": volume_target["persistentVolumeClaim"]}}}),
    )
    .await
    .unwrap();
    request_backup(&ns, "zk", "to-the-volume").await;
    // A backup of the every-minute schedule may still have gone to the object store after
    // `newest` (seen in make test): the first one on the volume is the one asked for.
    let mut after = newest.name.clone();
    let mut on_volume = next_backup(&ns, "zk", Some(&after)).await;
    for _ in 0..2 {
        if on_volume.location.starts_with("persistentVolumeClaim") {
            break;
        }
        after = on_volume.name.clone();
        on_volume = next_backup(&ns, "zk", Some(&after)).await;
    }
    eprintln!("backup to the volume: {on_volume:?}");
    assert!(
        on_volume.location == format!("persistentVolumeClaim backup-volume: {}/zk/{}", ns.name, on_volume.name),
        "{}",
        on_volume.location
    );
    let source = workload::connect(&ns.endpoint("zk").await).await;
    source.sync("/workload").await.unwrap();
    let workload_nodes = source.list_children("/workload").await.unwrap().len();
    let mut from_volume = small_cluster(1, zkop_api::DEFAULT_VERSION);
    from_volume["restoreFrom"] = json!({"backup": on_volume.name, "target": volume_target});
    ns.create_cluster("from-volume", from_volume).await.unwrap();
    let restored_zk = ns.wait_available("from-volume", AVAILABLE).await;
    let restore = restored_zk.status.as_ref().unwrap().restore.clone().unwrap();
    assert_eq!(restore.zxid.as_deref(), Some(on_volume.zxid.as_str()));
    let copy = workload::connect(&ns.endpoint("from-volume").await).await;
    copy.sync("/workload").await.unwrap();
    assert_eq!(
        copy.list_children("/workload").await.unwrap().len(),
        workload_nodes,
        "the one-member cluster restored from the volume has every workload node"
    );
    let (data, _) = copy.get_data("/foo").await.unwrap();
    assert_eq!(data, b"bar");
    let (acl, _) = copy.get_acl("/locked").await.unwrap();
    assert_eq!(acl.as_slice(), &Acls::anyone_read() as &[zookeeper_client::Acl]);
}
