//! `zk-agent backup` and `zk-agent restore`: the I/O around the pure plan.

use super::format::{self, hex};
use super::plan;
use super::store::{Store, StoreError, Target};
use super::{FileEntry, JobReport, Manifest, MANIFEST, MANIFEST_FORMAT};
use crate::guard::{self, EnsembleState};
use crate::log;
use bytes::Bytes;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub struct BackupOptions {
    pub target: Target,
    pub name: String,
    /// ZooKeeper's data directory (`<volume>/zookeeper`).
    pub zookeeper_data_dir: PathBuf,
    pub namespace: String,
    pub cluster: String,
    pub member: String,
    pub server_id: u64,
    pub zookeeper_version: String,
    /// A zxid known committed when the backup started; `None` takes every complete transaction.
    pub committed_zxid: Option<u64>,
    pub keep_count: Option<u32>,
    pub max_age_seconds: Option<i64>,
}

pub struct RestoreOptions {
    pub target: Target,
    pub name: String,
    pub zookeeper_data_dir: PathBuf,
    pub zookeeper_version: String,
    /// Only download and verify (the operator's check before it creates the members).
    pub verify_only: bool,
    pub ensemble_state: EnsembleState,
    /// Restore only up to this zxid of the backup's logs.
    pub up_to_zxid: Option<u64>,
}

pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4 + 64), flate2::Compression::new(6));
    encoder.write_all(bytes)?;
    encoder.finish()
}

fn failed(name: &str, started: Instant, message: String) -> JobReport {
    JobReport {
        ok: false,
        backup: name.to_string(),
        zxid: None,
        size_bytes: 0,
        location: String::new(),
        created: String::new(),
        seconds: started.elapsed().as_secs_f64(),
        message,
        deleted: vec![],
    }
}

/// Reads, verifies and uploads a consistent copy, then applies retention. Never panics on what
/// it finds on disk or at the target: every failure is a report naming the problem.
pub async fn backup(opts: &BackupOptions) -> JobReport {
    let started = Instant::now();
    match backup_inner(opts, started).await {
        Ok(report) => report,
        Err(message) => failed(&opts.name, started, message),
    }
}

struct Prepared {
    snapshot: (String, Vec<u8>),
    nodes: u64,
    snapshot_zxid: u64,
    cut: plan::Cut,
    logs: Vec<(String, Vec<u8>)>,
}

fn prepare(opts: &BackupOptions) -> Result<Prepared, String> {
    let dir = opts.zookeeper_data_dir.join("version-2");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e} (is the member's volume mounted?)", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    let snapshots = plan::snapshots_newest_first(&names);
    if snapshots.is_empty() {
        return Err(format!("{} holds no snapshot: nothing to back up", dir.display()));
    }
    // The newest valid snapshot that ends at or before the committed zxid, so that the backup
    // is cut there; a snapshot taken since (it may hold transactions after that zxid) only when
    // no older one is valid.
    let mut chosen = None;
    let mut newer = None;
    for (zxid, name) in snapshots.iter().take(8) {
        if opts.committed_zxid.is_some_and(|c| *zxid > c) && newer.is_some() {
            continue;
        }
        let bytes = std::fs::read(dir.join(name)).map_err(|e| format!("reading {name}: {e}"))?;
        match format::read_snapshot(&bytes, |_| {}) {
            Ok(summary) => {
                let end = summary.last_processed_zxid.unwrap_or(*zxid).max(*zxid);
                let candidate = (*zxid, name.clone(), bytes, summary);
                if opts.committed_zxid.is_none_or(|c| end <= c) {
                    chosen = Some(candidate);
                    break;
                }
                newer.get_or_insert(candidate);
            }
            // The newest snapshot may still be being written; an older one is as good.
            Err(e) => log(&format!("backup: skipping {name}: {e}")),
        }
    }
    let chosen = chosen.or(newer);
    let (snapshot_zxid, snapshot_name, snapshot_bytes, summary) =
        chosen.ok_or_else(|| "none of the newest snapshots is valid (checksums or format)".to_string())?;
    let snapshot_end = summary.last_processed_zxid.unwrap_or(snapshot_zxid).max(snapshot_zxid);
    let mut logs = Vec::new();
    let mut read = Vec::new();
    for (_, name) in plan::logs_after(&names, snapshot_zxid) {
        let bytes = std::fs::read(dir.join(&name)).map_err(|e| format!("reading {name}: {e}"))?;
        let records = format::read_log(&bytes).map_err(|e| format!("{name}: {e}"))?;
        // Logs are preallocated (64 MiB by default): only their records are kept in memory.
        let mut bytes = bytes;
        bytes.truncate(records.last().map_or(0, |r| r.end));
        bytes.shrink_to_fit();
        read.push((name.clone(), records));
        logs.push((name, bytes));
    }
    let cut = plan::cut(snapshot_zxid, snapshot_end, opts.committed_zxid, &read)?;
    Ok(Prepared {
        snapshot: (snapshot_name, snapshot_bytes),
        nodes: summary.nodes,
        snapshot_zxid,
        cut,
        logs,
    })
}

