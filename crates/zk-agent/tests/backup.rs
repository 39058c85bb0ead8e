//! Backups of a real ZooKeeper ensemble's data directory, restored into a new ensemble (no
//! Kubernetes): what the backup job and the restore step do in the pods, on real files.

mod common;

use common::{create, Ensemble};
use std::process::Output;
use std::time::Duration;
use zookeeper_client::{Acls, CreateMode};

const READY: Duration = Duration::from_secs(90);

fn run(zk: &Ensemble, member: u32, args: &[&str], ensemble_state: &str) -> Output {
    let output = zk
        .agent(member, args[0], ensemble_state)
        .args(&args[1..])
        .env("ZOOKEEPER_VERSION", "3.9.5")
        .env("ZK_REPORT_FILE", zk.root.join("report.json"))
        .output()
        .expect("running zk-agent");
    eprintln!(
        "zk-agent {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn report(output: &Output) -> zk_agent::backup::JobReport {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a JSON report on the last line")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_restores_into_a_new_ensemble_up_to_its_zxid() {
    let store = std::env::temp_dir().join("zk-agent-it-backup-store");
    let _ = std::fs::remove_dir_all(&store);
    let target = store.to_str().unwrap().to_string();

    let mut old = Ensemble::new("backup-old", 3, 21700);
    // Snapshots and new logs every few dozen transactions: the backup must pick a snapshot taken
    // under writes (fuzzy) and chain the logs after it.
    old.overrides = Some("snapCount=40\n".into());
    old.start_all("new");
    old.wait_ready(&[0, 1, 2], READY);
    let client = common::client(&old.connect_string(&[0, 1, 2])).await;
    create(&client, "/app", "root").await;
    for i in 0..300 {
        create(&client, &format!("/app/n{i:04}"), &format!("value-{i}")).await;
    }
    let read_only = CreateMode::Persistent.with_acls(Acls::anyone_read());
    client.create("/app/locked", b"secret", &read_only).await.unwrap();
    client.sync("/").await.unwrap();
    let committed = zk_agent::probe::srvr(&old.client_address(1), Duration::from_secs(2))
        .unwrap()
        .zxid
        .unwrap();
    // Written after the zxid the backup is cut at: must not come back.
    for i in 0..20 {
        create(&client, &format!("/app/late{i}"), "late").await;
    }
    // ZooKeeper writes its snapshots in a thread of their own: under load the member read
    // below may not have written one beyond the empty first yet (seen in make test).
    let version_2 = old.data_dir(1).join("zookeeper/version-2");
    let wait = std::time::Instant::now();
    while !std::fs::read_dir(&version_2).unwrap().any(|e| {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        name.starts_with("snapshot.") && name != "snapshot.0"
    }) {
        assert!(wait.elapsed() < READY, "member 1 wrote no snapshot under writes");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let name = "backup-old-20261201T120000Z";
    let committed_hex = format!("0x{committed:x}");
    let out = run(
        &old,
        1,
        &[
            "backup",
            "--target",
            &target,
            "--name",
            name,
            "--namespace",
            "it",
            "--cluster",
            "backup-old",
            "--member",
            "zk-1",
            "--server-id",
            "2",
            "--committed-zxid",
            &committed_hex,
        ],
        "existing",
    );
    assert!(out.status.success());
    let backed_up = report(&out);
    assert!(backed_up.ok, "{backed_up:?}");
    assert_eq!(backed_up.zxid.as_deref(), Some(committed_hex.as_str()));
    let manifest: zk_agent::backup::Manifest =
        serde_json::from_slice(&std::fs::read(store.join(name).join("manifest.json")).unwrap()).unwrap();
    assert_ne!(
        manifest.snapshot_zxid, "0x0",
        "a snapshot taken under writes, not the empty first one"
    );
    assert!(manifest.nodes > 100, "{manifest:?}");
    drop(client);
    drop(old);

    // Refused: a missing backup, and one with a byte flipped.
    let mut new = Ensemble::new("backup-new", 3, 21800);
    let out = run(
        &new,
        0,
        &[
            "restore",
            "--target",
            &target,
            "--name",
            "nothing-here",
            "--verify-only",
        ],
        "new",
    );
    assert!(!out.status.success());
    assert!(report(&out).message.contains("not found"), "{:?}", report(&out));
    let corrupt = store.join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    let corrupt_name = "backup-old-20261201T130000Z";
    std::fs::create_dir_all(corrupt.join(corrupt_name)).unwrap();
    for entry in std::fs::read_dir(store.join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), corrupt.join(corrupt_name).join(entry.file_name())).unwrap();
    }
    let victim = std::fs::read_dir(corrupt.join(corrupt_name))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("snapshot."))
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&victim, bytes).unwrap();
    let out = run(
        &new,
        0,
        &[
            "restore",
            "--target",
            corrupt.to_str().unwrap(),
            "--name",
            corrupt_name,
            "--verify-only",
        ],
        "new",
    );
    assert!(!out.status.success());
    assert!(report(&out).message.contains("corrupt"), "{:?}", report(&out));

    // Corrupt inside the snapshot, with the manifest's sizes and SHA-256 sums made to match:
    // only the snapshot's own checksums (ZooKeeper's seals) can tell.
    let inside_name = "backup-old-20261201T140000Z";
    std::fs::create_dir_all(corrupt.join(inside_name)).unwrap();
    for entry in std::fs::read_dir(store.join(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), corrupt.join(inside_name).join(entry.file_name())).unwrap();
    }
    let manifest_path = corrupt.join(inside_name).join("manifest.json");
    let mut forged: zk_agent::backup::Manifest =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    forged.name = inside_name.into();
    let entry = forged
        .files
        .iter_mut()
        .find(|f| f.name.starts_with("snapshot."))
        .unwrap();
    let object = corrupt.join(inside_name).join(&entry.object);
    let mut snapshot = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(&object).unwrap()),
        &mut snapshot,
    )
    .unwrap();
    let middle = snapshot.len() / 2;
    snapshot[middle] ^= 0x01;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &snapshot).unwrap();
    let compressed = encoder.finish().unwrap();
    let sha256 = |bytes: &[u8]| {
        use sha2::Digest;
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    entry.size = snapshot.len() as u64;
    entry.sha256 = sha256(&snapshot);
    entry.compressed_size = compressed.len() as u64;
    entry.compressed_sha256 = sha256(&compressed);
    std::fs::write(&object, &compressed).unwrap();
    std::fs::write(&manifest_path, serde_json::to_vec(&forged).unwrap()).unwrap();
    let out = run(
        &new,
        0,
        &[
            "restore",
            "--target",
            corrupt.to_str().unwrap(),
            "--name",
            inside_name,
            "--verify-only",
        ],
        "new",
    );
    assert!(!out.status.success());
    // Caught by reading the snapshot itself (a seal's checksum, or a length the flipped byte
    // made impossible), not by the manifest's sums, which match.
    let message = report(&out).message;
    assert!(
        message.contains("snapshot.") && !message.contains("SHA-256"),
        "the snapshot's own format caught it: {message}"
    );

    // Up to a zxid within the backup's logs, and not outside them.
    let snapshot_zxid = zk_agent::backup::parse_zxid(&manifest.snapshot_zxid).unwrap();
    let middle = format!("0x{:x}", (snapshot_zxid + committed).div_ceil(2));
    let out = run(
        &new,
        0,
        &[
            "restore",
            "--target",
            &target,
            "--name",
            name,
            "--verify-only",
            "--up-to-zxid",
            &middle,
        ],
        "new",
    );
    assert_eq!(
        report(&out).zxid.as_deref(),
        Some(middle.as_str()),
        "{:?}",
        report(&out)
    );
    let beyond = format!("0x{:x}", committed + 1);
    let out = run(
        &new,
        0,
        &[
            "restore",
            "--target",
            &target,
            "--name",
            name,
            "--verify-only",
            "--up-to-zxid",
            &beyond,
        ],
        "new",
    );
    assert!(
        !out.status.success() && report(&out).message.contains("outside it"),
        "{:?}",
        report(&out)
    );

    for i in 0..3 {
        let out = run(&new, i, &["restore", "--target", &target, "--name", name], "new");
        assert!(out.status.success() && report(&out).ok);
    }
    // A member that has data is never restored over.
    let out = run(&new, 0, &["restore", "--target", &target, "--name", name], "new");
    assert!(report(&out).message.contains("has data already"));
    new.start_all("new");
    new.wait_ready(&[0, 1, 2], READY);
    let client = common::client(&new.connect_string(&[0, 1, 2])).await;
    client.sync("/").await.unwrap();
    let children = client.list_children("/app").await.unwrap();
    assert_eq!(
        children.len(),
        301,
        "300 nodes and /app/locked, none written after the backup's zxid"
    );
    for i in [0, 150, 299] {
        let (data, _) = client.get_data(&format!("/app/n{i:04}")).await.unwrap();
        assert_eq!(data, format!("value-{i}").as_bytes());
    }
    let (acl, _) = client.get_acl("/app/locked").await.unwrap();
    assert_eq!(acl.as_slice(), &Acls::anyone_read() as &[zookeeper_client::Acl]);
    assert!(
        client.set_data("/app/locked", b"x", None).await.is_err(),
        "the ACL is restored"
    );
    create(&client, "/app/written-after-restore", "ok").await;
    for i in 0..3 {
        let log = new.log(i);
        assert!(
            !log.contains("initialize marker written"),
            "restored members start as an existing ensemble:\n{log}"
        );
    }
    // The configuration node names the new ensemble's members, not the old one's.
    let (config, _) = client.get_config().await.unwrap();
    let config = String::from_utf8(config).unwrap();
    assert!(config.contains(&format!(":{}:", 21800 + 10)), "{config}");
}

