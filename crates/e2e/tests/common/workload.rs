//! A client workload through a NodePort Service in front of the ensemble's pods (the way an
//! application outside the cluster would reach it): sequential writes, each acknowledgement
//! recorded with its zxid, then every acknowledged write read back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zookeeper_client::{Acls, Client, CreateMode, Error};

/// How a test client reaches a cluster from outside: a connect string through the nodes, and
/// mutual TLS with the tests' client certificate when the cluster runs TLS.
#[derive(Clone)]
pub struct Endpoint {
    pub connect: String,
    /// The Secret with the client's certificate, read again at every connection, as an
    /// application that follows certificate rotation does.
    pub tls: Option<TlsSource>,
}

#[derive(Clone)]
pub struct TlsSource {
    pub secrets: kube::Api<k8s_openapi::api::core::v1::Secret>,
    pub name: String,
}

impl TlsSource {
    /// TLS options from the Secret as it is now: the authority is verified, the server's name
    /// is not (the nodes' addresses are not in the member certificate).
    pub async fn options(&self) -> Result<zookeeper_client::TlsOptions, String> {
        let secret = self.secrets.get(&self.name).await.map_err(|e| e.to_string())?;
        let data = secret.data.ok_or("the Secret has no data")?;
        let text = |key: &str| {
            data.get(key)
                .map(|v| String::from_utf8_lossy(&v.0).into_owned())
                .unwrap_or_default()
        };
        let options = zookeeper_client::TlsOptions::new()
            .with_pem_ca(&text("ca.crt"))
            .and_then(|o| o.with_pem_identity(&text("tls.crt"), &text("tls.key")))
            .map_err(|e| e.to_string())?;
        // SAFETY (of the tests' trust): the authority is verified, only the name is not.
        Ok(unsafe { options.with_no_hostname_verification() })
    }
}

pub struct Workload {
    stop: Arc<AtomicBool>,
    /// Writes acknowledged so far, for `wait_for_progress`.
    acked: Arc<std::sync::atomic::AtomicU64>,
    handle: tokio::task::JoinHandle<Report>,
    endpoint: Endpoint,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Names this run's znodes (`<run>-w-<seq>`), so runs against one ensemble do not collide.
    pub run: String,
    /// Sequence numbers acknowledged, with the zxid of each write.
    pub acked: Vec<(u64, i64)>,
    /// Largest time between two successful writes, or from the last one to the end of the run.
    pub largest_gap: Duration,
    /// Time from the last successful write to the end of the run: writes had resumed if short.
    pub tail: Duration,
    pub sessions_expired: u32,
    pub failed_attempts: u32,
    pub duration: Duration,
    /// Every gap between acknowledged writes over 250 ms: when it ended (wall clock) and how long
    /// it was, to line stalls up with what happened in the cluster.
    pub stalls: Vec<(std::time::SystemTime, Duration)>,
}

impl Report {
    /// Leader elections during the run: each new leader starts a new epoch, the high 32 bits of zxids.
    pub fn elections(&self) -> i64 {
        match (self.acked.first(), self.acked.last()) {
            (Some((_, first)), Some((_, last))) => (last >> 32) - (first >> 32),
            _ => 0,
        }
    }
}

const ROOT: &str = "/workload";
const PAUSE: Duration = Duration::from_millis(20);
/// New writes that count as progress: `start` returns after this many (the workload wrote before
/// the fault), `finish` waits for this many more (it writes again after the recovery). Counted,
/// not timed: a loaded machine writes fewer per second, and the proof stays the same.
pub const PROGRESS: u64 = 20;
/// How long a serving ensemble may take to acknowledge `PROGRESS` writes, on a loaded machine.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(120);

pub async fn connect(endpoint: &Endpoint) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The connection timeout bounds both how long a silent connection is trusted and each
        // attempt to connect. Left to the client, it is 2/5 of the session (4 s): a client whose
        // path died with a node (or that the Service sends to the dead node's member, until the
        // node is declared NotReady) spends 4 s noticing and 4 s on each dead address it tries
        // next, and two of those expire its session although quorum was kept (seen in CI: 14.1 s).
        // At 2 s it can meet four dead addresses in a row and keep its session.
        let connector = Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .with_connection_timeout(Duration::from_secs(2));
        let attempt = async {
            match &endpoint.tls {
                Some(source) => match source.options().await {
                    Ok(tls) => connector.with_tls(tls).secure_connect(&endpoint.connect).await,
                    Err(_) => Err(zookeeper_client::Error::ConnectionLoss),
                },
                None => connector.connect(&endpoint.connect).await,
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), attempt).await {
            Ok(Ok(client)) => return client,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("workload cannot connect to {}: {other:?}", endpoint.connect),
        }
    }
}