async fn backup_inner(opts: &BackupOptions, started: Instant) -> Result<JobReport, String> {
    let store = Store::open(&opts.target).map_err(|e| e.to_string())?;
    let prepared = prepare(opts)?;
    log(&format!(
        "backup {}: snapshot {} ({} nodes), {} logs, up to zxid {}",
        opts.name,
        prepared.snapshot.0,
        prepared.nodes,
        prepared.cut.logs.len(),
        hex(prepared.cut.zxid)
    ));
    let mut files = Vec::new();
    let mut uploads: Vec<(String, &[u8], Option<u64>)> =
        vec![(prepared.snapshot.0.clone(), &prepared.snapshot.1, None)];
    for log_cut in &prepared.cut.logs {
        let bytes = &prepared
            .logs
            .iter()
            .find(|(n, _)| *n == log_cut.name)
            .expect("a cut names a read log")
            .1;
        uploads.push((log_cut.name.clone(), &bytes[..log_cut.end], log_cut.last_zxid));
    }
    let result: Result<(), String> = async {
        for (name, bytes, last_zxid) in &uploads {
            let compressed = gzip(bytes).map_err(|e| format!("compressing {name}: {e}"))?;
            let entry = FileEntry {
                name: name.clone(),
                object: format!("{name}.gz"),
                size: bytes.len() as u64,
                sha256: sha256(bytes),
                compressed_size: compressed.len() as u64,
                compressed_sha256: sha256(&compressed),
                last_zxid: last_zxid.map(hex),
            };
            store
                .put(&opts.name, &entry.object, Bytes::from(compressed))
                .await
                .map_err(|e| e.to_string())?;
            files.push(entry);
        }
        Ok(())
    }
    .await;
    if let Err(message) = result {
        // Best effort: a backup without its manifest is never restored, and retention removes it.
        let _ = store.delete(&opts.name).await;
        return Err(message);
    }
    let now = now_seconds();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        name: opts.name.clone(),
        namespace: opts.namespace.clone(),
        cluster: opts.cluster.clone(),
        member: opts.member.clone(),
        server_id: opts.server_id,
        zookeeper_version: opts.zookeeper_version.clone(),
        zxid: hex(prepared.cut.zxid),
        snapshot_zxid: hex(prepared.snapshot_zxid),
        created: super::rfc3339(now),
        nodes: prepared.nodes,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    store
        .put(&opts.name, MANIFEST, Bytes::from(text))
        .await
        .map_err(|e| e.to_string())?;
    let deleted = match retention(&store, opts, now).await {
        Ok(deleted) => deleted,
        Err(e) => {
            log(&format!(
                "backup {}: retention failed (the backup itself succeeded): {e}",
                opts.name
            ));
            vec![]
        }
    };
    Ok(JobReport {
        ok: true,
        backup: opts.name.clone(),
        zxid: Some(manifest.zxid.clone()),
        size_bytes: manifest.compressed_size(),
        location: store.location(&opts.name),
        created: manifest.created.clone(),
        seconds: started.elapsed().as_secs_f64(),
        message: String::new(),
        deleted,
    })
}

/// Backups of this cluster are named `<cluster>-<compact UTC time>`; anything else under the
/// prefix is left alone.
async fn retention(store: &Store, opts: &BackupOptions, now: i64) -> Result<Vec<String>, StoreError> {
    if opts.keep_count.is_none() && opts.max_age_seconds.is_none() {
        return Ok(vec![]);
    }
    let stored: Vec<plan::Stored> = store
        .list()
        .await?
        .into_iter()
        .filter_map(|(name, complete)| {
            let time = super::parse_compact_time(name.strip_prefix(&format!("{}-", opts.cluster))?)?;
            Some(plan::Stored { name, time, complete })
        })
        .collect();
    let expired = plan::expired(
        &stored,
        now,
        opts.keep_count,
        opts.max_age_seconds,
        Some(opts.name.as_str()),
    );
    for name in &expired {
        store.delete(name).await?;
        log(&format!("retention: deleted backup {name}"));
    }
    Ok(expired)
}