/// `digest.enabled: "false"` (an allowed setting): ZooKeeper then writes no digest section
/// after the data tree, only the last processed zxid. Every snapshot a real member writes so
/// must read whole, with its nodes and that zxid.
#[tokio::test(flavor = "multi_thread")]
async fn snapshots_without_a_digest_are_read() {
    let mut zk = Ensemble::new("nodigest", 1, 21900);
    zk.overrides = Some("snapCount=20\ndigest.enabled=false\n".into());
    zk.start_all("new");
    zk.wait_ready(&[0], READY);
    let client = common::client(&zk.connect_string(&[0])).await;
    create(&client, "/app", "root").await;
    for i in 0..60 {
        create(&client, &format!("/app/n{i:04}"), "v").await;
    }
    let dir = zk.data_dir(0).join("zookeeper/version-2");
    let wait = std::time::Instant::now();
    let snapshots = loop {
        let snapshots: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("snapshot."))
            .collect();
        if snapshots.len() >= 2 || wait.elapsed() > Duration::from_secs(30) {
            break snapshots;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(snapshots.len() >= 2, "snapshots taken under writes: {snapshots:?}");
    let mut most = 0;
    for path in &snapshots {
        let bytes = std::fs::read(path).unwrap();
        let mut nodes = 0;
        let summary = zk_agent::backup::format::read_snapshot(&bytes, |_| nodes += 1)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(summary.last_processed_zxid.is_some(), "{}: {summary:?}", path.display());
        most = most.max(nodes);
    }
    assert!(most > 20, "the later snapshots hold the written nodes ({most})");
}

/// Runs an agent command like [`run`] and returns the peak memory (resident set, KiB) of its
/// process, as the kernel accounted it.
// The child is reaped by wait4 (which also gives its peak memory), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn run_measured(zk: &Ensemble, member: u32, args: &[&str], ensemble_state: &str) -> (Output, u64) {
    use std::os::unix::process::ExitStatusExt;
    let stdout = zk.root.join("measured.stdout");
    let stderr = zk.root.join("measured.stderr");
    let child = zk
        .agent(member, args[0], ensemble_state)
        .args(&args[1..])
        .env("ZOOKEEPER_VERSION", "3.9.5")
        .env("ZK_REPORT_FILE", zk.root.join("report.json"))
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("running zk-agent");
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in; the pid is our own child, not yet waited.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(waited, child.id() as i32, "wait4: {}", std::io::Error::last_os_error());
    let output = Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout: std::fs::read(&stdout).unwrap(),
        stderr: std::fs::read(&stderr).unwrap(),
    };
    eprintln!(
        "zk-agent {}: peak {} KiB\n{}\n{}",
        args.join(" "),
        usage.ru_maxrss,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output, usage.ru_maxrss as u64)
}

