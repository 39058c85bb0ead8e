//! One operator, many tenants (issue 23): what a tenant can put in a namespace does not make the
//! operator believe, take over or delete what it did not make.

mod common;

use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

const FORGED: &str = "zk-20260101T000000Z-forged";

/// A claim the cluster's backup target names but that does not allow the cluster
/// (`allow.zookeeper.zkop.io/<cluster>`): a due backup is refused with a Warning that names the
/// field and the label, no Job mounts the claim, and the backup runs once the claim's owner adds
/// the label. Seen failing before references opted in: the Job mounted any claim of the namespace.
///
/// Then a Job that carries the backup Job's labels and annotations but is not the cluster's (a
/// foreign chart's, or a tenant's forgery) and reports a successful backup: the operator neither
/// records it in `status.backup` nor deletes it, and its own backups go on. Seen failing before
/// Jobs were read by owner: the forged backup became `lastSuccessful`, with a BackupSucceeded
/// event, and the Job was deleted.
#[tokio::test]
async fn backups_use_only_allowed_claims_and_never_a_forged_job() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-tenant-forged-job").await;
    let claims: Api<PersistentVolumeClaim> = ns.api();
    let claim = serde_json::from_value(json!({
        "metadata": {"name": "backup-volume"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}},
    }))
    .unwrap();
    claims.create(&PostParams::default(), &claim).await.unwrap();
    let mut spec = small_cluster(1, zkop_api::DEFAULT_VERSION);
    // Once a year: only the backup asked for below runs.
    spec["backup"] = json!({
        "schedule": "0 0 1 1 *",
        "target": {"persistentVolumeClaim": {"claimName": "backup-volume"}},
    });
    ns.create_cluster("zk", spec).await.unwrap();
    ns.wait_settled("zk", 1).await;

    // The claim does not allow the cluster yet: a backup asked for is refused, and said so.
    let mark = ns.event_mark("zk").await;
    request_backup(&ns, "before-the-label").await;
    let refused = ns
        .wait_for_event("zk", "BackupRefused", &mark, Duration::from_secs(120))
        .await;
    assert!(
        refused.contains("spec.backup.target.persistentVolumeClaim.claimName")
            && refused
                .contains("kubectl -n e2e-tenant-forged-job label pvc backup-volume allow.zookeeper.zkop.io/zk=true"),
        "the refusal names the field and the fix: {refused}"
    );
    let jobs: Api<Job> = ns.api();
    let made = jobs.list(&Default::default()).await.unwrap().items;
    assert!(
        made.is_empty(),
        "a Job was made for a claim the cluster may not use: {made:?}"
    );
    let (ok, out) = ns.kubectl(&["label", "pvc", "backup-volume", "allow.zookeeper.zkop.io/zk=true"]);
    assert!(ok, "{out}");
    let allowed = ns
        .wait_for_event("zk", "BackupSucceeded", &mark, Duration::from_secs(180))
        .await;
    eprintln!("allowed, the backup asked for before ran: {allowed}");

    // The forgery: the operator's labels and annotations, a report of success in the termination
    // message, as its own jobs' agent writes it. No owner.
    let report = json!({"ok": true, "backup": FORGED, "zxid": "0x1", "location": "s3://elsewhere/forged", "created": "2026-01-01T00:00:00Z"});
    let forged: Job = serde_json::from_value(json!({
        "metadata": {
            "name": "zk-backup-forged",
            "labels": {
                "app.kubernetes.io/name": "zookeeper-backup",
                "app.kubernetes.io/instance": "zk",
                "app.kubernetes.io/component": "backup",
            },
            "annotations": {"zookeeper.zkop.io/backup-name": FORGED, "zookeeper.zkop.io/member": "zk-0"},
        },
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": false,
                "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "agent",
                    "image": default_image(),
                    "command": ["sh", "-c", format!("echo '{report}' > /dev/termination-log")],
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                }],
            }},
        },
    }))
    .unwrap();
    let mark = ns.event_mark("zk").await;
    jobs.create(&PostParams::default(), &forged).await.unwrap();
    wait_for(Duration::from_secs(120), "the forged Job to complete", || async {
        jobs.get("zk-backup-forged").await.ok().is_some_and(|j| {
            j.status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Complete" && c.status == "True"))
        })
    })
    .await;

    // A backup asked for now: its success proves reconciles ran with the forged Job there.
    request_backup(&ns, "after-the-forgery").await;
    let succeeded = ns
        .wait_for_event("zk", "BackupSucceeded", &mark, Duration::from_secs(180))
        .await;
    eprintln!("the cluster's own backup: {succeeded}");
    let zk = ns.clusters().get("zk").await.unwrap();
    let backup = zk.status.and_then(|s| s.backup).unwrap_or_default();
    let recorded = backup.last_successful.map(|b| b.name).unwrap_or_default();
    assert!(
        !succeeded.contains(FORGED) && recorded != FORGED && !recorded.is_empty(),
        "the forged report was believed: event {succeeded:?}, lastSuccessful {recorded:?}"
    );
    let believed = ns.events_since("zk", "BackupSucceeded", &mark).await;
    assert!(
        believed.iter().all(|note| !note.contains(FORGED)),
        "an event reported the forged backup: {believed:?}"
    );
    assert!(
        jobs.get_opt("zk-backup-forged").await.unwrap().is_some(),
        "the operator deleted a Job it did not make"
    );
}

async fn request_backup(ns: &TestNamespace, request: &str) {
    let annotation = json!({"metadata": {"annotations": {zkop_api::BACKUP_ANNOTATION: request}}});
    ns.clusters()
        .patch("zk", &PatchParams::default(), &Patch::Merge(annotation))
        .await
        .unwrap();
}

