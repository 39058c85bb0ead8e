//! One vocabulary for the API, the operator and zk-agent. Ports, DNS names, server ids, roles,
//! quorum size, and the zoo.cfg keys and JVM properties that belong to zk-agent are defined here
//! and nowhere else.

use std::fmt;

/// Secrets and claims that a ZooKeeperCluster names (its own certificate authority, a backup
/// target's credentials, CA and volume) are mounted into containers that run the cluster's
/// image, or signed with. Whoever may edit a ZooKeeperCluster is not thereby allowed to read
/// every Secret of the namespace: each such object opts in, by a label that names the cluster,
/// set by someone who may change it.
pub mod references {
    use std::collections::BTreeMap;

    /// The label key's prefix; the cluster's name follows (at most 52 characters, so the key
    /// fits the 63 of a label name).
    pub const ALLOW_LABEL_PREFIX: &str = "allow.zookeeper.zkop.io/";
    pub const ALLOW_LABEL_VALUE: &str = "true";

    /// The label that lets cluster `cluster` use an object.
    pub fn allow_label(cluster: &str) -> String {
        format!("{ALLOW_LABEL_PREFIX}{cluster}")
    }

    /// Whether an object with these labels lets `cluster` use it.
    pub fn allows(labels: Option<&BTreeMap<String, String>>, cluster: &str) -> bool {
        labels
            .and_then(|l| l.get(&allow_label(cluster)))
            .is_some_and(|v| v == ALLOW_LABEL_VALUE)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn only_the_label_naming_the_cluster_with_true_allows() {
            let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
                pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
            };
            assert!(allows(Some(&labels(&[("allow.zookeeper.zkop.io/zk", "true")])), "zk"));
            assert!(!allows(
                Some(&labels(&[("allow.zookeeper.zkop.io/zk", "true")])),
                "other"
            ));
            assert!(!allows(Some(&labels(&[("allow.zookeeper.zkop.io/zk", "yes")])), "zk"));
            assert!(!allows(Some(&labels(&[("app.kubernetes.io/instance", "zk")])), "zk"));
            assert!(!allows(None, "zk"));
        }
    }
}

/// The ports of a member. Peers use quorum and election; clients the client port.
pub mod ports {
    /// Plaintext clients; with TLS on it listens on 127.0.0.1 only (probes, tools in the pod).
    pub const CLIENT: u16 = 2181;
    /// TLS clients (mutual TLS).
    pub const SECURE_CLIENT: u16 = 2182;
    pub const QUORUM: u16 = 2888;
    /// The quorum port a leader's line moves to in order to hand leadership over before it
    /// restarts: ZooKeeper keeps a leader whose committed line keeps its quorum address, and
    /// otherwise designates a synced follower as leader, without an election. The line moves
    /// back to `QUORUM` once the member has restarted. A member listens on it only while leading.
    pub const QUORUM_HANDOFF: u16 = 2889;
    pub const ELECTION: u16 = 3888;
    pub const METRICS: u16 = 7000;
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

/// TLS: where the files are, who the super user is, and the steps from plaintext to TLS.
pub mod tls {
    /// The operator's Secret, mounted read-only: `tls.crt`, `tls.key` (PKCS#8), `ca.crt`.
    pub const SECRET_DIR: &str = "/etc/zookeeper-tls";
    pub const CERT_FILE: &str = "tls.crt";
    pub const KEY_FILE: &str = "tls.key";
    pub const CA_FILE: &str = "ca.crt";
    /// Where zk-agent puts the files ZooKeeper reads, each replaced by write-then-rename so that
    /// ZooKeeper's certificate reload notices (it misses Kubernetes' symlink swap of a Secret).
    pub const LIVE_DIR: &str = "/tls";
    /// Key and certificate chain in one PEM file, as ZooKeeper's PEM key store reads it.
    pub const KEY_STORE: &str = "member.pem";
    pub const TRUST_STORE: &str = "ca.pem";
    /// The common name of the operator's client certificate, ZooKeeper's x509 super user.
    pub const OPERATOR_CN: &str = "zookeeper-operator";

