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
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio_util::io::{StreamReader, SyncIoBridge};

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
    /// The snapshot's file name and size, as it was read and verified.
    snapshot: (String, u64),
    nodes: u64,
    snapshot_zxid: u64,
    cut: plan::Cut,
}

/// Files are read in pieces of this size, never whole.
const CHUNK: usize = 1 << 20;

fn open_buffered(path: &Path) -> std::io::Result<std::io::BufReader<std::fs::File>> {
    Ok(std::io::BufReader::with_capacity(CHUNK, std::fs::File::open(path)?))
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
        let path = dir.join(name);
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("reading {name}: {e}"))?
            .len();
        let file = open_buffered(&path).map_err(|e| format!("reading {name}: {e}"))?;
        match format::read_snapshot_from(file, |_| {}) {
            Ok(summary) => {
                let end = summary.last_processed_zxid.unwrap_or(*zxid).max(*zxid);
                let candidate = (*zxid, name.clone(), size, summary);
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
    let (snapshot_zxid, snapshot_name, snapshot_size, summary) =
        chosen.ok_or_else(|| "none of the newest snapshots is valid (checksums or format)".to_string())?;
    let snapshot_end = summary.last_processed_zxid.unwrap_or(snapshot_zxid).max(snapshot_zxid);
    let mut read = Vec::new();
    for (_, name) in plan::logs_after(&names, snapshot_zxid) {
        let file = open_buffered(&dir.join(&name)).map_err(|e| format!("reading {name}: {e}"))?;
        let records = format::read_log_from(file).map_err(|e| format!("{name}: {e}"))?;
        read.push((name, records));
    }
    let cut = plan::cut(snapshot_zxid, snapshot_end, opts.committed_zxid, &read)?;
    Ok(Prepared {
        snapshot: (snapshot_name, snapshot_size),
        nodes: summary.nodes,
        snapshot_zxid,
        cut,
    })
}

/// Counts and hashes what passes.
#[derive(Default)]
struct Tally {
    sha256: Sha256,
    length: u64,
}

impl Tally {
    fn add(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.length += bytes.len() as u64;
    }
    fn hex(&self) -> String {
        self.sha256
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Sends the first `length` bytes of a file, compressed, in pieces: memory holds a piece and a
/// few parts of the upload, whatever the file's size.
async fn upload_file(
    store: &Store,
    backup: &str,
    name: &str,
    path: &Path,
    length: u64,
    last_zxid: Option<u64>,
) -> Result<FileEntry, String> {
    let object = format!("{name}.gz");
    let mut upload = store.upload(backup, &object);
    let sent: Result<(Tally, Tally), String> = async {
        let mut source = std::fs::File::open(path)
            .map_err(|e| format!("reading {name}: {e}"))?
            .take(length);
        let mut raw = Tally::default();
        let mut compressed = Tally::default();
        let mut encoder = GzEncoder::new(Vec::with_capacity(CHUNK), flate2::Compression::new(6));
        let mut chunk = vec![0u8; CHUNK];
        loop {
            let n = source.read(&mut chunk).map_err(|e| format!("reading {name}: {e}"))?;
            if n == 0 {
                break;
            }
            raw.add(&chunk[..n]);
            encoder
                .write_all(&chunk[..n])
                .map_err(|e| format!("compressing {name}: {e}"))?;
            let out = std::mem::take(encoder.get_mut());
            compressed.add(&out);
            upload.write(&out).await.map_err(|e| e.to_string())?;
            *encoder.get_mut() = out;
            encoder.get_mut().clear();
        }
        let out = encoder.finish().map_err(|e| format!("compressing {name}: {e}"))?;
        compressed.add(&out);
        upload.write(&out).await.map_err(|e| e.to_string())?;
        if raw.length != length {
            return Err(format!(
                "{name} ended after {} bytes, {length} were read and verified before: changed while backed up",
                raw.length
            ));
        }
        Ok((raw, compressed))
    }
    .await;
    let (raw, compressed) = match sent {
        Ok(tallies) => tallies,
        Err(message) => {
            upload.abort().await;
            return Err(message);
        }
    };
    upload.finish().await.map_err(|e| e.to_string())?;
    Ok(FileEntry {
        name: name.to_string(),
        object,
        size: raw.length,
        sha256: raw.hex(),
        compressed_size: compressed.length,
        compressed_sha256: compressed.hex(),
        last_zxid: last_zxid.map(hex),
    })
}

async fn backup_inner(opts: &BackupOptions, started: Instant) -> Result<JobReport, String> {
    let store = Store::open(&opts.target).map_err(|e| e.to_string())?;
    let prepared = prepare(opts)?;
    log(&format!(
        "backup {}: snapshot {} ({} nodes, {} bytes), {} logs, up to zxid {}",
        opts.name,
        prepared.snapshot.0,
        prepared.nodes,
        prepared.snapshot.1,
        prepared.cut.logs.len(),
        hex(prepared.cut.zxid)
    ));
    let dir = opts.zookeeper_data_dir.join("version-2");
    let mut uploads: Vec<(String, u64, Option<u64>)> = vec![(prepared.snapshot.0.clone(), prepared.snapshot.1, None)];
    for log_cut in &prepared.cut.logs {
        uploads.push((log_cut.name.clone(), log_cut.end as u64, log_cut.last_zxid));
    }
    let mut files = Vec::new();
    let result: Result<(), String> = async {
        for (name, length, last_zxid) in &uploads {
            files.push(upload_file(&store, &opts.name, name, &dir.join(name), *length, *last_zxid).await?);
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

/// A backup downloaded and verified (and written to the staging directory, unless only checked).
struct Fetched {
    manifest: Manifest,
    files: usize,
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
    let staging = if opts.verify_only {
        None
    } else {
        match staging_directory(&opts.zookeeper_data_dir) {
            Ok(staging) => Some(staging),
            Err(e) => return failed(&opts.name, started, format!("writing the restored data: {e}")),
        }
    };
    let fetched = match fetch(opts, staging.as_deref()).await {
        Ok(fetched) => fetched,
        Err(message) => {
            if let Some(staging) = &staging {
                let _ = std::fs::remove_dir_all(staging);
            }
            return failed(&opts.name, started, message);
        }
    };
    if let Some(staging) = &staging {
        if let Err(e) = put_in_place(&opts.zookeeper_data_dir, staging) {
            return failed(&opts.name, started, format!("writing the restored data: {e}"));
        }
        log(&format!(
            "restore: {} files of backup {} written to {} (zxid {})",
            fetched.files,
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

async fn fetch(opts: &RestoreOptions, staging: Option<&Path>) -> Result<Fetched, String> {
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
    let mut files = 0;
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
        let is_snapshot = format::zxid_of(&entry.name, "snapshot").is_some();
        if !is_snapshot && format::zxid_of(&entry.name, "log").is_none() {
            return Err(format!(
                "backup {name}: the manifest names {:?}, neither a snapshot nor a log",
                entry.name
            ));
        }
        let stream = store
            .get_stream(name, &entry.object)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "backup {name} is incomplete: {} is missing at {}",
                    entry.object,
                    store.describe()
                )
            })?;
        let source = SyncIoBridge::new(StreamReader::new(stream.map_err(std::io::Error::other)));
        let out = staging.map(|dir| dir.join(&entry.name));
        let (backup, checked_entry, written) = (name.clone(), entry.clone(), out.clone());
        let checked = tokio::task::spawn_blocking(move || {
            check_object(&backup, &checked_entry, is_snapshot, source, written.as_deref())
        })
        .await
        .map_err(|e| format!("backup {name}: checking {}: {e}", entry.object))??;
        match checked {
            Checked::Snapshot(summary) => {
                snapshot_end = snapshot_end.max(summary.last_processed_zxid.unwrap_or(0));
                snapshots += 1;
                files += 1;
            }
            Checked::Log(records) => {
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
                if let Some(path) = &out {
                    let written = |e: std::io::Error| format!("writing {}: {e}", path.display());
                    match keep {
                        Some(end) if end as u64 != entry.size => {
                            let file = std::fs::OpenOptions::new().write(true).open(path).map_err(written)?;
                            file.set_len(end as u64).map_err(written)?;
                            file.sync_all().map_err(written)?;
                        }
                        Some(_) => {}
                        None => std::fs::remove_file(path).map_err(written)?,
                    }
                }
                if keep.is_some() {
                    files += 1;
                }
            }
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

/// Counts, hashes and (when asked) copies what is read through it, and keeps the first error
/// of what it reads from, so that a failure is told by where it happened.
struct Passing<'w, R> {
    inner: R,
    tally: Tally,
    /// More than this many bytes is an error (a decompressed size beyond the manifest's).
    limit: u64,
    read_error: Option<String>,
    copy_to: Option<&'w mut std::fs::File>,
    write_error: Option<String>,
}

impl<'w, R: Read> Passing<'w, R> {
    fn new(inner: R, limit: u64, copy_to: Option<&'w mut std::fs::File>) -> Self {
        Passing {
            inner,
            tally: Tally::default(),
            limit,
            read_error: None,
            copy_to,
            write_error: None,
        }
    }
}

impl<R: Read> Read for Passing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    self.read_error.get_or_insert_with(|| e.to_string());
                }
                return Err(e);
            }
        };
        self.tally.add(&buf[..n]);
        if self.tally.length > self.limit {
            return Err(std::io::Error::other("longer than its manifest says"));
        }
        if let Some(out) = self.copy_to.as_mut() {
            if let Err(e) = out.write_all(&buf[..n]) {
                self.write_error.get_or_insert_with(|| e.to_string());
                self.copy_to = None;
                return Err(std::io::Error::other("writing the restored file failed"));
            }
        }
        Ok(n)
    }
}

enum Checked {
    Snapshot(format::SnapshotSummary),
    Log(Vec<format::LogRecord>),
}

/// Reads one object of a backup as it arrives: its compressed bytes are hashed, decompressed,
/// hashed again, parsed, and written to `out` when given; memory holds a few buffers, whatever
/// the object's size. Failures are named in the order of what was read: the object as stored,
/// its decompression, the file it holds, the file's format.
fn check_object(
    backup: &str,
    entry: &FileEntry,
    is_snapshot: bool,
    source: impl Read,
    out: Option<&Path>,
) -> Result<Checked, String> {
    let corrupt = |what: &str| format!("backup {backup} is corrupt: {what}");
    let mut file = match out {
        Some(path) => Some(std::fs::File::create(path).map_err(|e| format!("writing {}: {e}", path.display()))?),
        None => None,
    };
    let mut compressed = Passing::new(source, entry.compressed_size, None);
    let (parsed, decompressed, write_error) = {
        let mut raw = Passing::new(GzDecoder::new(&mut compressed), entry.size, file.as_mut());
        let parsed = {
            let reader = std::io::BufReader::with_capacity(64 << 10, &mut raw);
            if is_snapshot {
                format::read_snapshot_from(reader, |_| {}).map(Checked::Snapshot)
            } else {
                format::read_log_from(reader).map(Checked::Log)
            }
        };
        let _ = std::io::copy(&mut raw, &mut std::io::sink());
        (parsed, (raw.tally, raw.read_error), raw.write_error)
    };
    let _ = std::io::copy(&mut compressed, &mut std::io::sink());
    if let Some(e) = compressed.read_error {
        return Err(format!("backup {backup}: reading {}: {e}", entry.object));
    }
    if compressed.tally.length != entry.compressed_size || compressed.tally.hex() != entry.compressed_sha256 {
        return Err(corrupt(&format!(
            "{} does not match the SHA-256 and size in its manifest",
            entry.object
        )));
    }
    let (raw, decompress_error) = decompressed;
    if let Some(e) = decompress_error {
        return Err(corrupt(&format!("{} does not decompress: {e}", entry.object)));
    }
    if let (Some(e), Some(path)) = (write_error, out) {
        return Err(format!("writing {}: {e}", path.display()));
    }
    if raw.length != entry.size || raw.hex() != entry.sha256 {
        return Err(corrupt(&format!(
            "{} does not match its manifest once decompressed",
            entry.name
        )));
    }
    let parsed = parsed.map_err(|e| format!("backup {backup}: {}: {e}", entry.name))?;
    if let (Some(file), Some(path)) = (file, out) {
        file.sync_all()
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(parsed)
}

/// An empty directory beside `version-2` that the restore writes into.
fn staging_directory(zookeeper_data_dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(zookeeper_data_dir)?;
    let staging = zookeeper_data_dir.join("version-2.restoring");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)?;
    Ok(staging)
}

/// Puts the written and synced staging directory in place of `version-2` by a rename, so that a
/// member never starts on half a restore.
fn put_in_place(zookeeper_data_dir: &Path, staging: &Path) -> std::io::Result<()> {
    std::fs::File::open(staging)?.sync_all()?;
    let live = zookeeper_data_dir.join("version-2");
    if live.exists() {
        // Only files ZooKeeper writes before it has data (epochs): the guard found no data.
        std::fs::remove_dir_all(&live)?;
    }
    std::fs::rename(staging, &live)?;
    std::fs::File::open(zookeeper_data_dir)?.sync_all()
}
