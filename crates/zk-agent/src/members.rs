//! Ensemble membership in ZooKeeper's own dynamic-configuration syntax:
//! `server.<id>=<host>:<quorum port>:<election port>[:participant|observer];[<client address>:]<client port>`.
//!
//! The operator mounts a members file in exactly this syntax, so what it writes, what the agent
//! reads and what ZooKeeper stores after a reconfiguration are one format.

use crate::AgentError;
use std::fmt;

use vocabulary::ports;
pub use vocabulary::{PeerDomain, VotingRole as Role};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub role: Role,
    /// Address the member's client port listens on; `None` means all addresses.
    pub client_address: Option<String>,
    pub client_port: u16,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = self.role.as_str();
        write!(
            f,
            "server.{}={}:{}:{}:{};",
            self.id, self.host, self.quorum_port, self.election_port, role
        )?;
        if let Some(address) = &self.client_address {
            write!(f, "{address}:")?;
        }
        write!(f, "{}", self.client_port)
    }
}

impl Member {
    /// The same member, as ZooKeeper means it: a client address of 0.0.0.0 is what ZooKeeper
    /// writes for "all addresses", which a line without an address also means.
    pub fn equivalent(&self, other: &Member) -> bool {
        self.id == other.id
            && self.host == other.host
            && self.quorum_port == other.quorum_port
            && self.election_port == other.election_port
            && self.role == other.role
            && self.same_client_address(other)
    }

    /// Whether both lines have the member listen for clients on the same address and port (no
    /// address and 0.0.0.0 both mean all addresses).
    pub fn same_client_address(&self, other: &Member) -> bool {
        let address = |m: &Member| m.client_address.clone().filter(|a| a != "0.0.0.0");
        self.client_port == other.client_port && address(self) == address(other)
    }
}

/// The members of an ensemble, ordered by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub members: Vec<Member>,
    /// The configuration version ZooKeeper assigned (hex, from its `version=` line), if any.
    pub version: Option<String>,
}

impl Membership {
    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Renders the dynamic configuration file: one `server.N` line per member.
    pub fn render(&self) -> String {
        self.members.iter().map(|m| format!("{m}\n")).collect()
    }

    /// Membership of a StatefulSet with `replicas` members behind a headless Service, all voters.
    pub fn from_statefulset(name: &str, replicas: u32, domain: &PeerDomain) -> Membership {
        let members = (0..replicas)
            .map(|ordinal| Member {
                id: vocabulary::myid_for_ordinal(ordinal),
                host: domain.host(name, ordinal),
                quorum_port: ports::QUORUM,
                election_port: ports::ELECTION,
                role: Role::Participant,
                client_address: None,
                client_port: ports::CLIENT,
            })
            .collect();
        Membership { members, version: None }
    }

    /// Parses a members file or one of ZooKeeper's dynamic configuration files.
    /// `source` names the file in error messages.
    pub fn parse(text: &str, source: &str) -> Result<Membership, AgentError> {
        let mut members: Vec<Member> = Vec::new();
        let mut version = None;
        for property in crate::config::properties(text, source)? {
            let (key, value) = (property.key, property.value);
            let bad = |message: String| property.error(message);
            if key == "version" {
                version = Some(value.to_string());
                continue;
            }
            let id = key
                .strip_prefix("server.")
                .and_then(|id| id.parse::<u64>().ok())
                .filter(|id| *id > 0)
                .ok_or_else(|| bad(format!("expected server.<id> with a positive id, found {key:?}")))?;
            let member = parse_server(id, value.trim()).map_err(bad)?;
            if members.iter().any(|m| m.id == id) {
                return Err(bad(format!("server.{id} is listed twice")));
            }
            members.push(member);
        }
        if members.is_empty() {
            return Err(AgentError::Config {
                origin: source.to_string(),
                message: "lists no server.<id> lines".into(),
            });
        }
        if !members.iter().any(|m| m.role == Role::Participant) {
            return Err(AgentError::Config {
                origin: source.to_string(),
                message: "has no participant: at least one member must vote".into(),
            });
        }
        members.sort_by_key(|m| m.id);
        Ok(Membership { members, version })
    }
}

