//! What is reachable, tried from a pod in another namespace and one in the cluster's own: the
//! NetworkPolicy the operator makes, enforced by the local cluster's kube-router, and the
//! AdminServer that no longer listens.

mod common;

use common::{client, wait_for, TestNamespace};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::time::Duration;

/// A pod that can open TCP connections (the ZooKeeper image has bash), allowed under the
/// restricted Pod Security level.
async fn prober(ns: &TestNamespace) -> String {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "prober", "labels": {"app": "prober"}},
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "prober", "image": common::default_image(), "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }))
    .unwrap();
    let pods: Api<Pod> = ns.api();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(Duration::from_secs(60), "the prober to run", || async {
        pods.get("prober")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase)
            .as_deref()
            == Some("Running")
    })
    .await;
    "prober".into()
}

/// Whether a TCP connection from `pod` to `address:port` opens (a refused or timed-out one
/// does not).
fn opens(ns: &TestNamespace, pod: &str, address: &str, port: u16) -> bool {
    let script = format!("timeout 3 bash -c 'echo > /dev/tcp/{address}/{port}' 2>/dev/null && echo OPEN || echo SHUT");
    let (_, out) = ns.kubectl(&["exec", pod, "--", "bash", "-c", &script]);
    out.contains("OPEN")
}