impl Workload {
    pub async fn start(endpoint: &Endpoint) -> Workload {
        let client = connect(endpoint).await;
        let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
        match client.create(ROOT, b"", &options).await {
            Ok(_) | Err(Error::NodeExists) => {}
            Err(e) => panic!("creating {ROOT}: {e}"),
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let acked_counter = acked.clone();
        let run = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
        );
        let target = endpoint.clone();
        let handle = tokio::spawn(async move {
            let mut client = client;
            let mut report = Report {
                run,
                ..Report::default()
            };
            let started = Instant::now();
            let mut last_ack = Instant::now();
            let mut seq = 0u64;
            let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
            while !flag.load(Ordering::Relaxed) {
                let path = format!("{ROOT}/{}-w-{seq:08}", report.run);
                let write = client.create(&path, seq.to_string().as_bytes(), &options);
                let zxid = match tokio::time::timeout(Duration::from_secs(5), write).await {
                    Ok(Ok((stat, _))) => Some(stat.mzxid),
                    // A retried write that had in fact been applied before the connection dropped.
                    Ok(Err(Error::NodeExists)) => {
                        tokio::time::timeout(Duration::from_secs(5), client.check_stat(&path))
                            .await
                            .ok()
                            .and_then(|r| r.ok().flatten())
                            .map(|s| s.mzxid)
                    }
                    Ok(Err(Error::SessionExpired)) | Ok(Err(Error::ClientClosed)) => {
                        report.sessions_expired += 1;
                        client = connect(&target).await;
                        None
                    }
                    _ => None,
                };
                match zxid {
                    Some(zxid) => {
                        let gap = last_ack.elapsed();
                        if gap > Duration::from_millis(250) {
                            report.stalls.push((std::time::SystemTime::now(), gap));
                        }
                        report.largest_gap = report.largest_gap.max(gap);
                        last_ack = Instant::now();
                        report.acked.push((seq, zxid));
                        acked_counter.fetch_add(1, Ordering::Relaxed);
                        seq += 1;
                        tokio::time::sleep(PAUSE).await;
                    }
                    None => {
                        report.failed_attempts += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            report.duration = started.elapsed();
            report.tail = last_ack.elapsed();
            report.largest_gap = report.largest_gap.max(report.tail);
            report
        });
        let workload = Workload {
            stop,
            acked,
            handle,
            endpoint: endpoint.clone(),
        };
        workload.wait_for_progress(PROGRESS_TIMEOUT).await;
        workload
    }

    /// Waits until the workload acknowledges `PROGRESS` new writes (it has reconnected after a fault).
    pub async fn wait_for_progress(&self, timeout: Duration) {
        let before = self.acked.load(Ordering::Relaxed);
        let start = Instant::now();
        while self.acked.load(Ordering::Relaxed) < before + PROGRESS {
            assert!(
                start.elapsed() < timeout,
                "the workload acknowledged {} of {PROGRESS} writes in {timeout:?}",
                self.acked.load(Ordering::Relaxed) - before
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if start.elapsed() >= Duration::from_secs(1) {
            eprintln!(
                "{} waited {:.1} s for {PROGRESS} acknowledged writes",
                super::clock(),
                start.elapsed().as_secs_f64()
            );
        }
    }

    /// Waits for `PROGRESS` more writes (the ensemble serves writes after whatever the test did),
    /// stops writing, and returns the report with the acknowledged writes that cannot be read back.
    /// Every report has at least `2 * PROGRESS` writes, some before and some after the fault.
    pub async fn finish(self) -> (Report, Vec<u64>) {
        self.wait_for_progress(PROGRESS_TIMEOUT).await;
        self.stop.store(true, Ordering::Relaxed);
        let report = self.handle.await.expect("workload task");
        let missing = missing_writes(&self.endpoint, &report).await;
        (report, missing)
    }
}

/// The acknowledged writes that cannot be read back (after a `sync`) through `endpoint`.
pub async fn missing_writes(endpoint: &Endpoint, report: &Report) -> Vec<u64> {
    let client = connect(endpoint).await;
    let limit = Duration::from_secs(30);
    tokio::time::timeout(limit, client.sync(ROOT))
        .await
        .expect("sync timed out")
        .expect("sync before reading back");
    let (children, _) = tokio::time::timeout(limit, client.get_children(ROOT))
        .await
        .expect("listing timed out")
        .expect("listing acknowledged writes");
    let present: std::collections::HashSet<String> = children.into_iter().collect();
    report
        .acked
        .iter()
        .map(|(seq, _)| *seq)
        .filter(|seq| !present.contains(&format!("{}-w-{seq:08}", report.run)))
        .collect()
}
