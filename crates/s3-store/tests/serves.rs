//! The test object store (the e2e tests' S3 target) as the backups meet it: zk-agent's S3 client
//! stores, lists and reads back objects over TLS with signed requests, and a request signed with
//! another secret is refused.

use bytes::Bytes;
use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use zk_agent::backup::store::{Store, Target};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_requests_are_served_over_tls_and_a_wrong_secret_is_refused() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = std::env::temp_dir().join(format!("s3-store-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_s3-store"))
            .args(["--listen", &address, "--bucket", "backups"])
            .arg("--root")
            .arg(dir.join("data"))
            .arg("--cert")
            .arg(dir.join("tls.crt"))
            .arg("--key")
            .arg(dir.join("tls.key"))
            .env("S3_ACCESS_KEY", "test-access-key")
            .env("S3_SECRET_KEY", "test-secret-key")
            .spawn()
            .expect("starting s3-store"),
    );
    let started = Instant::now();
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "s3-store does not listen on {address}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let target = Target::S3 {
        bucket: "backups".into(),
        prefix: "it".into(),
        endpoint: Some(format!("https://{address}")),
        region: "us-east-1".into(),
        ca_file: Some(dir.join("tls.crt")),
    };

    std::env::set_var("AWS_ACCESS_KEY_ID", "test-access-key");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test-secret-key");
    let store = Store::open(&target).unwrap();
    store
        .put(
            "zk-20261203T000000Z",
            "manifest.json",
            Bytes::from_static(b"{\"zxid\":\"0x1\"}"),
        )
        .await
        .unwrap();
    let read = store.get("zk-20261203T000000Z", "manifest.json").await.unwrap();
    assert_eq!(read.as_deref(), Some(&b"{\"zxid\":\"0x1\"}"[..]));
    assert!(
        store.list().await.unwrap().contains_key("zk-20261203T000000Z"),
        "the backup is listed"
    );
    assert!(
        dir.join("data/backups/it/zk-20261203T000000Z/manifest.json").is_file(),
        "kept as a file under the bucket's directory"
    );

    std::env::set_var("AWS_SECRET_ACCESS_KEY", "another-secret");
    let forged = Store::open(&target).unwrap();
    let refused = forged
        .put("zk-20261203T000001Z", "manifest.json", Bytes::from_static(b"{}"))
        .await;
    assert!(refused.is_err(), "a request signed with another secret was accepted");
    assert!(!dir.join("data/backups/it/zk-20261203T000001Z").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
