//! Client write stalls while backups run, side by side with no backup running, in one run on
//! the local cluster: a 3-member ensemble preloaded with znodes, the workload (sequential
//! writes through a NodePort, as in the day-2 benchmark) for equal windows, alternately with
//! nothing else happening and with on-demand backups taken back to back to the local S3 store.
//!
//! Rerun: make bench-backup   (cargo bench --profile dev --workspace --bench backup -- [preloaded znodes, default 20000])

#[path = "../tests/common/mod.rs"]
mod common;

use common::store::{start_store, BUCKET};
use common::workload::{self, Workload};
use common::{client, TestNamespace};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::time::{Duration, Instant};
use zookeeper_client::{Acls, CreateMode};

const WINDOW: Duration = Duration::from_secs(30);
const ROUNDS: usize = 3;

struct Row {
    phase: &'static str,
    window: Duration,
    acked: usize,
    stall: Duration,
    stalls_over_250ms: usize,
    backups: Vec<(f64, u64)>,
    lost: usize,
}

#[tokio::main]
async fn main() {
    let preload: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(20_000);
    let client = client().await;
    let ns = TestNamespace::new(&client, "bench-backup").await;
    let endpoint = start_store(&ns, &["zk"]).await;
    let mut spec = common::small_cluster(3, zkop_api::DEFAULT_VERSION);
    spec["backup"] = json!({
        "retention": {"count": 3},
        "target": {"s3": {"endpoint": endpoint, "bucket": BUCKET, "credentialsSecret": "backup-credentials", "caSecret": "backup-ca"}},
    });
    ns.create_cluster("zk", spec).await.unwrap();
    ns.wait_settled("zk", 3).await;
    let zk_endpoint = ns.endpoint("zk").await;

    let started = Instant::now();
    let loader = workload::connect(&zk_endpoint).await;
    let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let _ = loader.create("/preload", b"", &options).await;
    let value = vec![b'x'; 1024];
    for chunk in (0..preload).collect::<Vec<_>>().chunks(200) {
        let writes = chunk.iter().map(|i| {
            let path = format!("/preload/n{i:06}");
            let (value, options) = (&value, &options);
            let loader = &loader;
            async move {
                let _ = loader.create(&path, value, options).await;
            }
        });
        futures::future::join_all(writes).await;
    }
    eprintln!(
        "preloaded {preload} znodes of 1 KiB in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut rows = Vec::new();
    let mut request = 0;
    for round in 0..ROUNDS {
        eprintln!("round {}/{ROUNDS}", round + 1);
        rows.push(window(&ns, &zk_endpoint, "no backup", false, &mut request).await);
        rows.push(window(&ns, &zk_endpoint, "backups back to back", true, &mut request).await);
    }

    println!();
    println!("Client write stalls during backups ({preload} znodes of 1 KiB preloaded; {ROUNDS} rounds of {} s windows, alternating; 3 members, TLS, local S3 over TLS)", WINDOW.as_secs());
    println!();
    println!("| round | phase | writes acknowledged | largest write stall s | stalls > 250 ms | backups taken | backup duration s (mean) | backup size MiB | acknowledged writes lost |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, row) in rows.iter().enumerate() {
        let mean = if row.backups.is_empty() {
            0.0
        } else {
            row.backups.iter().map(|b| b.0).sum::<f64>() / row.backups.len() as f64
        };
        let size = row.backups.last().map_or(0.0, |b| b.1 as f64 / (1024.0 * 1024.0));
        println!(
            "| {} | {} | {} | {:.3} | {} | {} | {} | {} | {} |",
            i / 2 + 1,
            row.phase,
            row.acked,
            row.stall.as_secs_f64(),
            row.stalls_over_250ms,
            row.backups.len(),
            if row.backups.is_empty() {
                "-".to_string()
            } else {
                format!("{mean:.1}")
            },
            if row.backups.is_empty() {
                "-".to_string()
            } else {
                format!("{size:.2}")
            },
            row.lost,
        );
        let _ = row.window;
    }
    println!();
    println!("command: make bench-backup   (cargo bench --profile dev --workspace --bench backup -- {preload})");
}

/// The workload for one window; with `backups`, on-demand backups one after the other meanwhile.
async fn window(
    ns: &TestNamespace,
    endpoint: &workload::Endpoint,
    phase: &'static str,
    backups: bool,
    request: &mut usize,
) -> Row {
    let load = Workload::start(endpoint).await;
    load.wait_for_progress(Duration::from_secs(60)).await;
    let begun = Instant::now();
    let mut taken = Vec::new();
    if backups {
        while begun.elapsed() < WINDOW {
            *request += 1;
            let before = last_backup(ns).await;
            let annotation =
                json!({"metadata": {"annotations": {zkop_api::BACKUP_ANNOTATION: format!("bench-{request}")}}});
            ns.clusters()
                .patch("zk", &PatchParams::default(), &Patch::Merge(annotation))
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let now = last_backup(ns).await;
                if now.as_ref().map(|b| &b.name) != before.as_ref().map(|b| &b.name) {
                    let record = now.unwrap();
                    taken.push((record.duration_seconds, record.size_bytes));
                    break;
                }
                assert!(Instant::now() < deadline, "backup {request} did not finish");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    } else {
        tokio::time::sleep(WINDOW).await;
    }
    let (report, missing) = load.finish().await;
    Row {
        phase,
        window: begun.elapsed(),
        acked: report.acked.len(),
        stall: report.largest_gap,
        stalls_over_250ms: report.stalls.len(),
        backups: taken,
        lost: missing.len(),
    }
}

async fn last_backup(ns: &TestNamespace) -> Option<zkop_api::BackupRecord> {
    ns.clusters().get("zk").await.unwrap().status?.backup?.last_successful
}