fn parse_server(id: u64, value: &str) -> Result<Member, String> {
    let (server, client) = value
        .split_once(';')
        .ok_or_else(|| format!("server.{id} has no ';<client port>' part: {value:?}"))?;
    let mut parts: Vec<&str> = server.split(':').collect();
    let role = match parts.last().copied() {
        Some("participant") => {
            parts.pop();
            Role::Participant
        }
        Some("observer") => {
            parts.pop();
            Role::Observer
        }
        _ => Role::Participant,
    };
    let [host, quorum_port, election_port] = parts[..] else {
        return Err(format!(
            "server.{id} must be <host>:<quorum port>:<election port>[:role], found {server:?}"
        ));
    };
    if host.is_empty() {
        return Err(format!("server.{id} has an empty host"));
    }
    let port = |what: &str, text: &str| {
        text.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("server.{id} {what} {text:?} is not a port number"))
    };
    let (client_address, client_port) = match client.rsplit_once(':') {
        Some((address, port_text)) => (Some(address.to_string()), port("client port", port_text)?),
        None => (None, port("client port", client)?),
    };
    Ok(Member {
        id,
        host: host.to_string(),
        quorum_port: port("quorum port", quorum_port)?,
        election_port: port("election port", election_port)?,
        role,
        client_address,
        client_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> PeerDomain {
        PeerDomain {
            service: "zookeeper-headless".into(),
            namespace: "prod".into(),
            cluster_domain: "cluster.local".into(),
        }
    }

    #[test]
    fn statefulset_membership_uses_stable_dns_names() {
        let m = Membership::from_statefulset("zookeeper", 3, &domain());
        assert_eq!(
            m.render(),
            "server.1=zookeeper-0.zookeeper-headless.prod.svc.cluster.local:2888:3888:participant;2181\n\
             server.2=zookeeper-1.zookeeper-headless.prod.svc.cluster.local:2888:3888:participant;2181\n\
             server.3=zookeeper-2.zookeeper-headless.prod.svc.cluster.local:2888:3888:participant;2181\n"
        );
    }

    #[test]
    fn parses_what_it_renders_and_zookeepers_own_files() {
        let m = Membership::from_statefulset("zk", 5, &domain());
        assert_eq!(Membership::parse(&m.render(), "f").unwrap(), m);

        let zk_written = "server.2=10.0.0.2:2889:3889:observer;127.0.0.2:2182\n\
                          server.1=zk-0:2888:3888:participant;0.0.0.0:2181\nversion=100000000\n";
        let parsed = Membership::parse(zk_written, "zoo.cfg.dynamic.100000000").unwrap();
        assert_eq!(parsed.version.as_deref(), Some("100000000"));
        assert_eq!(parsed.members[0].id, 1);
        assert_eq!(parsed.members[1].role, Role::Observer);
        assert_eq!(parsed.members[1].client_address.as_deref(), Some("127.0.0.2"));
        assert_eq!(parsed.members[1].client_port, 2182);
        // Without a role, a server is a participant (ZooKeeper's default).
        let m = Membership::parse("server.7=h:1:2;3", "f").unwrap();
        assert_eq!(m.members[0].role, Role::Participant);
    }

    #[test]
    fn rejects_malformed_members_naming_the_line() {
        let cases = [
            ("server.1=h:2888:3888;2181\nserver.1=h:2888:3888;2181", "listed twice"),
            ("server.0=h:2888:3888;2181", "positive id"),
            ("srv.1=h:2888:3888;2181", "server.<id>"),
            ("server.1=h:2888;2181", "<host>:<quorum port>"),
            ("server.1=h:2888:3888", "client port"),
            ("server.1=h:2888:99999;2181", "election port"),
            ("server.1=h:2888:3888:observer;2181", "no participant"),
            ("# nothing\n", "no server"),
            ("garbage", "key=value"),
        ];
        for (text, expected) in cases {
            let err = Membership::parse(text, "members").unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?} gave {err}");
            assert!(err.contains("members"), "{err}");
        }
        let err = Membership::parse("\n\nserver.1=h:x:3888;2181", "members")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
    }
}
