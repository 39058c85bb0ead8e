//! Who this member is: the StatefulSet name and ordinal, and the ZooKeeper server id derived from them.
//!
//! The id is always `ordinal + 1` (ZooKeeper ids are positive). It never changes for a given
//! pod name, so a pod recreated under the same name keeps its id and its volume.

use crate::AgentError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The StatefulSet name: the pod hostname without its `-<ordinal>` suffix.
    pub name: String,
    pub ordinal: u32,
}

impl Identity {
    /// Parses a StatefulSet pod hostname `<name>-<ordinal>`, e.g. `zookeeper-2`.
    pub fn from_hostname(hostname: &str) -> Result<Identity, AgentError> {
        let short = hostname.split('.').next().unwrap_or_default();
        let bad = |why: &str| AgentError::Usage {
            field: "--hostname / ZK_HOSTNAME".into(),
            message: format!(
                "hostname {hostname:?} {why}; expected a StatefulSet pod name <name>-<ordinal> such as zookeeper-0 \
                 (set --ordinal to override the ordinal)"
            ),
        };
        let (name, ordinal) = short
            .rsplit_once('-')
            .ok_or_else(|| bad("has no '-<ordinal>' suffix"))?;
        if name.is_empty() {
            return Err(bad("has an empty name before the ordinal"));
        }
        let ordinal = ordinal.parse::<u32>().map_err(|_| bad("does not end in a number"))?;
        Ok(Identity {
            name: name.to_string(),
            ordinal,
        })
    }

    /// The ZooKeeper server id (`myid`).
    pub fn myid(&self) -> u64 {
        myid_for_ordinal(self.ordinal)
    }
}

pub use vocabulary::myid_for_ordinal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statefulset_hostnames() {
        let id = Identity::from_hostname("zookeeper-0").unwrap();
        assert_eq!(
            id,
            Identity {
                name: "zookeeper".into(),
                ordinal: 0
            }
        );
        assert_eq!(id.myid(), 1);
        let id = Identity::from_hostname("my-zk-12.my-zk-headless.ns.svc.cluster.local").unwrap();
        assert_eq!(id.name, "my-zk");
        assert_eq!(id.myid(), 13);
    }

    #[test]
    fn rejects_names_without_ordinal() {
        for bad in ["zookeeper", "zookeeper-", "zookeeper-x", "-3", ""] {
            let err = Identity::from_hostname(bad).unwrap_err().to_string();
            assert!(err.contains("ZK_HOSTNAME"), "{bad}: {err}");
        }
    }
}
