//! The operator on a real cluster: the seed's test, validation, operator restarts, deletion,
//! configuration changes. Each test works in its own namespace.

mod common;

use common::{client, condition, rejection, wait_for, TestNamespace};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams};
use kube::ResourceExt;
use serde_json::json;
use std::time::Duration;

const AVAILABLE: Duration = Duration::from_secs(300);

fn small(replicas: i32) -> serde_json::Value {
    common::small_cluster(replicas, zkop_api::DEFAULT_VERSION)
}

/// The seed README's test, the way it does it: zkCli.sh inside the pods.
#[tokio::test]
async fn seed_test_member_survives_pod_deletion_with_its_volume() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-seed").await;
    ns.create_cluster("zookeeper", small(3)).await.unwrap();
    let zk = ns.wait_available("zookeeper", AVAILABLE).await;
    assert!(zk.status.as_ref().unwrap().leader.is_some());

    let out = ns.zkcli("zookeeper-0", &["create", "/foo", "bar"]);
    assert!(out.contains("Created /foo"), "{out}");
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let volume_of = |claim: &'static str| {
        let claims = claims.clone();
        async move { claims.get(claim).await.unwrap().spec.unwrap().volume_name.unwrap() }
    };
    let volume = volume_of("data-zookeeper-0").await;
    let pods: Api<Pod> = ns.api();
    let old_uid = pods.get("zookeeper-0").await.unwrap().uid();
    pods.delete("zookeeper-0", &DeleteParams::default()).await.unwrap();

    let out = ns.zkcli("zookeeper-1", &["get", "/foo"]);
    assert!(out.lines().any(|l| l == "bar"), "read through zookeeper-1: {out}");

    wait_for(Duration::from_secs(240), "zookeeper-0 to come back ready", || async {
        pods.get_opt("zookeeper-0").await.unwrap().is_some_and(|p| {
            p.uid() != old_uid
                && p.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
    })
    .await;
    let now_volume = volume_of("data-zookeeper-0").await;
    assert_eq!(now_volume, volume, "zookeeper-0 must come back with its own volume");
    let out = ns.zkcli("zookeeper-0", &["get", "/foo"]);
    assert!(out.lines().any(|l| l == "bar"), "read through zookeeper-0: {out}");
}

/// Invalid resources and changes are refused by the API server with a message naming the field;
/// the running ensemble is not touched.
#[tokio::test]
async fn invalid_resources_are_rejected_and_the_ensemble_is_untouched() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-invalid").await;

    let message = rejection(ns.create_cluster("zero", json!({"replicas": 0})).await);
    assert!(message.contains("spec.replicas"), "{message}");

    ns.create_cluster("zk", small(1)).await.unwrap();
    let before = ns.wait_available("zk", AVAILABLE).await;
    let generation = before.metadata.generation;

    for (patch, field) in [
        (json!({"replicas": -1}), "spec.replicas"),
        (json!({"replicas": 0}), "spec.replicas"),
        (json!({"replicas": 2}), "spec.replicas"),
        (json!({"config": {"dataDir": "/tmp/elsewhere"}}), "spec.config"),
        (json!({"config": {"server.9": "evil:2888:3888;2181"}}), "spec.config"),
        (
            json!({"storage": {"size": "128Mi"}}),
            "spec.storage.size cannot be decreased",
        ),
        (
            json!({"jvmOptions": ["-Dzookeeper.db.autocreate=true"]}),
            "spec.jvmOptions",
        ),
        (json!({"replicaz": 3}), "unknown field \"spec.replicaz\""),
        // Settings that would switch off a safety setting, as ZooKeeper turns unknown keys into
        // zookeeper.<key> system properties.
        (
            json!({"config": {"db.autocreate": "true"}}),
            "spec.config.db.autocreate is not a setting",
        ),
        (
            json!({"config": {"snapshot.trust.empty": "true"}}),
            "spec.config.snapshot.trust.empty is not a setting",
        ),
        (
            json!({"config": {"forceSync": "no"}}),
            "spec.config.forceSync is not a setting",
        ),
        (
            json!({"config": {"skipACL": "yes"}}),
            "spec.config.skipACL is not a setting",
        ),
        (
            json!({"config": {"DigestAuthenticationProvider.superDigest": "super:x"}}),
            "spec.config.DigestAuthenticationProvider.superDigest is not a setting",
        ),
        (
            json!({"config": {"admin.enableServer": "true"}}),
            "spec.config must not set",
        ),
        (
            json!({"config": {"tickTime": "2000\nskipACL=yes"}}),
            "spec.config.tickTime must be a whole number",
        ),
        (
            json!({"config": {"tickTime": " 2000"}}),
            "spec.config.tickTime must be a whole number",
        ),
        (
            json!({"config": {"4lw.commands.whitelist": "srvr,dump"}}),
            "spec.config.4lw.commands.whitelist must be",
        ),
        (
            json!({"jvmOptions": ["-agentlib:jdwp=transport=dt_socket,server=y,address=*:5005"]}),
            "spec.jvmOptions: -agentlib:jdwp",
        ),
        (
            json!({"jvmOptions": ["-javaagent:/tmp/a.jar"]}),
            "spec.jvmOptions: -javaagent",
        ),
        (json!({"jvmOptions": ["@/tmp/args"]}), "spec.jvmOptions: @/tmp/args"),
        (
            json!({"jvmOptions": ["-Xmx256m org.example.Main"]}),
            "spec.jvmOptions: -Xmx256m org.example.Main",
        ),
        (
            json!({"jvmOptions": ["-Dzookeeper.skipACL=yes"]}),
            "spec.jvmOptions: -Dzookeeper.skipACL",
        ),
    ] {
        let message = rejection(ns.patch_spec("zk", patch.clone()).await);
        assert!(
            message.contains(field),
            "{patch} was rejected with {message:?}, which does not name {field}"
        );
    }

    let after = ns.clusters().get("zk").await.unwrap();
    assert_eq!(
        after.metadata.generation, generation,
        "a rejected change must not reach the resource"
    );
    assert_eq!(after.spec, before.spec);
    let sts: Api<StatefulSet> = ns.api();
    assert_eq!(sts.get("zk").await.unwrap().spec.unwrap().replicas, Some(1));
    assert!(common::fully_available(&after));
}

