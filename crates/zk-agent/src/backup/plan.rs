//! The pure decisions of a backup and of retention: which files make a consistent copy, where
//! the logs are cut, which old backups go.

use super::format::{check_chain, epoch, hex, zxid_of, LogRecord};

/// Snapshot names newest first: the order in which to try them.
pub fn snapshots_newest_first(names: &[String]) -> Vec<(u64, String)> {
    let mut snapshots: Vec<(u64, String)> = names
        .iter()
        .filter_map(|n| zxid_of(n, "snapshot").map(|z| (z, n.clone())))
        .collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse(s.0));
    snapshots
}

/// The transaction logs that can hold transactions after `snapshot_zxid`, oldest first: the
/// newest log that starts at or before it, and every later one (as ZooKeeper picks them when it
/// restores, `FileTxnLog.getLogFiles`).
pub fn logs_after(names: &[String], snapshot_zxid: u64) -> Vec<(u64, String)> {
    let mut logs: Vec<(u64, String)> = names
        .iter()
        .filter_map(|n| zxid_of(n, "log").map(|z| (z, n.clone())))
        .collect();
    logs.sort();
    let first = logs.iter().rposition(|(start, _)| *start <= snapshot_zxid).unwrap_or(0);
    logs.split_off(first)
}

/// One log as it goes into the backup: its bytes up to `end`, and its last transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCut {
    pub name: String,
    pub end: usize,
    pub last_zxid: Option<u64>,
}

/// The transactions a backup holds and where each log is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub zxid: u64,
    pub logs: Vec<LogCut>,
}

/// Decides the backup's zxid and cuts the logs there. `committed` is a zxid known to be
/// committed (the member's last processed zxid when the backup started); `None` takes every
/// complete transaction on disk. The snapshot may be fuzzy up to `snapshot_end`: the backup
/// then reaches at least that far, so that its content is exactly the history up to its zxid.
pub fn cut(
    snapshot_zxid: u64,
    snapshot_end: u64,
    committed: Option<u64>,
    logs: &[(String, Vec<LogRecord>)],
) -> Result<Cut, String> {
    let all: Vec<u64> = logs
        .iter()
        .flat_map(|(_, records)| records.iter().map(|r| r.zxid))
        .collect();
    let last_on_disk = all.last().copied();
    let zxid = match committed {
        Some(committed) => committed.max(snapshot_end),
        None => last_on_disk.unwrap_or(snapshot_zxid).max(snapshot_end),
    };
    let kept: Vec<u64> = all.iter().copied().filter(|z| *z <= zxid).collect();
    check_chain(kept.iter().copied())?;
    if zxid > snapshot_zxid {
        if last_on_disk.is_none_or(|last| last < zxid) {
            return Err(format!(
                "the transaction logs end at {}, before {} (the zxid this backup must reach)",
                last_on_disk.map(hex).unwrap_or_else(|| "nothing".into()),
                hex(zxid)
            ));
        }
        if !kept.contains(&zxid) {
            return Err(format!(
                "no transaction {} in the logs: they do not chain to it",
                hex(zxid)
            ));
        }
        let next = kept.iter().copied().find(|z| *z > snapshot_zxid).expect("zxid is kept");
        let chained = next == snapshot_zxid + 1 || epoch(next) > epoch(snapshot_zxid);
        if !chained {
            return Err(format!(
                "the logs go from {} to {} after snapshot {}: transactions in between are missing",
                kept.iter()
                    .copied()
                    .filter(|z| *z <= snapshot_zxid)
                    .max()
                    .map(hex)
                    .unwrap_or_else(|| "nothing".into()),
                hex(next),
                hex(snapshot_zxid)
            ));
        }
    }
    let cuts = logs
        .iter()
        .filter_map(|(name, records)| {
            let inside: Vec<&LogRecord> = records.iter().filter(|r| r.zxid <= zxid).collect();
            let last = inside.last()?;
            Some(LogCut {
                name: name.clone(),
                end: last.end,
                last_zxid: Some(last.zxid),
            })
        })
        .collect();
    Ok(Cut { zxid, logs: cuts })
}

