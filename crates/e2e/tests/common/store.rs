//! The object store the backup tests write to: crates/s3-store (S3 over TLS, SigV4 signatures
//! checked) as a Deployment and Service in the test's namespace, its certificate signed by a CA
//! made here, and the credentials and CA Secrets the clusters name.

use super::{wait_for, TestNamespace};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

pub const STORE: &str = "s3-store";
pub const BUCKET: &str = "zk-backups";

/// The object store: a Deployment and Service in the test's namespace, its certificate signed by
/// a CA made here; the credentials and CA Secrets the clusters name, which allow `clusters` to
/// use them (`vocabulary::references`). Returns the endpoint.
pub async fn start_store(ns: &TestNamespace, clusters: &[&str]) -> String {
    let host = format!("{STORE}.{}.svc", ns.name);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "e2e backup store CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![host.clone(), format!("{host}.cluster.local")]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let secrets: Api<Secret> = ns.api();
    let allowed = super::allowing(clusters);
    let secret = |name: &str, data: serde_json::Value| -> Secret {
        let labels = if name.starts_with("backup-") {
            allowed.clone()
        } else {
            json!({})
        };
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "stringData": data})).unwrap()
    };
    for s in [
        secret(
            "store-tls",
            json!({"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}),
        ),
        secret(
            "store-keys",
            json!({"S3_ACCESS_KEY": "e2e-access", "S3_SECRET_KEY": "e2e-secret-key-1234"}),
        ),
        secret(
            "backup-credentials",
            json!({"accessKeyId": "e2e-access", "secretAccessKey": "e2e-secret-key-1234"}),
        ),
        secret("backup-ca", json!({"ca.crt": ca.pem()})),
    ] {
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let manifest = json!({
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": STORE}, "spec": {
                "replicas": 1, "selector": {"matchLabels": {"app": STORE}},
                "template": {"metadata": {"labels": {"app": STORE}}, "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": STORE, "image": "zkop/s3-store:e2e", "imagePullPolicy": "Never",
                        "args": ["--root=/data", format!("--bucket={BUCKET}"), "--listen=0.0.0.0:9000"],
                        "envFrom": [{"secretRef": {"name": "store-keys"}}],
                        "ports": [{"containerPort": 9000}],
                        "readinessProbe": {"tcpSocket": {"port": 9000}, "periodSeconds": 1},
                        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tls", "mountPath": "/tls"}],
                    }],
                    "volumes": [{"name": "data", "emptyDir": {}}, {"name": "tls", "secret": {"secretName": "store-tls"}}],
                }},
            }},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": STORE}, "spec": {
                "selector": {"app": STORE}, "ports": [{"port": 443, "targetPort": 9000}],
            }},
        ],
    });
    let (ok, out) = ns.kubectl_stdin(&["apply", "-f", "-"], &manifest.to_string());
    assert!(ok, "{out}");
    scale_store(ns, 1).await;
    format!("https://{host}")
}

pub async fn scale_store(ns: &TestNamespace, replicas: i32) {
    let deployments: Api<Deployment> = ns.api();
    deployments
        .patch(
            STORE,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = ns.api();
    wait_for(
        Duration::from_secs(120),
        &format!("the store at {replicas} ready pods"),
        || async {
            let listed = pods
                .list(&ListParams::default().labels(&format!("app={STORE}")))
                .await
                .unwrap()
                .items;
            let ready = listed
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            ready == replicas as usize && listed.len() == replicas as usize
        },
    )
    .await;
}

/// A shell command in the store's pod (its files are the objects: `<root>/<bucket>/<key>`).
pub fn in_store(ns: &TestNamespace, script: &str) -> String {
    let (ok, out) = ns.kubectl(&["exec", &format!("deploy/{STORE}"), "--", "sh", "-c", script]);
    assert!(ok, "{script}: {out}");
    out
}
