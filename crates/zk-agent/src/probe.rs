//! Four-letter-word checks against a ZooKeeper server's client port.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

pub use vocabulary::ServingRole as ServingMode;

/// What `srvr` says about a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrvrState {
    /// In a quorum and serving clients.
    Serving(Serving),
    /// Running but not serving: looking for a leader, or syncing.
    NotServing,
}

/// A serving member, as `srvr` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    pub mode: ServingMode,
    /// The last transaction it has seen; its upper 32 bits are the leader's epoch.
    pub zxid: Option<u64>,
    /// The ZooKeeper release it runs (`3.9.4`), from `Zookeeper version: 3.9.4-<commit>, built on ...`.
    pub version: Option<String>,
}

/// Sends a four-letter word and returns the whole reply.
pub fn four_letter_word(address: &str, word: &str, timeout: Duration) -> std::io::Result<String> {
    let target: SocketAddr = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("{address} does not resolve")))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(word.as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    Ok(reply)
}

pub fn parse_srvr(reply: &str) -> Result<SrvrState, String> {
    if reply.contains("not currently serving requests") {
        return Ok(SrvrState::NotServing);
    }
    if reply.contains("is not executed because it is not in the whitelist") {
        return Err("srvr is not in 4lw.commands.whitelist".into());
    }
    let field = |name: &str| reply.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    let mode = match field("Mode:") {
        Some(mode) => ServingMode::from_mode(mode)
            .ok_or_else(|| format!("srvr reported mode {mode:?}, not leader, follower or observer"))?,
        None => return Err(format!("srvr reply has no Mode line: {reply:?}")),
    };
    let zxid = field("Zxid:").and_then(|z| u64::from_str_radix(z.trim_start_matches("0x"), 16).ok());
    let version = field("Zookeeper version:")
        .and_then(|v| v.split([',', '-']).next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from);
    Ok(SrvrState::Serving(Serving { mode, zxid, version }))
}

/// `srvr`, asked in plaintext: serving (with role, zxid and version) or not, and why not.
pub fn srvr(address: &str, timeout: Duration) -> Result<Serving, String> {
    let reply = four_letter_word(address, "srvr", timeout).map_err(|e| format!("srvr to {address}: {e}"))?;
    match parse_srvr(&reply)? {
        SrvrState::Serving(serving) => Ok(serving),
        SrvrState::NotServing => Err(format!(
            "{address} is running but not serving: no quorum yet, or still syncing"
        )),
    }
}

/// Ready means serving in a quorum as leader, follower or observer: not merely "the JVM answers".
pub fn ready(address: &str, timeout: Duration) -> Result<ServingMode, String> {
    srvr(address, timeout).map(|s| s.mode)
}

/// Live means the server process answers on its client port, whether or not it has a quorum:
/// a member that is looking for a leader or syncing a large snapshot must not be restarted.
pub fn live(address: &str, timeout: Duration) -> Result<(), String> {
    let reply = four_letter_word(address, "ruok", timeout).map_err(|e| format!("ruok to {address}: {e}"))?;
    if reply.trim() == "imok" {
        Ok(())
    } else {
        Err(format!("ruok to {address} answered {reply:?}, not imok"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_srvr_replies() {
        let leader = "Zookeeper version: 3.9.4-7246445ec281f3dbf53dc54e970c914f39713903, built on 2025-08-19 19:53 UTC\nLatency min/avg/max: 0/0.0/0\nReceived: 3\nSent: 2\n\
                      Connections: 1\nOutstanding: 0\nZxid: 0x100000002\nMode: leader\nNode count: 5\n";
        assert_eq!(
            parse_srvr(leader).unwrap(),
            SrvrState::Serving(Serving {
                mode: ServingMode::Leader,
                zxid: Some(0x1_0000_0002),
                version: Some("3.9.4".into()),
            })
        );
        assert_eq!(
            parse_srvr("This ZooKeeper instance is not currently serving requests\n").unwrap(),
            SrvrState::NotServing
        );
        assert!(parse_srvr("srvr is not executed because it is not in the whitelist.\n").is_err());
        assert!(parse_srvr("Mode: standalone\n").unwrap_err().contains("standalone"));
        assert!(parse_srvr("").is_err());
    }
}