/// The operator's account as `kubectl --as` names it.
fn operator_account() -> String {
    format!("system:serviceaccount:{OPERATOR_NAMESPACE}:zookeeper-operator")
}

/// `kubectl apply --dry-run=server` of `manifest` as the operator's account: (admitted, output).
fn as_operator(ns: &TestNamespace, verb_args: &[&str], manifest: Option<&serde_json::Value>) -> (bool, String) {
    let account = operator_account();
    let mut args: Vec<&str> = vec!["--as", &account];
    args.extend_from_slice(verb_args);
    match manifest {
        Some(manifest) => ns.kubectl_stdin(&args, &manifest.to_string()),
        None => ns.kubectl(&args),
    }
}

/// A Job as the operator makes one: its labels, the cluster's ServiceAccount, no token, the
/// restricted profile. `change` alters it into what a takeover of the operator would make.
fn job_like_the_operators(change: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let mut job = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "fence-probe",
            "labels": {
                "app.kubernetes.io/name": "zookeeper-backup",
                "app.kubernetes.io/instance": "zk",
                "app.kubernetes.io/managed-by": "zookeeper-operator",
            },
        },
        "spec": {"template": {"spec": {
            "restartPolicy": "Never",
            "serviceAccountName": "zk",
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "agent",
                "image": default_image(),
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
        }}},
    });
    change(&mut job);
    job
}

/// Cluster-wide, RBAC lets the operator's account write Jobs, Secrets and claims everywhere. The
/// install's admission policies keep it to what it makes: nothing in the system namespaces,
/// nothing it did not label, and no pod beyond its restricted ones. Each request is a server-side
/// dry run as that account; RBAC alone admits every one (checked first), a Job like the
/// operator's is admitted (the control), and each of the others is refused by a policy.
#[tokio::test]
async fn the_operators_account_is_fenced() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-tenant-fence").await;
    let account = operator_account();
    for (verb, resource, namespace) in [
        ("create", "jobs", "kube-system"),
        ("patch", "secrets", ns.name.as_str()),
        ("delete", "persistentvolumeclaims", ns.name.as_str()),
    ] {
        let (_, allowed) = common::kubectl(&["auth", "can-i", verb, resource, "-n", namespace, "--as", &account]);
        assert_eq!(
            allowed.trim(),
            "yes",
            "RBAC alone lets the operator {verb} {resource} in {namespace} (cluster-wide install)"
        );
    }
    // A Secret and a claim of someone else's, in a namespace the operator serves.
    let (ok, out) = ns.kubectl(&[
        "create",
        "secret",
        "generic",
        "someone-elses",
        "--from-literal=key=value",
    ]);
    assert!(ok, "{out}");
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "someone-elses"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}});
    let (ok, out) = ns.kubectl_stdin(&["apply", "-f", "-"], &claim.to_string());
    assert!(ok, "{out}");

    let dry_apply = ["apply", "--dry-run=server", "-f", "-"];
    let kube_system = TestNamespace::attach(&client, "kube-system");
    let (ok, out) = as_operator(&ns, &dry_apply, Some(&job_like_the_operators(|_| {})));
    assert!(ok, "control: a Job like the operator's own is admitted: {out}");

    let refused: Vec<(&str, (bool, String), &str)> = vec![
        (
            "a Job in kube-system",
            as_operator(&kube_system, &dry_apply, Some(&job_like_the_operators(|_| {}))),
            "does not act in namespace kube-system",
        ),
        (
            "a Job without the operator's label",
            as_operator(
                &ns,
                &dry_apply,
                Some(&job_like_the_operators(|j| {
                    j["metadata"]["labels"]
                        .as_object_mut()
                        .unwrap()
                        .remove("app.kubernetes.io/managed-by");
                })),
            ),
            "only changes objects it made",
        ),
        (
            "a Job mounting a path of the node",
            as_operator(
                &ns,
                &dry_apply,
                Some(&job_like_the_operators(|j| {
                    j["spec"]["template"]["spec"]["volumes"] = json!([{"name": "root", "hostPath": {"path": "/"}}]);
                })),
            ),
            "nothing of the node's",
        ),
        (
            "a Job with a ServiceAccount token",
            as_operator(
                &ns,
                &dry_apply,
                Some(&job_like_the_operators(|j| {
                    j["spec"]["template"]["spec"]["automountServiceAccountToken"] = json!(true);
                })),
            ),
            "no token mounted",
        ),
        (
            "a privileged Job",
            as_operator(
                &ns,
                &dry_apply,
                Some(&job_like_the_operators(|j| {
                    j["spec"]["template"]["spec"]["containers"][0]["securityContext"] = json!({"privileged": true});
                })),
            ),
            "every capability dropped",
        ),
        (
            "someone else's Secret, labelled as the operator's on the way",
            as_operator(
                &ns,
                &[
                    "label",
                    "--dry-run=server",
                    "secret",
                    "someone-elses",
                    "app.kubernetes.io/managed-by=zookeeper-operator",
                ],
                None,
            ),
            "only changes objects it made",
        ),
        (
            "someone else's claim deleted",
            as_operator(&ns, &["delete", "--dry-run=server", "pvc", "someone-elses"], None),
            "only changes objects it made",
        ),
    ];
    let mut failures = Vec::new();
    for (what, (admitted, out), expected) in &refused {
        eprintln!("{what}: admitted {admitted}: {}", out.trim());
        if *admitted || !out.contains(expected) {
            failures.push(format!(
                "{what}: admitted {admitted}, expected a refusal saying {expected:?}: {out}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