    /// The admin guide's steps from a plaintext ensemble to TLS, each a rolling restart.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub enum Phase {
        /// No TLS.
        Plaintext,
        /// The TLS client port is on; peers accept TLS and plaintext (port unification) but
        /// still connect in plaintext.
        Unified,
        /// Peers connect over TLS and still accept plaintext.
        QuorumTls,
        /// TLS only between peers; plaintext clients only on 127.0.0.1.
        Tls,
    }

    impl Phase {
        pub const ALL: [Phase; 4] = [Phase::Plaintext, Phase::Unified, Phase::QuorumTls, Phase::Tls];

        pub fn as_str(self) -> &'static str {
            match self {
                Phase::Plaintext => "plaintext",
                Phase::Unified => "unified",
                Phase::QuorumTls => "quorum-tls",
                Phase::Tls => "tls",
            }
        }

        pub fn parse(text: &str) -> Option<Phase> {
            Phase::ALL.into_iter().find(|p| p.as_str() == text)
        }

        /// The next step toward `target`, one at a time in either direction.
        pub fn toward(self, target: Phase) -> Phase {
            let here = Phase::ALL.iter().position(|p| *p == self).unwrap_or(0);
            let there = Phase::ALL.iter().position(|p| *p == target).unwrap_or(0);
            match here.cmp(&there) {
                std::cmp::Ordering::Less => Phase::ALL[here + 1],
                std::cmp::Ordering::Greater => Phase::ALL[here - 1],
                std::cmp::Ordering::Equal => self,
            }
        }

        /// Members serve TLS clients on the secure port.
        pub fn secure_clients(self) -> bool {
            self != Phase::Plaintext
        }

        /// The plaintext client port listens on 127.0.0.1 only.
        pub fn local_plaintext(self) -> bool {
            self == Phase::Tls
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

/// zoo.cfg: the keys zk-agent writes itself, and the allow-list of settings users may tune.
/// ZooKeeper turns every key it does not know into the system property `zookeeper.<key>`, read
/// after the JVM's own flags, so anything outside the allow-list could switch off a safety
/// setting: it is refused at admission and again by the agent.
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
        (
            "admin.enableServer",
            "the AdminServer is off: it serves snapshots and restores to anyone",
        ),
        (
            "admin.serverAddress",
            "the AdminServer is off: it serves snapshots and restores to anyone",
        ),
        (
            "admin.serverPort",
            "the AdminServer is off: it serves snapshots and restores to anyone",
        ),
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

    /// What a setting's value may be.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Value {
        /// Digits only.
        Integer,
        /// `true` or `false`.
        Boolean,
        /// One of these words.
        OneOf(&'static [&'static str]),
        /// A comma-separated list of these words.
        ListOf(&'static [&'static str]),
    }

    /// Four-letter words that report on a server without naming znodes, sessions or changing
    /// anything: `dump`, `wchc`, `wchp` (paths and sessions), `crst`, `srst`, `stmk` (changes)
    /// stay off.
    pub const FOUR_LETTER_WORDS: &[&str] = &[
        "srvr", "stat", "ruok", "mntr", "conf", "isro", "envi", "cons", "wchs", "dirs",
    ];

    /// The settings users may tune, and the form of their values.
    pub const ALLOWED: &[(&str, Value)] = &[
        ("tickTime", Value::Integer),
        ("initLimit", Value::Integer),
        ("syncLimit", Value::Integer),
        ("connectToLearnerMasterLimit", Value::Integer),
        ("cnxTimeout", Value::Integer),
        ("maxClientCnxns", Value::Integer),
        ("maxCnxns", Value::Integer),
        ("clientPortListenBacklog", Value::Integer),
        ("minSessionTimeout", Value::Integer),
        ("maxSessionTimeout", Value::Integer),
        ("globalOutstandingLimit", Value::Integer),
        ("autopurge.snapRetainCount", Value::Integer),
        ("autopurge.purgeInterval", Value::Integer),
        ("snapCount", Value::Integer),
        ("snapSizeLimitInKb", Value::Integer),
        ("preAllocSize", Value::Integer),
        ("commitLogCount", Value::Integer),
        ("fsync.warningthresholdms", Value::Integer),
        ("leaderServes", Value::OneOf(&["yes", "no"])),
        ("localSessionsEnabled", Value::Boolean),
        ("localSessionsUpgradingEnabled", Value::Boolean),
        ("enforceQuota", Value::Boolean),
        ("digest.enabled", Value::Boolean),
        ("metricsProvider.exportJvmInfo", Value::Boolean),
        ("4lw.commands.whitelist", Value::ListOf(FOUR_LETTER_WORDS)),
    ];

    pub fn allowed(key: &str) -> Option<Value> {
        ALLOWED.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// Why `value` is not a value for a setting of this form, if it is not.
    pub fn check_value(form: Value, value: &str) -> Result<(), String> {
        let ok = match form {
            Value::Integer => !value.is_empty() && value.len() <= 18 && value.bytes().all(|b| b.is_ascii_digit()),
            Value::Boolean => value == "true" || value == "false",
            Value::OneOf(words) => words.contains(&value),
            Value::ListOf(words) => value.split(',').all(|w| words.contains(&w)),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("must be {}", describe(form)))
        }
    }

    pub fn describe(form: Value) -> String {
        match form {
            Value::Integer => "a whole number (digits only)".into(),
            Value::Boolean => "true or false".into(),
            Value::OneOf(words) => format!("one of {}", words.join(", ")),
            Value::ListOf(words) => format!("a comma-separated list (no spaces) of {}", words.join(", ")),
        }
    }

    /// The same rule as a regular expression (for admission), anchored.
    pub fn pattern(form: Value) -> String {
        match form {
            Value::Integer => "^[0-9]{1,18}$".into(),
            Value::Boolean => "^(true|false)$".into(),
            Value::OneOf(words) => format!("^({})$", words.join("|")),
            Value::ListOf(words) => {
                let one = words.join("|");
                format!("^({one})(,({one}))*$")
            }
        }
    }
}