/// From another namespace nothing opens; from the cluster's namespace the client port does, the
/// leader's quorum port and the metrics port do not, until the spec names the scraper; the
/// AdminServer listens nowhere. Members still reach each other.
#[tokio::test]
async fn only_what_the_spec_allows_is_reachable() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-security").await;
    let other = TestNamespace::new(&client, "e2e-security-other").await;
    let mut spec = common::small_cluster(3, zkop_api::DEFAULT_VERSION);
    spec["access"] = json!({"clients": [{"podSelector": {}}]});
    ns.create_cluster("zk", spec).await.unwrap();
    let zk = ns.wait_settled("zk", 3).await;
    let leader = zk.status.unwrap().leader.unwrap();
    let leader_ip = ns.pod_ip(&leader).await;
    let follower = (0..3).map(|i| format!("zk-{i}")).find(|p| *p != leader).unwrap();
    let inside = prober(&ns).await;
    let outside = prober(&other).await;

    // Members talk to each other (the ensemble is Available); the proof that the rules are
    // enforced at all is a port refused to a pod the policy does not name.
    assert!(
        opens(&ns, &follower, &leader_ip, 2888),
        "a member reaches the leader's quorum port"
    );
    assert!(
        opens(&ns, &inside, &leader_ip, 2182),
        "the namespace's pods reach the TLS client port"
    );
    assert!(
        !opens(&ns, &inside, &leader_ip, 2181),
        "plaintext clients are served on 127.0.0.1 only"
    );
    assert!(
        !opens(&ns, &inside, &leader_ip, 2888),
        "a non-member must not reach the quorum port"
    );
    assert!(
        !opens(&ns, &inside, &leader_ip, 3888),
        "a non-member must not reach the election port"
    );
    assert!(
        !opens(&ns, &inside, &leader_ip, 7000),
        "metrics are closed unless the spec names a scraper"
    );
    for port in [2181, 2182, 2888, 3888, 7000] {
        assert!(
            !opens(&other, &outside, &leader_ip, port),
            "another namespace must not reach port {port}"
        );
    }
    for pod in [&inside, &follower] {
        assert!(!opens(&ns, pod, &leader_ip, 8080), "the AdminServer must not listen");
    }
    let (_, listening) = ns.kubectl(&["exec", &leader, "--", "bash", "-c", "cat /proc/net/tcp /proc/net/tcp6"]);
    assert!(
        !listening.to_uppercase().contains(":1F90 "),
        "nothing listens on 8080:\n{listening}"
    );

    // Naming the other namespace as a scraper opens the metrics port to it, and only that.
    ns.patch_spec(
        "zk",
        json!({"access": {"clients": [{"podSelector": {}}], "metrics": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": other.name}}}]}}),
    )
    .await
    .unwrap();
    wait_for(
        Duration::from_secs(60),
        "the scraper to reach the metrics port",
        || async { opens(&other, &outside, &leader_ip, 7000) },
    )
    .await;
    assert!(!opens(&other, &outside, &leader_ip, 2182), "a scraper is not a client");
}

/// A plaintext session inside a member that adds a made-up digest and reads /foo (ZooKeeper's
/// digest provider takes any user and password). Both commands in one session, from stdin.
fn made_up_digest_session(ns: &TestNamespace) -> String {
    let (_, out) = ns.kubectl(&[
        "exec",
        "zk-1",
        "--",
        "sh",
        "-c",
        "printf 'addauth digest anyone:anything\\nget /foo\\nquit\\n' | ZK_TLS_DIR=/nonexistent /opt/zookeeper/bin/zkCli.sh -server 127.0.0.1:2181",
    ]);
    out
}

fn reads_bar(out: &str) -> bool {
    out.lines()
        .any(|l| l.trim() == "bar" || (l.trim_end().ends_with("] bar")))
}

/// Over TLS: a client without a certificate is refused at the handshake; one with the
/// credentials the operator issued connects as `x509:CN=<name>`; with enforceAuthentication an
/// anonymous session (plaintext, inside the pod) is refused, also one that added a made-up
/// digest. The seed's zkCli works throughout.
#[tokio::test]
async fn only_authenticated_clients_get_a_session() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "e2e-authentication").await;
    ns.create_cluster("zk", common::small_cluster(3, zkop_api::DEFAULT_VERSION))
        .await
        .unwrap();
    ns.wait_settled("zk", 3).await;
    let endpoint = ns.endpoint("zk").await;
    assert!(endpoint.tls.is_some(), "TLS is on by default");

    let zk = common::workload::connect(&endpoint).await;
    let users = zk.list_auth_users().await.unwrap();
    assert!(
        users.iter().any(|u| u.scheme() == "x509" && u.user() == "CN=e2e"),
        "the issued credentials authenticate: {users:?}"
    );
    drop(zk);

    let secrets: Api<k8s_openapi::api::core::v1::Secret> = ns.api();
    let data = secrets.get("zk-client-e2e").await.unwrap().data.unwrap();
    let ca = String::from_utf8_lossy(&data["ca.crt"].0).into_owned();
    // SAFETY (of the test's trust): the authority is verified, only the name is not.
    let anonymous = unsafe {
        zookeeper_client::TlsOptions::new()
            .with_pem_ca(&ca)
            .unwrap()
            .with_no_hostname_verification()
    };
    let attempt = zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .with_tls(anonymous)
        .with_fail_eagerly()
        .secure_connect(&endpoint.connect);
    let refused = tokio::time::timeout(Duration::from_secs(20), attempt).await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a TLS client without a certificate must be refused"
    );

    let out = ns.zkcli("zk-0", &["create", "/foo", "bar"]);
    assert!(out.contains("Created /foo"), "the seed's zkCli works over TLS: {out}");
    // The control: before enforcement the same session reads /foo.
    let digest = made_up_digest_session(&ns);
    assert!(reads_bar(&digest), "without enforcement it reads /foo:\n{digest}");

    ns.patch_spec("zk", json!({"tls": {"enforceAuthentication": true}}))
        .await
        .unwrap();
    ns.wait_settled("zk", 3).await;
    let (_, anonymous) = ns.kubectl(&[
        "exec",
        "zk-1",
        "--",
        "env",
        "ZK_TLS_DIR=/nonexistent",
        "/opt/zookeeper/bin/zkCli.sh",
        "-server",
        "127.0.0.1:2181",
        "get",
        "/foo",
    ]);
    assert!(
        !anonymous.lines().any(|l| l == "bar"),
        "an anonymous session must be refused:\n{anonymous}"
    );
    let digest = made_up_digest_session(&ns);
    assert!(
        !reads_bar(&digest),
        "a session with a made-up digest must be refused too:\n{digest}"
    );
    let out = ns.zkcli("zk-1", &["get", "/foo"]);
    assert!(out.lines().any(|l| l == "bar"), "an authenticated one works: {out}");
}