/// The operator is killed while it creates a cluster; its successor finishes the job.
#[tokio::test]
async fn operator_restart_during_creation_converges() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-restart").await;
    ns.create_cluster("zk", small(3)).await.unwrap();
    let statefulsets: Api<StatefulSet> = ns.api();
    wait_for(Duration::from_secs(60), "the StatefulSet to be created", || async {
        statefulsets.get_opt("zk").await.unwrap().is_some()
    })
    .await;
    let operator_pods: Api<Pod> = Api::namespaced(client.clone(), "zkop-system");
    let selector = ListParams::default().labels("app.kubernetes.io/name=zookeeper-operator");
    let old: Vec<String> = operator_pods
        .list(&selector)
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.uid().unwrap())
        .collect();
    assert_eq!(old.len(), 2, "two operator replicas run");
    operator_pods
        .delete_collection(&DeleteParams::default(), &selector)
        .await
        .unwrap();

    let zk = ns.wait_available("zk", AVAILABLE).await;
    let new: Vec<String> = operator_pods
        .list(&selector)
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|p| p.uid())
        .collect();
    assert!(
        !new.iter().any(|uid| old.contains(uid)),
        "the operator pod was replaced"
    );

    let status = zk.status.unwrap();
    assert_eq!(status.ready_replicas, 3);
    assert_eq!(status.members.iter().filter(|m| m.role == "leader").count(), 1);
    let config_maps: Api<ConfigMap> = ns.api();
    let data = config_maps.get("zk-config").await.unwrap().data.unwrap();
    assert_eq!(
        data["ensemble-state"], "existing",
        "after its first quorum the ensemble is no longer new"
    );
    assert_eq!(data["members"].lines().count(), 3);
    let services: Api<Service> = ns.api();
    let headless = services.get("zk-headless").await.unwrap();
    assert_eq!(headless.spec.unwrap().publish_not_ready_addresses, Some(true));
    assert!(services.get_opt("zk-client").await.unwrap().is_some());
    let pdbs: Api<PodDisruptionBudget> = ns.api();
    assert!(pdbs.get_opt("zk").await.unwrap().is_some());
    let sts = statefulsets.get("zk").await.unwrap();
    assert_eq!(sts.owner_references()[0].kind, "ZooKeeperCluster");
    assert_eq!(statefulsets.list(&ListParams::default()).await.unwrap().items.len(), 1);
}

