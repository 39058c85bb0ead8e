//! `zk-agent hand-off`, the pod's preStop hook: a leader about to stop hands leadership to a
//! follower first, so that the ensemble does not elect. It commits its own line with the other
//! quorum port (dynamic reconfiguration); ZooKeeper keeps a leader only while its committed line
//! keeps its quorum address and otherwise designates a synced follower, which the followers
//! switch to at once. The operator moves the line back once the member serves again.
//!
//! The member authenticates with its own certificate (x509), which the operator allows to
//! reconfigure (the ACL of `/zookeeper/config`). Anything that goes wrong ends the hook: the
//! member then stops as it would have, and the others elect. It never delays a stop by more
//! than its time limit.

use crate::members::Membership;
use crate::probe::{self, ServingMode};
use std::path::Path;
use std::time::Duration;
use vocabulary::{ports, tls};
use zookeeper_client::{Client, EnsembleUpdate, TlsOptions};

/// The most a hand-off may add to a member's stop.
pub const TIME_LIMIT: Duration = Duration::from_secs(5);
/// After the commit, time for the followers to take the switch from the old leader's queue
/// before it closes its connections.
const FLUSH: Duration = Duration::from_millis(200);
/// Before the hand-off, time for the Service to stop routing to this pod (its deletion started
/// the hook): the hand-off disconnects every client, and a client reconnecting to the pod that
/// stops waits for it to go away. The leader serves as usual meanwhile.
const ROUTES_SETTLE: Duration = Duration::from_secs(1);

/// The line `line` of member `id` with the other quorum port.
pub fn handed_off_line(membership: &Membership, id: u64) -> Option<String> {
    let mut member = membership.members.iter().find(|m| m.id == id)?.clone();
    member.quorum_port = if member.quorum_port == ports::QUORUM_HANDOFF {
        ports::QUORUM
    } else {
        ports::QUORUM_HANDOFF
    };
    Some(member.to_string())
}

/// Hands leadership off if this member leads; says what it did.
pub fn run(id: u64, tls_secret_dir: &Path) -> Result<String, String> {
    let local = format!("127.0.0.1:{}", ports::CLIENT);
    match probe::srvr(&local, Duration::from_secs(1)) {
        Ok(serving) if serving.mode == ServingMode::Leader => {}
        Ok(serving) => return Ok(format!("serving as {:?}: no leadership to hand off", serving.mode)),
        Err(why) => return Ok(format!("not serving ({why}): no leadership to hand off")),
    }
    let read = |file: &str| {
        std::fs::read_to_string(tls_secret_dir.join(file))
            .map_err(|e| format!("{}: {e}", tls_secret_dir.join(file).display()))
    };
    let (cert, key, ca) = (read(tls::CERT_FILE)?, read(tls::KEY_FILE)?, read(tls::CA_FILE)?);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(TIME_LIMIT, hand_off(id, &cert, &key, &ca))
            .await
            .map_err(|_| format!("gave up after {}s", TIME_LIMIT.as_secs()))?
    })
}

async fn hand_off(id: u64, cert: &str, key: &str, ca: &str) -> Result<String, String> {
    let options = TlsOptions::new()
        .with_pem_ca(ca)
        .and_then(|o| o.with_pem_identity(cert, key))
        .map_err(|e| format!("the member's TLS identity: {e}"))?;
    // The member certificate names 127.0.0.1, so the local TLS port verifies.
    let address = format!("127.0.0.1:{}", ports::SECURE_CLIENT);
    let client = Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .with_tls(options)
        .with_fail_eagerly()
        .secure_connect(&address)
        .await
        .map_err(|e| format!("connecting to {address}: {e}"))?;
    let (data, _) = client
        .get_config()
        .await
        .map_err(|e| format!("reading the configuration: {e}"))?;
    let text = String::from_utf8_lossy(&data);
    let membership = Membership::parse(&text, "the committed configuration").map_err(|e| e.to_string())?;
    let voters = membership
        .members
        .iter()
        .filter(|m| m.role == crate::members::Role::Participant)
        .count();
    if voters < 2 {
        return Ok("the only voter: no one to hand leadership to".into());
    }
    let own = membership
        .members
        .iter()
        .find(|m| m.id == id)
        .ok_or(format!("server.{id} is not in the configuration"))?;
    // A leader listens on the quorum port it started leading on. Once its committed line names
    // another one, leadership was handed off already (the operator's roll): it only holds its
    // clients until it notices, so it stops at once.
    if !listening_on(own.quorum_port) {
        return Ok(format!(
            "leadership was handed off already (the committed line names quorum port {}, not the one this leader listens on)",
            own.quorum_port
        ));
    }
    let line = handed_off_line(&membership, id).ok_or(format!("server.{id} is not in the configuration"))?;
    // Not when the operator handed off already (above): then the old leader holds its clients.
    tokio::time::sleep(ROUTES_SETTLE).await;
    let version = membership
        .version
        .as_deref()
        .and_then(|v| i64::from_str_radix(v, 16).ok());
    let update = EnsembleUpdate::Incremental {
        joinings: Some(line.as_str()).into_iter(),
        leavings: None.into_iter(),
    };
    client
        .update_ensemble(update, version)
        .await
        .map_err(|e| format!("committing {line}: {e}"))?;
    tokio::time::sleep(FLUSH).await;
    Ok(format!("committed {line}: a follower leads now"))
}

/// Whether a socket of this pod listens on `port` (the kernel's tables; no tools needed).
fn listening_on(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .any(|table| std::fs::read_to_string(table).is_ok_and(|text| listens(&text, port)))
}

/// In a /proc/net/tcp table: a local address on `port` in state 0A (LISTEN).
fn listens(table: &str, port: u16) -> bool {
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or("");
        let state = fields.nth(1).unwrap_or("");
        local.ends_with(&port) && state == "0A"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_moves_to_the_other_quorum_port_and_back() {
        let membership = Membership::parse(
            "server.1=zk-0.zk-peers:2888:3888:participant;2181\nserver.2=zk-1.zk-peers:2889:3888:participant;2181\nversion=100000000",
            "test",
        )
        .unwrap();
        assert_eq!(
            handed_off_line(&membership, 1).unwrap(),
            "server.1=zk-0.zk-peers:2889:3888:participant;2181"
        );
        assert_eq!(
            handed_off_line(&membership, 2).unwrap(),
            "server.2=zk-1.zk-peers:2888:3888:participant;2181"
        );
        assert!(handed_off_line(&membership, 3).is_none());
    }

    #[test]
    fn a_listening_socket_is_found_in_the_kernel_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0B48 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0885 0100007F:D2B6 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0000000000000000 20 4 30 10 -1
";
        assert!(listens(table, 2888));
        assert!(!listens(table, 2889));
        assert!(!listens(table, 2181), "an established connection is not listening");
    }
}
