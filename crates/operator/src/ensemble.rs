//! Talking to the ensemble itself: its committed configuration and dynamic reconfiguration.
//!
//! The configuration is read after a `sync`, so a member that lags the leader does not answer
//! with an old one. A reconfiguration names the configuration version it was planned from, so
//! ZooKeeper refuses it if the ensemble changed meanwhile. Its reply is not trusted on its own
//! (a client connected to a server that is being removed may see the connection drop although
//! the change committed): every change is verified by reading the configuration back.

use crate::resources::{Names, OperatorSettings};
use std::collections::BTreeSet;
use std::time::Duration;
use vocabulary::{PeerDomain, VotingRole};
use zk_agent::members::Membership;
use zookeeper_client::{Client, EnsembleUpdate};

const TIMEOUT: Duration = Duration::from_secs(10);
const CONFIG_NODE: &str = "/zookeeper/config";

/// The ensemble's committed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsembleConfig {
    /// Server ids of the voting members.
    pub voters: BTreeSet<u64>,
    /// The configuration's version (ZooKeeper's `version=` line, a zxid), when it has one.
    pub version: Option<i64>,
}

impl EnsembleConfig {
    pub fn parse(text: &str) -> Result<EnsembleConfig, String> {
        let membership = Membership::parse(text, "the ensemble's configuration").map_err(|e| e.to_string())?;
        let version = match &membership.version {
            Some(hex) => {
                Some(i64::from_str_radix(hex, 16).map_err(|_| format!("configuration version {hex:?} is not hex"))?)
            }
            None => None,
        };
        Ok(EnsembleConfig {
            voters: membership
                .members
                .iter()
                .filter(|m| m.role == VotingRole::Participant)
                .map(|m| m.id)
                .collect(),
            version,
        })
    }
}

async fn connect(address: &str, password: &str) -> Result<Client, String> {
    let connect = Client::connector()
        .with_session_timeout(Duration::from_secs(10))
        .with_auth("digest", format!("super:{password}").as_bytes())
        .connect(address);
    tokio::time::timeout(TIMEOUT, connect)
        .await
        .map_err(|_| format!("connecting to {address} timed out"))?
        .map_err(|e| format!("connecting to {address}: {e}"))
}

/// The configuration as the leader has committed it: `sync` first, then read.
async fn read(client: &Client) -> Result<EnsembleConfig, String> {
    tokio::time::timeout(TIMEOUT, client.sync(CONFIG_NODE))
        .await
        .map_err(|_| "sync timed out".to_string())?
        .map_err(|e| format!("sync: {e}"))?;
    let (data, _) = tokio::time::timeout(TIMEOUT, client.get_config())
        .await
        .map_err(|_| "reading the configuration timed out".to_string())?
        .map_err(|e| format!("reading the configuration: {e}"))?;
    EnsembleConfig::parse(&String::from_utf8_lossy(&data))
}

/// The committed configuration, from the first of `addresses` that answers.
pub async fn read_config(addresses: &[String], password: &str) -> Option<EnsembleConfig> {
    for address in addresses {
        match async { read(&connect(address, password).await?).await }.await {
            Ok(config) => return Some(config),
            Err(error) => tracing::debug!(%error, "cannot read the ensemble configuration"),
        }
    }
    None
}

/// The `server.N=...` line of member `id`, as the members file has it.
pub fn member_line(names: &Names, settings: &OperatorSettings, id: u64) -> String {
    let domain = PeerDomain {
        service: names.headless_service(),
        namespace: names.namespace.clone(),
        cluster_domain: settings.cluster_domain.clone(),
    };
    let ordinals = u32::try_from(id).unwrap_or(u32::MAX);
    Membership::from_statefulset(&names.statefulset(), ordinals, &domain)
        .member(id)
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// A change of the ensemble's voters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Add a member: its `server.N=...` line.
    Join {
        id: u64,
        line: String,
    },
    Leave {
        id: u64,
    },
}

impl Change {
    fn done(&self, config: &EnsembleConfig) -> bool {
        match self {
            Change::Join { id, .. } => config.voters.contains(id),
            Change::Leave { id } => !config.voters.contains(id),
        }
    }
    fn subject(&self) -> u64 {
        match self {
            Change::Join { id, .. } | Change::Leave { id } => *id,
        }
    }
}

/// Carries out `change` through the first of `addresses` (serving members, the one leaving
/// last), conditional on the configuration still being `from_version`, then verifies that the
/// committed configuration says so.
pub async fn reconfigure(
    addresses: &[String],
    password: &str,
    change: &Change,
    from_version: Option<i64>,
) -> Result<(), String> {
    let address = addresses.first().ok_or("no serving member to reconfigure through")?;
    let client = connect(address, password).await?;
    let leaving = match change {
        Change::Leave { id } => Some(id.to_string()),
        Change::Join { .. } => None,
    };
    let joining = match change {
        Change::Join { line, .. } => Some(line.as_str()),
        Change::Leave { .. } => None,
    };
    let update = EnsembleUpdate::Incremental {
        joinings: joining.into_iter(),
        leavings: leaving.as_deref().into_iter(),
    };
    let reply = tokio::time::timeout(TIMEOUT, client.update_ensemble(update, from_version)).await;
    let subject = change.subject();
    if let Ok(Err(error)) = &reply {
        if *error == zookeeper_client::Error::BadVersion {
            return Err(format!(
                "the ensemble's configuration changed since server.{subject}'s change was planned; planning again"
            ));
        }
        tracing::info!(%error, subject, "reconfiguration replied with an error; verifying");
    }
    // Verify through fresh sessions, retrying while the ensemble settles.
    for _ in 0..10 {
        for address in addresses {
            if let Ok(config) = async { read(&connect(address, password).await?).await }.await {
                if change.done(&config) {
                    return Ok(());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!(
        "reconfiguration of server.{subject} is not visible in the ensemble's configuration yet (reply: {})",
        match reply {
            Ok(Ok(_)) => "ok".to_string(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        }
    ))
}

/// A new random password for the super user.
pub fn new_password() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_voters_and_the_version_of_the_committed_configuration() {
        let text = "server.1=zk-0.h:2888:3888:participant;0.0.0.0:2181\n\
                    server.2=zk-1.h:2888:3888:participant;0.0.0.0:2181\n\
                    server.4=zk-3.h:2888:3888:observer;0.0.0.0:2181\nversion=10000000b";
        let config = EnsembleConfig::parse(text).unwrap();
        assert_eq!(config.voters, BTreeSet::from([1, 2]));
        assert_eq!(config.version, Some(0x1_0000_000b));
        assert!(Change::Leave { id: 3 }.done(&config));
        assert!(!Change::Leave { id: 2 }.done(&config));
        assert!(EnsembleConfig::parse("server.1=h:1:2;3\nversion=zz").is_err());
    }
}