/// Deleting a cluster removes what it owns; its volumes stay or go as spec.storage.retention says.
#[tokio::test]
async fn deletion_follows_the_volume_retention_policy() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-delete").await;
    let mut keep = small(1);
    keep["storage"]["retention"] = json!({"whenDeleted": "Retain"});
    let mut drop = small(1);
    drop["storage"]["retention"] = json!({"whenDeleted": "Delete"});
    ns.create_cluster("keep", keep).await.unwrap();
    ns.create_cluster("drop", drop).await.unwrap();
    ns.wait_available("keep", AVAILABLE).await;
    ns.wait_available("drop", AVAILABLE).await;

    // The operator's series of both clusters, before: the check below can see them.
    let series = |name: &str| format!("namespace=\"e2e-delete\",cluster=\"{name}\"");
    let leader = common::operator_leader(&client).await.expect("an operator leader");
    let metrics = common::operator_metrics(&leader);
    for name in ["keep", "drop"] {
        assert!(
            metrics.contains(&series(name)),
            "no series of {name} before the deletion: {metrics}"
        );
    }
    // One in the foreground (the cluster stays, terminating, until what it owns is gone), one in
    // the background (kubectl's default: the cluster is gone at once and the garbage collector
    // removes what it owned afterwards, so no reconcile ever sees it terminating).
    ns.clusters().delete("keep", &DeleteParams::foreground()).await.unwrap();
    ns.clusters().delete("drop", &DeleteParams::background()).await.unwrap();
    let statefulsets: Api<StatefulSet> = ns.api();
    let services: Api<Service> = ns.api();
    let config_maps: Api<ConfigMap> = ns.api();
    let claims: Api<PersistentVolumeClaim> = ns.api();
    wait_for(
        Duration::from_secs(180),
        "owned objects and the Delete-policy volume to go",
        || async {
            statefulsets
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
                && services.list(&ListParams::default()).await.unwrap().items.is_empty()
                && config_maps.get_opt("keep-config").await.unwrap().is_none()
                && config_maps.get_opt("drop-config").await.unwrap().is_none()
                && claims.get_opt("data-drop-0").await.unwrap().is_none()
        },
    )
    .await;
    // A deleted cluster's series go: a BackupTooOld or stuck-member alert on them would fire
    // for a cluster that no longer exists.
    wait_for(
        Duration::from_secs(60),
        "the deleted clusters' series to go",
        || async {
            let leader = common::operator_leader(&client).await.unwrap_or_default();
            let metrics = common::operator_metrics(&leader);
            metrics.contains("zkop_reconciles_total") && !["keep", "drop"].iter().any(|n| metrics.contains(&series(n)))
        },
    )
    .await;
    let kept = claims.get_opt("data-keep-0").await.unwrap();
    assert!(
        kept.is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
        "Retain keeps the member's volume"
    );
}