/// A verified backup, ready to be written.
struct Fetched {
    manifest: Manifest,
    files: Vec<(String, Vec<u8>)>,
}

pub async fn restore(opts: &RestoreOptions) -> JobReport {
    let started = Instant::now();
    if !opts.verify_only {
        if opts.ensemble_state == EnsembleState::Existing {
            log(&format!(
                "restore: the ensemble exists already: {} is not restored again",
                opts.name
            ));
            return skipped(opts, started, "the ensemble exists already");
        }
        match guard::data_state(&opts.zookeeper_data_dir) {
            Ok(guard::DataState::HasData) => {
                log("restore: this member has data already (restored before): nothing to do");
                return skipped(opts, started, "the member has data already");
            }
            Ok(guard::DataState::Empty) => {}
            Err(e) => {
                return failed(
                    &opts.name,
                    started,
                    format!("reading {}: {e}", opts.zookeeper_data_dir.display()),
                )
            }
        }
    }
    let fetched = match fetch(opts).await {
        Ok(fetched) => fetched,
        Err(message) => return failed(&opts.name, started, message),
    };
    if !opts.verify_only {
        if let Err(e) = write_data(&opts.zookeeper_data_dir, &fetched.files) {
            return failed(&opts.name, started, format!("writing the restored data: {e}"));
        }
        log(&format!(
            "restore: {} files of backup {} written to {} (zxid {})",
            fetched.files.len(),
            opts.name,
            opts.zookeeper_data_dir.display(),
            fetched.manifest.zxid
        ));
    }
    JobReport {
        ok: true,
        backup: opts.name.clone(),
        zxid: Some(opts.up_to_zxid.map(hex).unwrap_or(fetched.manifest.zxid.clone())),
        size_bytes: fetched.manifest.compressed_size(),
        location: opts.target.describe(),
        created: fetched.manifest.created.clone(),
        seconds: started.elapsed().as_secs_f64(),
        message: String::new(),
        deleted: vec![],
    }
}

fn skipped(opts: &RestoreOptions, started: Instant, why: &str) -> JobReport {
    JobReport {
        ok: true,
        backup: opts.name.clone(),
        zxid: None,
        size_bytes: 0,
        location: String::new(),
        created: String::new(),
        seconds: started.elapsed().as_secs_f64(),
        message: format!("not restored: {why}"),
        deleted: vec![],
    }
}

