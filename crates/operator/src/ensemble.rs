//! Talking to the ensemble itself: its committed configuration and dynamic reconfiguration.
//!
//! A reconfiguration's reply is not trusted on its own (a client connected to a server that is
//! being removed may see the connection drop although the change committed): every change is
//! verified by reading the configuration back, and is idempotent.

use crate::resources::{Names, OperatorSettings};
use crate::status::Observed;
use std::collections::BTreeSet;
use std::time::Duration;
use zk_agent::members::{Membership, PeerDomain, Role};
use zookeeper_client::{Client, EnsembleUpdate};

const TIMEOUT: Duration = Duration::from_secs(10);

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

async fn read_membership(client: &Client) -> Result<Membership, String> {
    let (data, _) = tokio::time::timeout(TIMEOUT, client.get_config())
        .await
        .map_err(|_| "reading the configuration timed out".to_string())?
        .map_err(|e| format!("reading the configuration: {e}"))?;
    Membership::parse(&String::from_utf8_lossy(&data), "the ensemble's configuration").map_err(|e| e.to_string())
}

fn voter_ids(membership: &Membership) -> BTreeSet<u64> {
    membership
        .members
        .iter()
        .filter(|m| m.role == Role::Participant)
        .map(|m| m.id)
        .collect()
}

/// Serving members' addresses, `avoid` last.
fn serving_addresses(observed: &Observed, avoid: Option<u64>) -> Vec<String> {
    let mut members: Vec<_> = observed
        .members
        .iter()
        .filter(|m| m.serving.is_some() && !m.terminating)
        .collect();
    members.sort_by_key(|m| Some(zk_agent::identity::myid_for_ordinal(m.ordinal)) == avoid);
    members.iter().filter_map(|m| m.address.clone()).collect()
}

/// The voters of the ensemble's committed configuration, as a serving member reports them.
pub async fn voters(observed: &Observed, password: &str) -> Option<BTreeSet<u64>> {
    for address in serving_addresses(observed, None) {
        match async { read_membership(&connect(&address, password).await?).await }.await {
            Ok(membership) => return Some(voter_ids(&membership)),
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

/// Adds `joining` (a `server.N=...` line) or removes server `leaving`, then verifies that the
/// committed configuration says so. `subject` is the member concerned.
pub async fn reconfigure(
    observed: &Observed,
    password: &str,
    joining: Option<&str>,
    leaving: Option<u64>,
    subject: u64,
) -> Result<(), String> {
    let addresses = serving_addresses(observed, leaving);
    let address = addresses.first().ok_or("no serving member to reconfigure through")?;
    let client = connect(address, password).await?;
    let leaving_text = leaving.map(|id| id.to_string());
    let update = EnsembleUpdate::Incremental {
        joinings: joining.into_iter(),
        leavings: leaving_text.as_deref().into_iter(),
    };
    let reply = tokio::time::timeout(TIMEOUT, client.update_ensemble(update, None)).await;
    if let Ok(Err(error)) = &reply {
        tracing::info!(%error, subject, "reconfiguration replied with an error; verifying");
    }
    // Verify through a fresh session, retrying while the ensemble settles.
    let wanted = |voters: &BTreeSet<u64>| {
        if joining.is_some() {
            voters.contains(&subject)
        } else {
            !voters.contains(&subject)
        }
    };
    for _ in 0..10 {
        for address in &addresses {
            if let Ok(membership) = async { read_membership(&connect(address, password).await?).await }.await {
                if wanted(&voter_ids(&membership)) {
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
pub fn new_password() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 24];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