/// A backup found at the target, for retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub name: String,
    /// Seconds since the epoch, from the name.
    pub time: i64,
    /// Has its manifest: complete.
    pub complete: bool,
}

/// How far in the future a backup's name may be dated (clocks differ) before retention leaves
/// it out: neither counted nor deleted.
pub const FUTURE_SKEW_SECONDS: i64 = 600;

/// What retention keeps: at most `keep_count` complete backups (if set), none older than
/// `max_age_seconds` (if set), and always the newest complete one. Incomplete ones (a failed
/// upload) go once they are an hour old, or once a newer complete backup exists. A backup
/// dated further in the future than `FUTURE_SKEW_SECONDS` is left out: counted as the newest,
/// it made every new backup the one retention deleted. `own`, the backup this job has just
/// written, is never deleted: a backup named a little ahead (within the skew) may count as the
/// newest, and does not push the new one out. Returns the names to delete.
pub fn expired(
    stored: &[Stored],
    now: i64,
    keep_count: Option<u32>,
    max_age_seconds: Option<i64>,
    own: Option<&str>,
) -> Vec<String> {
    let stored: Vec<&Stored> = stored.iter().filter(|s| s.time <= now + FUTURE_SKEW_SECONDS).collect();
    let mut complete: Vec<&Stored> = stored.iter().copied().filter(|s| s.complete).collect();
    complete.sort_by(|a, b| b.time.cmp(&a.time).then(b.name.cmp(&a.name)));
    let newest_complete = complete.first().map(|s| s.time);
    let mut delete = Vec::new();
    for (rank, backup) in complete.iter().enumerate() {
        if rank == 0 {
            continue;
        }
        let too_many = keep_count.is_some_and(|keep| rank >= keep.max(1) as usize);
        let too_old = max_age_seconds.is_some_and(|age| now - backup.time > age);
        if (too_many || too_old) && Some(backup.name.as_str()) != own {
            delete.push(backup.name.clone());
        }
    }
    for backup in stored.iter().filter(|s| !s.complete) {
        let stale = now - backup.time > 3600 || newest_complete.is_some_and(|t| t > backup.time);
        if stale {
            delete.push(backup.name.clone());
        }
    }
    delete.sort();
    delete
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn records(zxids: &[u64]) -> Vec<LogRecord> {
        zxids
            .iter()
            .enumerate()
            .map(|(i, &zxid)| LogRecord {
                zxid,
                end: 16 + 40 * (i + 1),
            })
            .collect()
    }

    #[test]
    fn picks_the_log_that_holds_the_snapshots_next_transaction() {
        let files = names(&[
            "log.1",
            "log.10",
            "log.20",
            "snapshot.0",
            "snapshot.15",
            "acceptedEpoch",
        ]);
        assert_eq!(snapshots_newest_first(&files)[0], (0x15, "snapshot.15".into()));
        let logs: Vec<String> = logs_after(&files, 0x15).into_iter().map(|l| l.1).collect();
        assert_eq!(logs, ["log.10", "log.20"]);
        let logs: Vec<String> = logs_after(&files, 0x0).into_iter().map(|l| l.1).collect();
        assert_eq!(logs, ["log.1", "log.10", "log.20"]);
    }

    #[test]
    fn cuts_at_the_committed_zxid() {
        let logs = vec![("log.1".to_string(), records(&[1, 2, 3, 4, 5]))];
        let cut = cut(2, 2, Some(4), &logs).unwrap();
        assert_eq!(cut.zxid, 4);
        assert_eq!(
            cut.logs,
            [LogCut {
                name: "log.1".into(),
                end: 16 + 40 * 4,
                last_zxid: Some(4)
            }]
        );
    }

    #[test]
    fn a_fuzzy_snapshot_moves_the_cut_to_its_end() {
        let logs = vec![("log.1".to_string(), records(&[1, 2, 3, 4, 5]))];
        assert_eq!(cut(2, 5, Some(3), &logs).unwrap().zxid, 5);
    }

    #[test]
    fn refuses_gaps_and_logs_that_stop_short() {
        let gap = vec![("log.1".to_string(), records(&[1, 2, 4]))];
        assert!(cut(1, 1, Some(4), &gap).unwrap_err().contains("gap"));
        let short = vec![("log.1".to_string(), records(&[1, 2]))];
        assert!(cut(1, 1, Some(5), &short).unwrap_err().contains("end at 0x2"));
        let late = vec![("log.5".to_string(), records(&[5, 6]))];
        assert!(cut(2, 2, Some(6), &late).unwrap_err().contains("missing"));
        let epochs = vec![("log.1".to_string(), records(&[1, 2, 0x100000001]))];
        assert_eq!(cut(1, 1, None, &epochs).unwrap().zxid, 0x100000001);
        assert_eq!(cut(7, 7, Some(7), &[]).unwrap(), Cut { zxid: 7, logs: vec![] });
    }

    fn stored(name: &str, time: i64, complete: bool) -> Stored {
        Stored {
            name: name.into(),
            time,
            complete,
        }
    }

    #[test]
    fn retention_keeps_the_newest_complete_backup_whatever_its_age() {
        let all = [stored("a", 100, true), stored("b", 200, true), stored("c", 300, false)];
        assert_eq!(expired(&all, 10_000, Some(1), Some(60), None), ["a", "c"]);
        assert_eq!(expired(&all, 350, Some(5), None, None), Vec::<String>::new());
        assert_eq!(expired(&all, 350, Some(5), Some(200), None), ["a"]);
    }

    /// A backup named with a time far ahead (forged, or a clock gone wrong) is left out: the
    /// backup just made is kept, and the forged one is neither counted nor deleted.
    #[test]
    fn a_backup_dated_in_the_future_does_not_make_new_ones_delete_themselves() {
        let all = [stored("future", 4_000_000_000, true), stored("new", 10_000, true)];
        assert_eq!(expired(&all, 10_000, Some(1), None, Some("new")), Vec::<String>::new());
        // Within the skew it counts as the newest, and still does not push out the backup
        // just written (which it did before: ["new"]).
        let soon = [
            stored("soon", 10_300, true),
            stored("new", 10_000, true),
            stored("old", 9_000, true),
        ];
        assert_eq!(expired(&soon, 10_000, Some(1), None, Some("new")), ["old"]);
    }

    proptest! {
        #[test]
        fn retention_never_deletes_the_newest_complete_backup(
            backups in proptest::collection::vec((0i64..1000, any::<bool>()), 0..12),
            now in 0i64..5000,
            keep in proptest::option::of(0u32..5),
            age in proptest::option::of(0i64..2000),
        ) {
            let all: Vec<Stored> = backups.iter().enumerate().map(|(i, (t, c))| stored(&format!("b{i}"), *t, *c)).collect();
            let own = all.iter().filter(|s| s.complete).map(|s| s.name.clone()).next_back();
            let deleted = expired(&all, now, keep, age, own.as_deref());
            if let Some(own) = &own {
                prop_assert!(!deleted.contains(own), "the backup just written is kept");
            }
            let newest = all
                .iter()
                .filter(|s| s.complete && s.time <= now + FUTURE_SKEW_SECONDS)
                .max_by(|a, b| a.time.cmp(&b.time).then(a.name.cmp(&b.name)));
            if let Some(newest) = newest {
                prop_assert!(!deleted.contains(&newest.name));
            }
            if let Some(keep) = keep {
                let kept = all
                    .iter()
                    .filter(|s| s.complete && s.time <= now + FUTURE_SKEW_SECONDS && !deleted.contains(&s.name))
                    .count();
                // The newest, and the backup just written if it is not the newest.
                prop_assert!(kept <= keep.max(1) as usize + usize::from(own.is_some()));
            }
        }
    }
}