async fn fetch(opts: &RestoreOptions) -> Result<Fetched, String> {
    let store = Store::open(&opts.target).map_err(|e| e.to_string())?;
    let name = &opts.name;
    let text = store.get(name, MANIFEST).await.map_err(|e| e.to_string())?.ok_or_else(|| {
        format!(
            "backup {name} not found at {}: it has no {MANIFEST} (missing, or incomplete: an interrupted backup never writes one)",
            store.describe()
        )
    })?;
    let manifest: Manifest = serde_json::from_slice(&text)
        .map_err(|e| format!("backup {name}: {MANIFEST} is not a backup manifest: {e}"))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(format!(
            "backup {name} has manifest format {}; this agent reads format {MANIFEST_FORMAT}",
            manifest.format
        ));
    }
    if super::version_newer(&manifest.zookeeper_version, &opts.zookeeper_version) {
        return Err(format!(
            "backup {name} was taken from ZooKeeper {}, newer than this cluster's {}: restore it into a cluster of version {} or later (spec.version)",
            manifest.zookeeper_version, opts.zookeeper_version, manifest.zookeeper_version
        ));
    }
    let zxid = manifest
        .zxid_value()
        .ok_or_else(|| format!("backup {name}: the manifest's zxid {:?} is not a zxid", manifest.zxid))?;
    let snapshot_zxid = super::parse_zxid(&manifest.snapshot_zxid).ok_or_else(|| {
        format!(
            "backup {name}: the manifest's snapshotZxid {:?} is not a zxid",
            manifest.snapshot_zxid
        )
    })?;
    if let Some(up_to) = opts.up_to_zxid {
        if up_to > zxid || up_to < snapshot_zxid {
            return Err(format!(
                "backup {name} holds transactions {} to {}: zxid {} (spec.restoreFrom.zxid) is outside it",
                hex(snapshot_zxid),
                hex(zxid),
                hex(up_to)
            ));
        }
    }
    let mut files = Vec::new();
    let mut all_zxids = Vec::new();
    let mut snapshot_end = snapshot_zxid;
    let mut snapshots = 0;
    for entry in &manifest.files {
        let safe = !entry.name.contains('/') && !entry.object.contains('/') && !entry.name.starts_with('.');
        if !safe {
            return Err(format!(
                "backup {name}: the manifest names a file outside the backup ({:?})",
                entry.name
            ));
        }
        let compressed = store
            .get(name, &entry.object)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "backup {name} is incomplete: {} is missing at {}",
                    entry.object,
                    store.describe()
                )
            })?;
        if sha256(&compressed) != entry.compressed_sha256 || compressed.len() as u64 != entry.compressed_size {
            return Err(format!(
                "backup {name} is corrupt: {} does not match the SHA-256 and size in its manifest",
                entry.object
            ));
        }
        let mut bytes = Vec::with_capacity(entry.size as usize);
        GzDecoder::new(&compressed[..])
            .read_to_end(&mut bytes)
            .map_err(|e| format!("backup {name} is corrupt: {} does not decompress: {e}", entry.object))?;
        if sha256(&bytes) != entry.sha256 || bytes.len() as u64 != entry.size {
            return Err(format!(
                "backup {name} is corrupt: {} does not match its manifest once decompressed",
                entry.name
            ));
        }
        if format::zxid_of(&entry.name, "snapshot").is_some() {
            let summary =
                format::read_snapshot(&bytes, |_| {}).map_err(|e| format!("backup {name}: {}: {e}", entry.name))?;
            snapshot_end = snapshot_end.max(summary.last_processed_zxid.unwrap_or(0));
            snapshots += 1;
            files.push((entry.name.clone(), bytes));
        } else if format::zxid_of(&entry.name, "log").is_some() {
            let records = format::read_log(&bytes).map_err(|e| format!("backup {name}: {}: {e}", entry.name))?;
            let last = records.last().map(|r| hex(r.zxid));
            if last != entry.last_zxid {
                return Err(format!(
                    "backup {name} is corrupt: {} ends at {}, its manifest says {}",
                    entry.name,
                    last.unwrap_or_else(|| "nothing".into()),
                    entry.last_zxid.clone().unwrap_or_else(|| "nothing".into())
                ));
            }
            let keep = match opts.up_to_zxid {
                Some(up_to) => records.iter().rev().find(|r| r.zxid <= up_to).map(|r| r.end),
                None => records.last().map(|r| r.end),
            };
            all_zxids.extend(
                records
                    .iter()
                    .map(|r| r.zxid)
                    .filter(|z| opts.up_to_zxid.is_none_or(|u| *z <= u)),
            );
            if let Some(end) = keep {
                bytes.truncate(end);
                files.push((entry.name.clone(), bytes));
            }
        } else {
            return Err(format!(
                "backup {name}: the manifest names {:?}, neither a snapshot nor a log",
                entry.name
            ));
        }
    }
    if snapshots != 1 {
        return Err(format!(
            "backup {name} is incomplete: it holds {snapshots} snapshots, not one"
        ));
    }
    let target_zxid = opts.up_to_zxid.unwrap_or(zxid);
    if snapshot_end > target_zxid {
        return Err(format!(
            "backup {name}: its snapshot holds transactions up to {}, after zxid {} (spec.restoreFrom.zxid)",
            hex(snapshot_end),
            hex(target_zxid)
        ));
    }
    format::check_chain(all_zxids.iter().copied()).map_err(|e| format!("backup {name}: {e}"))?;
    if target_zxid > snapshot_zxid && !all_zxids.contains(&target_zxid) {
        return Err(format!(
            "backup {name} is incomplete: its logs do not reach zxid {}",
            hex(target_zxid)
        ));
    }
    Ok(Fetched { manifest, files })
}

/// Writes the files into `version-2` atomically: a directory written and synced beside it, then
/// renamed, so that a member never starts on half a restore.
fn write_data(zookeeper_data_dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    std::fs::create_dir_all(zookeeper_data_dir)?;
    let staging = zookeeper_data_dir.join("version-2.restoring");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    for (name, bytes) in files {
        let mut file = std::fs::File::create(staging.join(name))?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::File::open(&staging)?.sync_all()?;
    let live = zookeeper_data_dir.join("version-2");
    if live.exists() {
        // Only files ZooKeeper writes before it has data (epochs): the guard found no data.
        std::fs::remove_dir_all(&live)?;
    }
    std::fs::rename(&staging, &live)?;
    std::fs::File::open(zookeeper_data_dir)?.sync_all()
}