/// A configuration change in the resource reaches every member's zoo.cfg, and the ensemble ends
/// Available with every member serving.
#[tokio::test]
async fn configuration_change_reaches_every_member() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-config").await;
    ns.create_cluster("zk", small(3)).await.unwrap();
    ns.wait_available("zk", AVAILABLE).await;
    let out = ns.zkcli("zk-0", &["create", "/before", "change"]);
    assert!(out.contains("Created /before"), "{out}");

    ns.patch_spec(
        "zk",
        json!({"config": {"tickTime": "2500", "maxSessionTimeout": "50000"}}),
    )
    .await
    .unwrap();
    wait_for(
        Duration::from_secs(420),
        "every member to run with tickTime=2500",
        || async {
            (0..3).all(|i| {
                let (ok, cfg) = ns.kubectl(&["exec", &format!("zk-{i}"), "--", "cat", "/data/conf/zoo.cfg"]);
                ok && cfg.lines().any(|l| l == "tickTime=2500") && cfg.lines().any(|l| l == "maxSessionTimeout=50000")
            })
        },
    )
    .await;
    ns.wait_available("zk", AVAILABLE).await;
    let clusters = ns.clusters();
    wait_for(
        Duration::from_secs(120),
        "the rollout to finish (Progressing False)",
        || async {
            clusters.get("zk").await.ok().is_some_and(|zk| {
                common::fully_available(&zk)
                    && condition(&zk, "Progressing").is_some_and(|c| c.status == "False")
                    && zk.status.as_ref().is_some_and(|s| s.operation.is_none())
            })
        },
    )
    .await;
    let out = ns.zkcli("zk-2", &["get", "/before"]);
    assert!(
        out.lines().any(|l| l == "change"),
        "data survives the rolling restart: {out}"
    );
    let (_, events) = ns.kubectl(&["get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("TemplateChanged"), "{events}");
}

/// A resource the operator cannot read (here a status someone else wrote, with a value out of
/// range for its type) does not stall the others: the operator keeps acting on another cluster,
/// says so in an event, and writes the illegible status anew.
#[tokio::test]
async fn an_illegible_resource_does_not_stall_the_others() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-illegible").await;
    ns.create_cluster("bad", small(1)).await.unwrap();
    ns.create_cluster("good", small(1)).await.unwrap();
    ns.wait_available("bad", AVAILABLE).await;
    ns.wait_available("good", AVAILABLE).await;

    let mark = ns.event_mark("bad").await;
    let (ok, out) = ns.kubectl(&[
        "patch",
        "zkc",
        "bad",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"readyReplicas": 5000000000}}"#,
    ]);
    assert!(ok, "the API server takes the status: {out}");
    let before = ns.pod_uids("good").await;
    ns.request_restart("good", "while-bad-is-illegible").await;
    let pods: Api<Pod> = ns.api();
    wait_for(Duration::from_secs(120), "good's member to be restarted", || async {
        pods.get_opt("good-0")
            .await
            .unwrap()
            .is_some_and(|p| before.get("good-0") != p.uid().as_ref())
    })
    .await;
    ns.wait_available("good", AVAILABLE).await;
    let note = ns
        .wait_for_event("bad", "StatusRewritten", &mark, Duration::from_secs(60))
        .await;
    assert!(note.contains("readyReplicas"), "{note}");
    let bad = ns.wait_available("bad", AVAILABLE).await;
    assert_eq!(bad.status.unwrap().ready_replicas, 1);
}

/// A cluster whose objects' names are taken by objects it did not make (here one named
/// `default`, as the namespace's default ServiceAccount is) takes nothing over: a condition and
/// a Warning event name the object, which is left as it was.
#[tokio::test]
async fn a_name_clash_is_reported_and_nothing_is_taken_over() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-name-clash").await;
    let accounts: Api<ServiceAccount> = ns.api();
    wait_for(
        Duration::from_secs(30),
        "the namespace's default ServiceAccount",
        || async { accounts.get_opt("default").await.unwrap().is_some() },
    )
    .await;
    let before = accounts.get("default").await.unwrap();
    let mark = ns.event_mark("default").await;
    ns.create_cluster("default", small(1)).await.unwrap();
    let clusters = ns.clusters();
    wait_for(Duration::from_secs(60), "the clash to be reported", || async {
        clusters.get("default").await.ok().is_some_and(|zk| {
            condition(&zk, "Reconciled").is_some_and(|c| {
                c.status == "False"
                    && c.reason == "NameClash"
                    && c.message.contains("ServiceAccount e2e-name-clash/default")
            })
        })
    })
    .await;
    let note = ns
        .wait_for_event("default", "NameClash", &mark, Duration::from_secs(30))
        .await;
    assert!(note.contains("ServiceAccount e2e-name-clash/default"), "{note}");
    let after = accounts.get("default").await.unwrap();
    assert!(
        after.metadata.owner_references.is_none(),
        "the ServiceAccount was not taken over"
    );
    assert_eq!(after.metadata.labels, before.metadata.labels);
    let statefulsets: Api<StatefulSet> = ns.api();
    assert!(
        statefulsets.get_opt("default").await.unwrap().is_none(),
        "nothing was created past the clash"
    );
}
