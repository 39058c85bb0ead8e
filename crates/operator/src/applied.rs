//! What the operator last applied, so that a reconcile that changes nothing writes nothing.
//!
//! An object is applied again when what the operator wants of it changed, when the object as
//! observed is not the version the operator's last apply produced (someone else changed it), or
//! when the last apply is older than the resync period (drift in objects the operator does not
//! observe is repaired within it). After an operator restart everything is applied once.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an applied object is trusted to be as the operator left it without looking.
pub const RESYNC: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    digest: [u8; 32],
    /// The resourceVersion the apply returned.
    resource_version: Option<String>,
    at: Instant,
}

/// What the reconcile saw of an object before applying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed<'a> {
    /// It did not look (the object is not part of the observation).
    NotLooked,
    /// It looked and the object does not exist: it must be applied whatever was applied before.
    Absent,
    /// It exists at this resourceVersion.
    Version(Option<&'a str>),
}

#[derive(Debug, Default)]
pub struct AppliedMemo {
    objects: Mutex<HashMap<String, Applied>>,
}

/// A digest of what is applied.
pub fn digest<T: serde::Serialize>(object: &T) -> [u8; 32] {
    Sha256::digest(serde_json::to_vec(object).unwrap_or_default()).into()
}

impl AppliedMemo {
    /// `key` was applied as `digest` and nothing says it changed since: `observed` is what the
    /// reconcile saw of the object, where it looked.
    pub fn unchanged(&self, key: &str, digest: &[u8; 32], observed: Observed<'_>, now: Instant) -> bool {
        let objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        objects.get(key).is_some_and(|applied| {
            applied.digest == *digest
                && now.saturating_duration_since(applied.at) < RESYNC
                && match observed {
                    Observed::NotLooked => true,
                    Observed::Absent => false,
                    Observed::Version(rv) => rv.is_some() && applied.resource_version.as_deref() == rv,
                }
        })
    }

    pub fn record(&self, key: &str, digest: [u8; 32], resource_version: Option<String>, now: Instant) {
        let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        objects.insert(
            key.to_string(),
            Applied {
                digest,
                resource_version,
                at: now,
            },
        );
    }

    pub fn forget(&self, key: &str) {
        self.objects.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Forgets every object whose key contains `part` (a deleted cluster's `<namespace>/<name>`;
    /// another cluster's objects may go too, which costs them one apply).
    pub fn forget_matching(&self, part: &str) {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| !key.contains(part));
    }

    pub fn len(&self) -> usize {
        self.objects.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_applied_again_only_when_something_says_it_changed() {
        let memo = AppliedMemo::default();
        let t0 = Instant::now();
        let wanted = digest(&serde_json::json!({"spec": {"replicas": 3}}));
        let seen = |rv| Observed::Version(Some(rv));
        let key = "StatefulSet ns/zk";
        assert!(!memo.unchanged(key, &wanted, Observed::NotLooked, t0), "never applied");
        memo.record(key, wanted, Some("41".into()), t0);
        let later = t0 + Duration::from_secs(30);
        assert!(memo.unchanged(key, &wanted, seen("41"), later));
        assert!(
            memo.unchanged(key, &wanted, Observed::NotLooked, later),
            "not looked at"
        );
        assert!(
            !memo.unchanged(key, &wanted, seen("57"), later),
            "changed by someone else since"
        );
        assert!(!memo.unchanged(key, &wanted, Observed::Absent, later), "deleted since");
        let other = digest(&serde_json::json!({"spec": {"replicas": 5}}));
        assert!(!memo.unchanged(key, &other, seen("41"), later), "wanted differently");
        assert!(
            !memo.unchanged(key, &wanted, seen("41"), t0 + RESYNC),
            "resynced after a while"
        );
        memo.record("Service ns/zk-client", wanted, None, t0);
        memo.forget_matching("ns/zk");
        assert!(memo.is_empty());
    }
}
