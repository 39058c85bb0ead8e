//! The lost-disk guard, after ZooKeeper's "db existence validation".
//!
//! ZooKeeper runs with `zookeeper.db.autocreate=false`. A member whose data directory holds no
//! snapshot and no transaction log then starts with zxid -1: it takes no part in leader election
//! and serves nothing until it has synced from an established leader. Only an ensemble that is
//! being created for the first time may start empty members as voters; ZooKeeper allows that
//! for one start when it finds an `initialize` file in the data directory.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataState {
    /// No snapshot and no transaction log: a new member, or one whose disk was lost.
    Empty,
    HasData,
}

/// What the operator (or whoever starts the member) says about the ensemble, as etcd's
/// `initial-cluster-state`: `New` only while the ensemble has never had a quorum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnsembleState {
    New,
    Existing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartMode {
    /// The member has data: ZooKeeper loads it and votes as usual.
    Recover,
    /// Brand-new ensemble: write the `initialize` marker so the empty database may vote.
    BootstrapEmpty,
    /// Empty disk in an ensemble that exists: start without the marker and sync before voting.
    SyncBeforeVoting { reason: String },
}

/// Decides how a member starts. `peer_serving` names a peer found serving in a quorum, if any:
/// then the ensemble exists whatever the declared state says.
pub fn start_mode(data: DataState, declared: EnsembleState, peer_serving: Option<&str>) -> StartMode {
    match (data, declared, peer_serving) {
        (DataState::HasData, _, _) => StartMode::Recover,
        (DataState::Empty, EnsembleState::New, None) => StartMode::BootstrapEmpty,
        (DataState::Empty, EnsembleState::New, Some(peer)) => StartMode::SyncBeforeVoting {
            reason: format!("the ensemble state says new, but {peer} is already serving in a quorum"),
        },
        (DataState::Empty, EnsembleState::Existing, _) => StartMode::SyncBeforeVoting {
            reason: "the data directory is empty and the ensemble already exists (lost or new disk)".into(),
        },
    }
}

/// Looks for ZooKeeper's snapshots and transaction logs under `<dataDir>/version-2`.
pub fn data_state(zookeeper_data_dir: &Path) -> std::io::Result<DataState> {
    let version_dir = zookeeper_data_dir.join("version-2");
    let entries = match std::fs::read_dir(&version_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DataState::Empty),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snapshot.") || name.starts_with("log.") {
            return Ok(DataState::HasData);
        }
    }
    Ok(DataState::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_ensemble_with_no_serving_peer_bootstraps_empty_members() {
        use DataState::*;
        use EnsembleState::*;
        for data in [Empty, HasData] {
            for declared in [New, Existing] {
                for peer in [None, Some("zk-1")] {
                    let mode = start_mode(data, declared, peer);
                    let bootstrap = mode == StartMode::BootstrapEmpty;
                    assert_eq!(
                        bootstrap,
                        data == Empty && declared == New && peer.is_none(),
                        "{data:?} {declared:?} {peer:?}"
                    );
                    assert_eq!(mode == StartMode::Recover, data == HasData);
                }
            }
        }
    }

    #[test]
    fn detects_snapshots_and_logs() {
        let dir = std::env::temp_dir().join(format!("zk-agent-guard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(data_state(&dir).unwrap(), DataState::Empty);
        std::fs::create_dir_all(dir.join("version-2")).unwrap();
        std::fs::write(dir.join("version-2/acceptedEpoch"), "1").unwrap();
        assert_eq!(data_state(&dir).unwrap(), DataState::Empty);
        std::fs::write(dir.join("version-2/snapshot.0"), "x").unwrap();
        assert_eq!(data_state(&dir).unwrap(), DataState::HasData);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
