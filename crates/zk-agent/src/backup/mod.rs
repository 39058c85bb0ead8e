//! Backups of a member's data directory to object storage, and their restore.
//!
//! A backup is the newest valid snapshot and every transaction log after it, cut at a zxid that
//! was committed when the backup started (the operator passes the member's last processed zxid;
//! a transaction a member has applied is committed). Restoring it is what ZooKeeper itself does
//! at start: load the snapshot, replay the logs. Each file is verified (the snapshot parses and
//! matches its seals, the log records match their checksums and chain), compressed, uploaded, and
//! listed with its SHA-256 in `manifest.json`, written last: a backup without a manifest is
//! incomplete and never restored.

pub mod format;
pub mod plan;
pub mod run;
pub mod store;

use serde::{Deserialize, Serialize};

pub const MANIFEST: &str = "manifest.json";
pub const MANIFEST_FORMAT: u32 = 1;

/// What a backup holds, written as its last object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub namespace: String,
    pub cluster: String,
    /// The pod the data was read from and its server id.
    pub member: String,
    pub server_id: u64,
    pub zookeeper_version: String,
    /// Every transaction up to this zxid is in the backup, none after it.
    pub zxid: String,
    pub snapshot_zxid: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub nodes: u64,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// The name in ZooKeeper's `version-2` directory.
    pub name: String,
    /// The object's name within the backup (gzip of the file).
    pub object: String,
    pub size: u64,
    pub sha256: String,
    pub compressed_size: u64,
    pub compressed_sha256: String,
    /// The last transaction in this file (logs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_zxid: Option<String>,
}

impl Manifest {
    pub fn zxid_value(&self) -> Option<u64> {
        parse_zxid(&self.zxid)
    }
    pub fn compressed_size(&self) -> u64 {
        self.files.iter().map(|f| f.compressed_size).sum::<u64>()
    }
}

pub fn parse_zxid(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// What a backup or restore job reports on its last line and in its termination message, for
/// the operator to read (kept under Kubernetes' 4 KiB for termination messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobReport {
    pub ok: bool,
    /// The backup's name.
    pub backup: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zxid: Option<String>,
    #[serde(default)]
    pub size_bytes: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub location: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created: String,
    #[serde(default)]
    pub seconds: f64,
    /// Why it failed, naming the problem and the fix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Backups removed by retention.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
}

impl JobReport {
    pub fn to_line(&self) -> String {
        let mut report = self.clone();
        loop {
            let line = serde_json::to_string(&report).expect("a report serializes");
            if line.len() <= 3800 {
                return line;
            }
            if !report.deleted.is_empty() {
                report.deleted.truncate(report.deleted.len() / 2);
            } else {
                report.message.truncate(report.message.len() / 2);
            }
        }
    }
}

/// Seconds since the epoch as RFC 3339 UTC (`2026-12-01T15:30:00Z`), and the compact form used
/// in backup names (`20261201T153000Z`).
pub fn rfc3339(unix_seconds: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_seconds);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

pub fn compact_time(unix_seconds: i64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_seconds);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Parses the compact form back (names of backups this agent made).
pub fn parse_compact_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s)
}

fn civil(unix_seconds: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = unix_seconds.div_euclid(86400);
    let secs = unix_seconds.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Numeric comparison of dotted versions (`3.8.3` < `3.9.4` < `3.10.0`).
pub fn version_newer(candidate: &str, than: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> { v.split(['.', '-']).map_while(|p| p.parse().ok()).collect() };
    parts(candidate) > parts(than)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_139_000), "2026-12-01T15:30:00Z");
        for t in [0i64, 951_782_400, 1_796_139_000, 4_102_444_799] {
            assert_eq!(parse_compact_time(&compact_time(t)), Some(t));
        }
        assert_eq!(parse_compact_time("20261301T000000Z"), None);
    }

    #[test]
    fn versions_compare_by_number() {
        assert!(version_newer("3.10.0", "3.9.4"));
        assert!(version_newer("3.9.4", "3.8.3"));
        assert!(!version_newer("3.9.4", "3.9.4"));
        assert!(!version_newer("3.8.3", "3.9.4"));
    }

    #[test]
    fn a_long_report_is_cut_to_fit_a_termination_message() {
        let report = JobReport {
            ok: false,
            backup: "b".into(),
            zxid: None,
            size_bytes: 0,
            location: String::new(),
            created: String::new(),
            seconds: 0.0,
            message: "x".repeat(10_000),
            deleted: vec!["y".repeat(100); 100],
        };
        let line = report.to_line();
        assert!(line.len() <= 3800);
        assert!(serde_json::from_str::<JobReport>(&line).is_ok());
    }
}
