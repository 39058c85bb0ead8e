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
use vocabulary::{ports, VotingRole};
use zk_agent::members::Membership;
use zookeeper_client::{Acl, AuthId, Client, EnsembleUpdate, Permission, TlsOptions};

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a reconfiguration is checked for before the reconcile moves on.
const VERIFY_FOR: Duration = Duration::from_secs(15);
const CONFIG_NODE: &str = "/zookeeper/config";

/// The ensemble's committed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsembleConfig {
    /// Server ids of the voting members.
    pub voters: BTreeSet<u64>,
    /// The configuration's version (ZooKeeper's `version=` line, a zxid), when it has one.
    pub version: Option<i64>,
    /// Each member as ZooKeeper committed it.
    pub members: std::collections::BTreeMap<u64, zk_agent::members::Member>,
    /// Who, besides the super user, may reconfigure: x509 identities with WRITE on the
    /// configuration node. `None` when it was not read.
    pub reconfig_writers: Option<BTreeSet<String>>,
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
            members: membership.members.iter().map(|m| (m.id, m.clone())).collect(),
            reconfig_writers: None,
        })
    }
}

/// How the operator proves it is the super user: its client certificate over mutual TLS, or,
/// while members still take it (before the migration to TLS is done), the super user's password
/// over plaintext.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub tls: Option<TlsIdentity>,
    pub password: Option<String>,
}

/// The operator's client certificate and the authorities it trusts, in PEM.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub ca_bundle: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A member as the operator reaches it: its stable DNS name (TLS, verified against the member
/// certificate) and its pod's plaintext client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub plaintext: Option<String>,
}

async fn connect(target: &Target, credentials: &Credentials) -> Result<Client, String> {
    let mut failures = Vec::new();
    if let Some(tls) = &credentials.tls {
        let address = format!("{}:{}", target.host, ports::SECURE_CLIENT);
        let options = TlsOptions::new()
            .with_pem_ca(&tls.ca_bundle)
            .and_then(|o| o.with_pem_identity(&tls.cert_pem, &tls.key_pem))
            .map_err(|e| format!("the operator's TLS identity: {e}"))?;
        let connect = Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .with_tls(options)
            .with_fail_eagerly()
            .secure_connect(&address);
        match tokio::time::timeout(TIMEOUT, connect).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(e)) => failures.push(format!("{address} over TLS: {e}")),
            Err(_) => failures.push(format!("{address} over TLS: timed out")),
        }
    }
    if let (Some(password), Some(address)) = (&credentials.password, &target.plaintext) {
        let connect = Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .with_auth("digest", format!("super:{password}").as_bytes())
            .with_fail_eagerly()
            .connect(address);
        match tokio::time::timeout(TIMEOUT, connect).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(e)) => failures.push(format!("{address}: {e}")),
            Err(_) => failures.push(format!("{address}: timed out")),
        }
    }
    Err(format!("cannot reach {}: {}", target.host, failures.join("; ")))
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
    let mut config = EnsembleConfig::parse(&String::from_utf8_lossy(&data))?;
    if let Ok(Ok((acl, _))) = tokio::time::timeout(TIMEOUT, client.get_acl(CONFIG_NODE)).await {
        config.reconfig_writers = Some(writers(&acl));
    }
    Ok(config)
}

fn writers(acl: &[Acl]) -> BTreeSet<String> {
    acl.iter()
        .filter(|a| a.scheme() == "x509" && a.permission() & Permission::WRITE == Permission::WRITE)
        .map(|a| a.id().to_string())
        .collect()
}

/// Lets exactly `writers` (x509 identities) reconfigure besides the super user; everyone reads
/// the configuration, as by default. Members get it for the hand-off in their preStop hook:
/// they already hold the ensemble's data and its quorum credentials.
pub async fn allow_reconfiguration(
    targets: &[Target],
    credentials: &Credentials,
    writers: &BTreeSet<String>,
) -> Result<(), String> {
    let target = targets.first().ok_or("no serving member")?;
    let client = connect(target, credentials).await?;
    let mut acl = vec![Acl::new(Permission::READ, AuthId::anyone())];
    acl.extend(
        writers
            .iter()
            .map(|id| Acl::new(Permission::READ | Permission::WRITE, AuthId::new("x509", id))),
    );
    tokio::time::timeout(TIMEOUT, client.set_acl(CONFIG_NODE, &acl, None))
        .await
        .map_err(|_| "setting the ACL of the configuration node timed out".to_string())?
        .map_err(|e| format!("setting the ACL of the configuration node: {e}"))?;
    Ok(())
}

/// The committed configuration, from the first of `targets` that answers.
pub async fn read_config(targets: &[Target], credentials: &Credentials) -> Option<EnsembleConfig> {
    for target in targets {
        match async { read(&connect(target, credentials).await?).await }.await {
            Ok(config) => return Some(config),
            Err(error) => tracing::debug!(%error, "cannot read the ensemble configuration"),
        }
    }
    None
}

/// The `server.N=...` line of member `id`, as the members file has it.
pub fn member_line(names: &Names, settings: &OperatorSettings, id: u64, local_plaintext: bool) -> String {
    let ordinals = u32::try_from(id).unwrap_or(u32::MAX);
    crate::resources::membership(names, settings, ordinals, local_plaintext)
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
            Change::Join { id, line } => {
                let wanted = Membership::parse(line, "the joining line").ok();
                let wanted = wanted.as_ref().and_then(|m| m.member(*id));
                config.voters.contains(id)
                    && config
                        .members
                        .get(id)
                        .is_some_and(|committed| wanted.is_some_and(|w| w.equivalent(committed)))
            }
            Change::Leave { id } => !config.voters.contains(id),
        }
    }
    fn subject(&self) -> u64 {
        match self {
            Change::Join { id, .. } | Change::Leave { id } => *id,
        }
    }
}

/// Carries out `change` through the first of `targets` (serving members, the one leaving
/// last), conditional on the configuration still being `from_version`, then verifies that the
/// committed configuration says so.
pub async fn reconfigure(
    targets: &[Target],
    credentials: &Credentials,
    change: &Change,
    from_version: Option<i64>,
) -> Result<(), String> {
    let target = targets.first().ok_or("no serving member to reconfigure through")?;
    let client = connect(target, credentials).await?;
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
    // Verify through fresh sessions, retrying while the ensemble settles, for a bounded time:
    // the next reconcile observes again anyway.
    let deadline = std::time::Instant::now() + VERIFY_FOR;
    while std::time::Instant::now() < deadline {
        for target in targets {
            if let Ok(config) = async { read(&connect(target, credentials).await?).await }.await {
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
        // ZooKeeper writes "all addresses" as 0.0.0.0: the same line as one without an address.
        let same = Change::Join {
            id: 1,
            line: "server.1=zk-0.h:2888:3888:participant;2181".into(),
        };
        assert!(same.done(&config));
        let local = Change::Join {
            id: 1,
            line: "server.1=zk-0.h:2888:3888:participant;127.0.0.1:2181".into(),
        };
        assert!(!local.done(&config));
        assert!(EnsembleConfig::parse("server.1=h:1:2;3\nversion=zz").is_err());
    }
}
