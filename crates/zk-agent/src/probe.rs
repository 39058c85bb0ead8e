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
    let deadline = std::time::Instant::now() + timeout;
    let socket = stream.try_clone()?;
    let reply = read_reply(&mut stream, deadline, |t| socket.set_read_timeout(Some(t)))?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// The largest four-letter-word reply read: `mntr` and `conf` answer in a few KiB. A server
/// that sends more (or keeps sending) is not ZooKeeper answering; the operator asks every
/// member of every cluster, and a member's image is its owner's to choose.
pub const MAX_REPLY_BYTES: usize = 256 * 1024;

/// Reads a reply to its end, within `deadline` as a whole (not only per read: a server
/// dripping a byte at a time would otherwise hold the reader forever), and at most
/// `MAX_REPLY_BYTES`. `set_timeout` bounds each read by what is left.
pub fn read_reply<R: Read>(
    reader: &mut R,
    deadline: std::time::Instant,
    mut set_timeout: impl FnMut(Duration) -> std::io::Result<()>,
) -> std::io::Result<Vec<u8>> {
    let mut reply = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the reply did not end in time ({} bytes so far)", reply.len()),
            ));
        }
        set_timeout(left)?;
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(reply),
            Ok(n) => {
                if reply.len() + n > MAX_REPLY_BYTES {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("the reply is longer than {MAX_REPLY_BYTES} bytes: not a ZooKeeper answer"),
                    ));
                }
                reply.extend_from_slice(&buffer[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // A socket's read timeout ends a read with WouldBlock on Unix, TimedOut elsewhere.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no reply in time ({} bytes so far): {e}", reply.len()),
                ));
            }
            // ZooKeeper closes a TLS connection without close_notify after answering.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !reply.is_empty() => return Ok(reply),
            Err(e) => return Err(e),
        }
    }
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

    /// A "member" that answers a four-letter word with an endless stream, and one that drips a
    /// byte at a time: the reader gives up on both, in bounded memory and time.
    #[test]
    fn endless_or_dripping_replies_are_cut_off() {
        use std::net::TcpListener;
        for drip in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap().to_string();
            std::thread::spawn(move || {
                let (mut peer, _) = listener.accept().unwrap();
                let mut word = [0u8; 4];
                let _ = peer.read_exact(&mut word);
                let chunk = vec![b'x'; if drip { 1 } else { 64 * 1024 }];
                while peer.write_all(&chunk).is_ok() {
                    if drip {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            });
            let started = std::time::Instant::now();
            let error = four_letter_word(&address, "srvr", Duration::from_secs(2)).unwrap_err();
            assert!(
                started.elapsed() < Duration::from_secs(4),
                "{drip}: {:?}",
                started.elapsed()
            );
            let expected = if drip {
                std::io::ErrorKind::TimedOut
            } else {
                std::io::ErrorKind::InvalidData
            };
            assert_eq!(error.kind(), expected, "{drip}: {error}");
        }
    }

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
