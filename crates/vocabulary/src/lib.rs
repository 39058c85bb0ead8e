//! One vocabulary for the API, the operator and zk-agent. Ports, DNS names, server ids, roles,
//! quorum size, and the zoo.cfg keys and JVM properties that belong to zk-agent are defined here
//! and nowhere else.

use std::fmt;

/// The ports of a member. Peers use quorum and election; clients the client port.
pub mod ports {
    pub const CLIENT: u16 = 2181;
    pub const QUORUM: u16 = 2888;
    pub const ELECTION: u16 = 3888;
    pub const METRICS: u16 = 7000;
    pub const ADMIN: u16 = 8080;
}

/// The one mapping between StatefulSet ordinals and ZooKeeper server ids: id = ordinal + 1
/// (ZooKeeper ids are positive). It never changes for a pod name.
pub fn myid_for_ordinal(ordinal: u32) -> u64 {
    u64::from(ordinal) + 1
}

/// The ordinal of server `id`, if it can be one.
pub fn ordinal_for_myid(id: u64) -> Option<u32> {
    id.checked_sub(1).and_then(|o| u32::try_from(o).ok())
}

/// Votes needed among `voters` for a quorum: a strict majority.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// What a serving member is, as ZooKeeper's `srvr` reports it (`Mode:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServingRole {
    Leader,
    Follower,
    Observer,
}

impl ServingRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ServingRole::Leader => "leader",
            ServingRole::Follower => "follower",
            ServingRole::Observer => "observer",
        }
    }

    /// The role `srvr` names in its `Mode:` line; `None` for anything else (e.g. standalone).
    pub fn from_mode(mode: &str) -> Option<ServingRole> {
        [ServingRole::Leader, ServingRole::Follower, ServingRole::Observer]
            .into_iter()
            .find(|r| r.as_str() == mode)
    }
}

impl fmt::Display for ServingRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a member takes part in the ensemble's committed configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VotingRole {
    Participant,
    Observer,
}

impl VotingRole {
    pub fn as_str(self) -> &'static str {
        match self {
            VotingRole::Participant => "participant",
            VotingRole::Observer => "observer",
        }
    }
}

/// The headless Service of a cluster's members: their stable DNS names live under it.
pub fn headless_service(statefulset: &str) -> String {
    format!("{statefulset}-headless")
}

/// Where peers live in DNS: `<statefulset>-<i>.<service>.<namespace>.svc.<cluster domain>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDomain {
    pub service: String,
    pub namespace: String,
    pub cluster_domain: String,
}

impl PeerDomain {
    pub fn host(&self, statefulset: &str, ordinal: u32) -> String {
        format!(
            "{statefulset}-{ordinal}.{}.{}.svc.{}",
            self.service, self.namespace, self.cluster_domain
        )
    }
}

/// zoo.cfg keys zk-agent writes itself, each with what to do instead of setting it.
pub mod config {
    pub const OWNED_KEYS: &[(&str, &str)] = &[
        (
            "dataDir",
            "the data directory is always <data dir>/zookeeper on the member's volume",
        ),
        (
            "dataLogDir",
            "transaction logs stay beside the snapshots on the member's volume",
        ),
        (
            "clientPort",
            "the client port comes from the member's line in the members file",
        ),
        (
            "clientPortAddress",
            "the client address comes from the member's line in the members file",
        ),
        (
            "dynamicConfigFile",
            "membership is written by the agent and by ZooKeeper's reconfiguration",
        ),
        ("standaloneEnabled", "a member always runs as part of an ensemble"),
        (
            "reconfigEnabled",
            "dynamic reconfiguration is how members are added and removed",
        ),
        (
            "quorumListenOnAllIPs",
            "peers must be reachable on the pod's address whatever its DNS name resolves to",
        ),
        ("admin.enableServer", "the AdminServer is managed by zk-agent"),
        ("admin.serverAddress", "the AdminServer is managed by zk-agent"),
        ("admin.serverPort", "the AdminServer is managed by zk-agent"),
        (
            "metricsProvider.className",
            "the Prometheus metrics provider is always on",
        ),
        (
            "metricsProvider.httpHost",
            "the metrics endpoint's address is managed by zk-agent",
        ),
        ("metricsProvider.httpPort", "the metrics port is managed by zk-agent"),
    ];

    /// Key prefixes that describe membership, which belongs to the members file.
    pub const OWNED_PREFIXES: &[&str] = &["server.", "group.", "weight."];
}

/// JVM system properties zk-agent sets itself, with why a user may not.
pub mod jvm {
    pub const OWNED_PROPERTIES: &[(&str, &str)] = &[
        (
            "zookeeper.db.autocreate",
            "it is the lost-disk guard: a member with an empty disk must sync before it votes",
        ),
        (
            "zookeeper.snapshot.trust.empty",
            "an empty snapshot with transaction logs means lost data, not something to trust",
        ),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_ordinals_map_one_to_one() {
        assert_eq!(myid_for_ordinal(0), 1);
        assert_eq!(ordinal_for_myid(myid_for_ordinal(41)), Some(41));
        assert_eq!(ordinal_for_myid(0), None);
    }

    #[test]
    fn quorum_is_a_strict_majority() {
        assert_eq!([1, 2, 3, 4, 5, 7].map(quorum), [1, 2, 2, 3, 3, 4]);
    }

    #[test]
    fn roles_read_back_what_they_print() {
        for role in [ServingRole::Leader, ServingRole::Follower, ServingRole::Observer] {
            assert_eq!(ServingRole::from_mode(role.as_str()), Some(role));
        }
        assert_eq!(ServingRole::from_mode("standalone"), None);
    }
}