/// JVM options: what zk-agent sets itself, and the allow-list of what users may add. An option
/// outside the list could load an agent (`-javaagent`, `-agentlib:jdwp`, a debugger), read an
/// argument file (`@file`), change the main class or the class path, or override a property the
/// agent owns; it is refused at admission and again by the agent, and the agent's own
/// properties come after the user's on the command line, where the JVM lets the last one win.
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

    /// Options allowed exactly as written.
    pub const ALLOWED_FLAGS: &[&str] = &[
        "-XX:+UseG1GC",
        "-XX:+UseZGC",
        "-XX:+UseParallelGC",
        "-XX:+UseSerialGC",
        "-XX:+AlwaysPreTouch",
        "-XX:+ExitOnOutOfMemoryError",
        "-Xlog:gc",
        "-Xlog:gc*",
    ];

    /// Options allowed with a value after the prefix: heap, stack, GC and memory sizing, and a
    /// few system properties that tune ZooKeeper's limits.
    pub const ALLOWED_PREFIXES: &[&str] = &[
        "-Xmx",
        "-Xms",
        "-Xmn",
        "-Xss",
        "-XX:MaxRAMPercentage=",
        "-XX:InitialRAMPercentage=",
        "-XX:MinRAMPercentage=",
        "-XX:MaxGCPauseMillis=",
        "-XX:G1HeapRegionSize=",
        "-XX:InitiatingHeapOccupancyPercent=",
        "-XX:ParallelGCThreads=",
        "-XX:ConcGCThreads=",
        "-XX:ActiveProcessorCount=",
        "-XX:MaxMetaspaceSize=",
        "-XX:MaxDirectMemorySize=",
        // 1 compiles with C1 only: about 40% less CPU for a member to start (3.5 against 2.1
        // CPU-seconds in its first 50 s, measured on the local cluster), at a lower peak
        // throughput. For small members on few cores (zk-agent's ensemble tests run so).
        "-XX:TieredStopAtLevel=",
        "-Djute.maxbuffer=",
        "-Dzookeeper.jute.maxbuffer=",
        "-Dzookeeper.commitProcessor.numWorkerThreads=",
        "-Djava.net.preferIPv4Stack=",
        "-Djava.net.preferIPv6Addresses=",
    ];

    /// What may follow an allowed prefix: a number with an optional unit, or a boolean.
    const VALUE_CHARS: &str = "0123456789.kKmMgGtT%";

    /// Why `option` may not be given, if it may not.
    pub fn check(option: &str) -> Result<(), String> {
        if ALLOWED_FLAGS.contains(&option) {
            return Ok(());
        }
        if let Some((property, why)) = OWNED_PROPERTIES
            .iter()
            .find(|(p, _)| option.strip_prefix("-D").is_some_and(|o| o.starts_with(p)))
        {
            return Err(format!("-D{property} is managed by zk-agent ({why})"));
        }
        let value = ALLOWED_PREFIXES.iter().find_map(|p| option.strip_prefix(p));
        match value {
            Some(value)
                if !value.is_empty()
                    && (value == "true" || value == "false" || value.chars().all(|c| VALUE_CHARS.contains(c))) =>
            {
                Ok(())
            }
            Some(_) => Err(format!(
                "{option:?} has no value or a value that is not a number, size or true/false"
            )),
            None => Err(format!(
                "{option:?} is not an option zk-agent lets through: heap, stack, GC and memory sizing \
                 ({}, ...) and the flags {} are",
                ALLOWED_PREFIXES[..6].join(", "),
                ALLOWED_FLAGS.join(" ")
            )),
        }
    }

    /// The same rule as a regular expression (for admission), anchored.
    pub fn pattern() -> String {
        let escape = |s: &str| s.replace('.', "\\.").replace('+', "\\+").replace('*', "\\*");
        let flags = ALLOWED_FLAGS.iter().map(|f| escape(f)).collect::<Vec<_>>().join("|");
        let prefixes = ALLOWED_PREFIXES.iter().map(|p| escape(p)).collect::<Vec<_>>().join("|");
        format!("^(({flags})|({prefixes})([0-9.kKmMgGtT%]+|true|false))$")
    }
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
    fn config_values_are_checked_by_their_form() {
        use config::{check_value, Value};
        assert!(check_value(Value::Integer, "2000").is_ok());
        for bad in ["", "2 000", "20\n00", "-1", "1e3", "two-seconds"] {
            assert!(check_value(Value::Integer, bad).is_err(), "{bad:?}");
        }
        assert!(check_value(Value::Boolean, "true").is_ok());
        assert!(check_value(Value::Boolean, "yes").is_err());
        let words = config::allowed("4lw.commands.whitelist").unwrap();
        assert!(check_value(words, "srvr,stat,mntr").is_ok());
        assert!(
            check_value(words, "srvr,dump").is_err(),
            "dump lists sessions and paths"
        );
        assert!(check_value(words, "srvr, stat").is_err());
        assert!(config::allowed("skipACL").is_none());
        assert!(config::allowed("db.autocreate").is_none());
    }

    #[test]
    fn jvm_options_are_an_allow_list() {
        for ok in [
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-XX:MaxRAMPercentage=75.0",
            "-Djute.maxbuffer=4194304",
            "-Djava.net.preferIPv4Stack=true",
        ] {
            assert!(jvm::check(ok).is_ok(), "{ok}");
        }
        for bad in [
            "-agentlib:jdwp=transport=dt_socket,server=y,address=*:5005",
            "-javaagent:/tmp/a.jar",
            "@/tmp/args",
            "-cp",
            "-Dzookeeper.db.autocreate=true",
            "-Dzookeeper.skipACL=yes",
            "-Xmx512m org.example.Main",
            "-Xmx",
            "-XX:+UnlockDiagnosticVMOptions",
        ] {
            assert!(jvm::check(bad).is_err(), "{bad}");
        }
        assert!(jvm::check("-Dzookeeper.db.autocreate=true")
            .unwrap_err()
            .contains("lost-disk guard"));
    }

    #[test]
    fn tls_phases_move_one_step_at_a_time() {
        use tls::Phase::*;
        assert_eq!(Plaintext.toward(Tls), Unified);
        assert_eq!(Unified.toward(Tls), QuorumTls);
        assert_eq!(QuorumTls.toward(Tls), Tls);
        assert_eq!(Tls.toward(Tls), Tls);
        assert_eq!(Tls.toward(Plaintext), QuorumTls);
        for phase in tls::Phase::ALL {
            assert_eq!(tls::Phase::parse(phase.as_str()), Some(phase));
        }
    }

    #[test]
    fn roles_read_back_what_they_print() {
        for role in [ServingRole::Leader, ServingRole::Follower, ServingRole::Observer] {
            assert_eq!(ServingRole::from_mode(role.as_str()), Some(role));
        }
        assert_eq!(ServingRole::from_mode("standalone"), None);
    }
}