/// Incompressible bytes (xorshift), so that the backup's gzip copy is as large as the snapshot.
fn noise(seed: u64, length: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The backup and restore jobs run with a memory limit (1 GiB), and a member's snapshot can be
/// larger: both must read, compress, upload, download and check a file in pieces. A snapshot of
/// about 150 MB of incompressible data is backed up, checked and restored by processes that
/// never hold more than 64 MiB; the restored member serves it.
#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_larger_than_the_agents_memory_is_backed_up_and_restored() {
    const NODES: usize = 150;
    const NODE_BYTES: usize = 1_000_000;
    const PEAK_KIB: u64 = 64 * 1024;
    let store = std::env::temp_dir().join("zk-agent-it-big-store");
    let _ = std::fs::remove_dir_all(&store);
    let target = store.to_str().unwrap().to_string();

    let mut old = Ensemble::new("big-old", 1, 22300);
    old.jvm_opts = Some("-Xmx768m -Xms256m -XX:+UseSerialGC -Xss512k".into());
    old.start_all("new");
    old.wait_ready(&[0], READY);
    let client = common::client(&old.connect_string(&[0])).await;
    create(&client, "/big", "").await;
    let open = CreateMode::Persistent.with_acls(Acls::anyone_all());
    for i in 0..NODES {
        client
            .create(&format!("/big/n{i:03}"), &noise(i as u64, NODE_BYTES), &open)
            .await
            .unwrap_or_else(|e| panic!("creating /big/n{i:03}: {e}"));
    }
    drop(client);
    // A member that starts on its logs writes a snapshot of everything before it serves.
    old.kill(0);
    old.start(0, "existing");
    old.wait_ready(&[0], READY);
    let version_2 = old.data_dir(0).join("zookeeper/version-2");
    let largest = std::fs::read_dir(&version_2)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("snapshot."))
        .map(|e| e.metadata().unwrap().len())
        .max()
        .unwrap_or(0);
    assert!(
        largest > (NODES * NODE_BYTES) as u64,
        "a snapshot holding every node ({largest} bytes)"
    );

    let name = "big-old-20261204T120000Z";
    let (out, backup_peak) = run_measured(
        &old,
        0,
        &[
            "backup",
            "--target",
            &target,
            "--name",
            name,
            "--namespace",
            "it",
            "--cluster",
            "big-old",
            "--member",
            "zk-0",
            "--server-id",
            "1",
        ],
        "existing",
    );
    assert!(out.status.success() && report(&out).ok, "{:?}", report(&out));
    let manifest: zk_agent::backup::Manifest =
        serde_json::from_slice(&std::fs::read(store.join(name).join("manifest.json")).unwrap()).unwrap();
    let snapshot = manifest.files.iter().find(|f| f.name.starts_with("snapshot.")).unwrap();
    assert!(snapshot.size > (NODES * NODE_BYTES) as u64, "{snapshot:?}");
    assert!(
        snapshot.compressed_size > snapshot.size / 2,
        "incompressible: {snapshot:?}"
    );
    drop(old);

    let mut new = Ensemble::new("big-new", 1, 22400);
    new.jvm_opts = Some("-Xmx768m -Xms256m -XX:+UseSerialGC -Xss512k".into());
    let (out, check_peak) = run_measured(
        &new,
        0,
        &["restore", "--target", &target, "--name", name, "--verify-only"],
        "new",
    );
    assert!(out.status.success() && report(&out).ok, "{:?}", report(&out));
    let (out, restore_peak) = run_measured(&new, 0, &["restore", "--target", &target, "--name", name], "new");
    assert!(out.status.success() && report(&out).ok, "{:?}", report(&out));
    eprintln!(
        "snapshot {} MiB ({} MiB compressed): peak memory of the backup {} MiB, the check {} MiB, the restore {} MiB",
        snapshot.size >> 20,
        snapshot.compressed_size >> 20,
        backup_peak >> 10,
        check_peak >> 10,
        restore_peak >> 10
    );
    for (what, peak) in [
        ("backup", backup_peak),
        ("check", check_peak),
        ("restore", restore_peak),
    ] {
        assert!(
            peak < PEAK_KIB && peak * 1024 < snapshot.size / 2,
            "the {what} held {} MiB for a snapshot of {} MiB",
            peak >> 10,
            snapshot.size >> 20
        );
    }

    new.start_all("new");
    new.wait_ready(&[0], READY);
    let client = common::client(&new.connect_string(&[0])).await;
    assert_eq!(client.list_children("/big").await.unwrap().len(), NODES);
    for i in [0, NODES / 2, NODES - 1] {
        let (data, _) = client.get_data(&format!("/big/n{i:03}")).await.unwrap();
        assert!(
            data == noise(i as u64, NODE_BYTES),
            "/big/n{i:03} restored byte for byte"
        );
    }
}
