//! Rendering `zoo.cfg`: the agent's defaults, the user's overrides, and the keys the agent owns.

use crate::AgentError;
use std::path::{Path, PathBuf};

use vocabulary::config::{OWNED_KEYS, OWNED_PREFIXES};
use vocabulary::tls::Phase;

/// Four-letter words the probes and the operator rely on; a user whitelist is extended with them.
pub const REQUIRED_FOUR_LETTER_WORDS: &[&str] = &["srvr", "mntr", "ruok"];
const WHITELIST_KEY: &str = "4lw.commands.whitelist";

/// Defaults a user may override, in the order they are written.
const DEFAULTS: &[(&str, &str)] = &[
    ("tickTime", "2000"),
    ("initLimit", "10"),
    // A leader cut off from its followers gives up after syncLimit ticks (4 s), and followers
    // notice a lost leader as fast: well inside the 10 s session timeout many clients use, so
    // their sessions survive by reconnecting to the majority. ZooKeeper's sample uses 5 (10 s).
    ("syncLimit", "2"),
    ("maxClientCnxns", "60"),
    ("autopurge.snapRetainCount", "3"),
    ("autopurge.purgeInterval", "1"),
    ("metricsProvider.exportJvmInfo", "true"),
];

/// A user's `key=value` overrides, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides(pub Vec<(String, String)>);

impl Overrides {
    /// Parses override lines (`key=value`, `#` comments): only the allow-listed settings, each
    /// in its form; keys the agent owns are refused with what to do instead.
    /// `source` names where they came from, for error messages.
    pub fn parse(text: &str, source: &str) -> Result<Overrides, AgentError> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for property in properties(text, source)? {
            let (key, value) = (property.key, property.value);
            let bad = |message: String| property.error(message);
            if key.contains(char::is_whitespace) {
                return Err(bad(format!("{key:?} is not a configuration key")));
            }
            if let Some((_, instead)) = OWNED_KEYS.iter().find(|(owned, _)| *owned == key) {
                return Err(bad(format!(
                    "{key} is managed by zk-agent and cannot be overridden: {instead}; remove it"
                )));
            }
            if let Some(prefix) = OWNED_PREFIXES.iter().find(|p| key.starts_with(*p)) {
                return Err(bad(format!(
                    "{key} is managed by zk-agent and cannot be overridden: {prefix}* lines describe membership, \
                     which comes from the members file (change the cluster's replicas instead); remove it"
                )));
            }
            let Some(form) = vocabulary::config::allowed(key) else {
                let allowed: Vec<&str> = vocabulary::config::ALLOWED.iter().map(|(k, _)| *k).collect();
                return Err(bad(format!(
                    "{key} is not a setting that can be changed (security, paths and membership belong to the \
                     operator; ZooKeeper would turn it into the system property zookeeper.{key}); the settings \
                     that can: {}",
                    allowed.join(", ")
                )));
            };
            vocabulary::config::check_value(form, value).map_err(|why| bad(format!("{key}={value:?}: {why}")))?;
            if entries.iter().any(|(k, _)| k == key) {
                return Err(bad(format!("{key} is set twice")));
            }
            entries.push((key.to_string(), value.to_string()));
        }
        Ok(Overrides(entries))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Everything `zoo.cfg` is rendered from.
#[derive(Debug, Clone)]
pub struct StaticConfig {
    pub zookeeper_data_dir: PathBuf,
    pub dynamic_config_file: PathBuf,
    pub bind_address: String,
    pub metrics_port: u16,
    pub overrides: Overrides,
    pub tls: TlsConfig,
}

/// TLS settings: the migration phase and where the key and trust stores are.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub phase: Phase,
    pub live_dir: PathBuf,
    /// Refuse sessions that did not authenticate (plaintext ones, on 127.0.0.1).
    pub enforce_authentication: bool,
    /// The release checks a connecting peer's certificate against the name its address
    /// resolves back to (see `checks_peers_by_reverse_dns`).
    pub peers_by_reverse_dns: bool,
}

/// ZooKeeper 3.8 checks the certificate of a peer that connects to it against the name its
/// address resolves back to (in Kubernetes, the pod's name under the headless Service): its
/// quorum TLS needs reverse DNS. 3.9 does not, so there reverse DNS is switched off: a name
/// from reverse DNS is whatever the one who controls that DNS answers (CVE-2026-24281).
pub fn checks_peers_by_reverse_dns(zookeeper_version: &str) -> bool {
    zookeeper_version.starts_with("3.8.")
}

impl TlsConfig {
    pub fn plaintext() -> TlsConfig {
        TlsConfig {
            phase: Phase::Plaintext,
            live_dir: PathBuf::from(vocabulary::tls::LIVE_DIR),
            enforce_authentication: false,
            peers_by_reverse_dns: false,
        }
    }
}

impl StaticConfig {
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# Written by zk-agent at every start; edits here are lost. Change the cluster resource instead.\n",
        );
        let mut line = |key: &str, value: &str| out.push_str(&format!("{key}={value}\n"));
        for (key, default) in DEFAULTS {
            line(key, self.overrides.get(key).unwrap_or(default));
        }
        line(WHITELIST_KEY, &four_letter_whitelist(self.overrides.get(WHITELIST_KEY)));
        for (key, value) in &self.overrides.0 {
            if key != WHITELIST_KEY && !DEFAULTS.iter().any(|(k, _)| k == key) {
                line(key, value);
            }
        }
        line("dataDir", &path_text(&self.zookeeper_data_dir));
        line("standaloneEnabled", "false");
        line("reconfigEnabled", "true");
        line("quorumListenOnAllIPs", "true");
        // The AdminServer's snapshot and restore commands would hand the whole data tree to, or
        // take one from, anyone who can reach the port: it stays off.
        line("admin.enableServer", "false");
        line(
            "metricsProvider.className",
            "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider",
        );
        line("metricsProvider.httpHost", &self.bind_address);
        line("metricsProvider.httpPort", &self.metrics_port.to_string());
        line("dynamicConfigFile", &path_text(&self.dynamic_config_file));
        for (key, value) in self.tls.lines() {
            line(key, &value);
        }
        out
    }
}

impl TlsConfig {
    /// The TLS settings of this phase (see `vocabulary::tls::Phase`): mutual TLS on the secure
    /// client port with x509 identities, PEM stores reloaded when zk-agent replaces them, and
    /// between peers the admin guide's steps (unification, TLS, TLS only).
    fn lines(&self) -> Vec<(&'static str, String)> {
        if !self.phase.secure_clients() {
            return Vec::new();
        }
        let key_store = path_text(&self.live_dir.join(vocabulary::tls::KEY_STORE));
        let trust_store = path_text(&self.live_dir.join(vocabulary::tls::TRUST_STORE));
        let mut lines = vec![
            (
                "serverCnxnFactory",
                "org.apache.zookeeper.server.NettyServerCnxnFactory".to_string(),
            ),
            ("secureClientPort", vocabulary::ports::SECURE_CLIENT.to_string()),
            ("ssl.keyStore.location", key_store.clone()),
            ("ssl.keyStore.type", "PEM".into()),
            ("ssl.trustStore.location", trust_store.clone()),
            ("ssl.trustStore.type", "PEM".into()),
            ("ssl.clientAuth", "need".into()),
            ("client.certReload", "true".into()),
            (
                "authProvider.x509",
                "org.apache.zookeeper.server.auth.X509AuthenticationProvider".into(),
            ),
            ("ssl.quorum.keyStore.location", key_store),
            ("ssl.quorum.keyStore.type", "PEM".into()),
            ("ssl.quorum.trustStore.location", trust_store),
            ("ssl.quorum.trustStore.type", "PEM".into()),
            ("sslQuorumReloadCertFiles", "true".into()),
            (
                "ssl.quorum.allowReverseDnsLookup",
                self.peers_by_reverse_dns.to_string(),
            ),
            ("sslQuorum", (self.phase >= Phase::QuorumTls).to_string()),
            ("portUnification", (self.phase < Phase::Tls).to_string()),
        ];
        if self.enforce_authentication {
            lines.push(("enforce.auth.enabled", "true".into()));
            // x509 only: ZooKeeper's digest provider accepts any `addauth digest user:password`,
            // so counting it would let every client pass (the digest ACLs it grants still need
            // the right password; the super user's digest is for plaintext ensembles, where
            // this setting is never written).
            lines.push(("enforce.auth.schemes", "x509".into()));
        }
        lines
    }
}

fn four_letter_whitelist(user: Option<&str>) -> String {
    let mut words: Vec<String> = REQUIRED_FOUR_LETTER_WORDS.iter().map(|w| w.to_string()).collect();
    for word in user
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        if !words.iter().any(|w| w == word) {
            words.push(word.to_string());
        }
    }
    words.join(",")
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// One `key=value` line of a ZooKeeper properties file, and where it stands for error messages.
pub struct Property<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub origin: String,
}

impl Property<'_> {
    pub fn error(&self, message: String) -> AgentError {
        AgentError::Config {
            origin: self.origin.clone(),
            message,
        }
    }
}

/// The `key=value` lines of `text`, trimmed, without blank lines and `#` comments; a line that is
/// not `key=value` is an error naming `source` and the line number.
pub fn properties<'a>(text: &'a str, source: &str) -> Result<Vec<Property<'a>>, AgentError> {
    let mut found = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let origin = format!("{source} line {}", index + 1);
        match line.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => found.push(Property {
                key: key.trim(),
                value: value.trim(),
                origin,
            }),
            _ => {
                return Err(AgentError::Config {
                    origin,
                    message: format!("{line:?} is not a key=value line"),
                })
            }
        }
    }
    Ok(found)
}

/// Reads `key=value` from a ZooKeeper properties file (the last occurrence wins, as in Java's Properties).
pub fn property(text: &str, key: &str) -> Option<String> {
    text.lines()
        .rev()
        .filter_map(|l| l.trim().split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(overrides: &str) -> StaticConfig {
        StaticConfig {
            zookeeper_data_dir: "/data/zookeeper".into(),
            dynamic_config_file: "/data/conf/zoo.cfg.dynamic".into(),
            bind_address: "0.0.0.0".into(),
            metrics_port: 7000,
            overrides: Overrides::parse(overrides, "overrides").unwrap(),
            tls: TlsConfig::plaintext(),
        }
    }

    #[test]
    fn tls_settings_follow_the_migration_phase() {
        let mut cfg = config("");
        assert!(!cfg.render().contains("ssl"), "no TLS in plaintext");
        let text = |cfg: &StaticConfig| cfg.render();
        for (phase, ssl_quorum, unification) in [
            (Phase::Unified, "false", "true"),
            (Phase::QuorumTls, "true", "true"),
            (Phase::Tls, "true", "false"),
        ] {
            cfg.tls = TlsConfig {
                phase,
                live_dir: "/tls".into(),
                enforce_authentication: false,
                peers_by_reverse_dns: false,
            };
            let rendered = text(&cfg);
            for expected in [
                "secureClientPort=2182\n".to_string(),
                "ssl.keyStore.location=/tls/member.pem\n".into(),
                "ssl.keyStore.type=PEM\n".into(),
                "ssl.clientAuth=need\n".into(),
                "client.certReload=true\n".into(),
                "sslQuorumReloadCertFiles=true\n".into(),
                "ssl.quorum.allowReverseDnsLookup=false\n".into(),
                format!("sslQuorum={ssl_quorum}\n"),
                format!("portUnification={unification}\n"),
            ] {
                assert!(
                    rendered.contains(&expected),
                    "{phase:?}: missing {expected:?} in\n{rendered}"
                );
            }
            assert!(!rendered.contains("enforce.auth"));
        }
        cfg.tls.enforce_authentication = true;
        assert!(cfg.render().contains("enforce.auth.enabled=true\n"));
        assert!(
            cfg.render().contains("enforce.auth.schemes=x509\n"),
            "digest passes for anyone"
        );
        cfg.tls.peers_by_reverse_dns = true;
        assert!(cfg.render().contains("ssl.quorum.allowReverseDnsLookup=true\n"));
    }

    #[test]
    fn reverse_dns_only_where_the_release_needs_it() {
        assert!(checks_peers_by_reverse_dns("3.8.6"));
        for off in ["3.9.5", "3.9.4", "3.10.0", ""] {
            assert!(!checks_peers_by_reverse_dns(off), "{off}");
        }
    }

    #[test]
    fn renders_owned_settings_and_defaults() {
        let text = config("").render();
        for expected in [
            "dataDir=/data/zookeeper\n",
            "standaloneEnabled=false\n",
            "reconfigEnabled=true\n",
            "quorumListenOnAllIPs=true\n",
            "4lw.commands.whitelist=srvr,mntr,ruok\n",
            "admin.enableServer=false\n",
            "metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n",
            "metricsProvider.httpPort=7000\n",
            "autopurge.purgeInterval=1\n",
            "dynamicConfigFile=/data/conf/zoo.cfg.dynamic\n",
            "tickTime=2000\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(
            !text.contains("clientPort"),
            "the client port belongs to the dynamic file:\n{text}"
        );
    }

    #[test]
    fn overrides_replace_defaults_and_add_keys_once() {
        let text =
            config("tickTime=3000\n# comment\nmaxSessionTimeout = 60000\n4lw.commands.whitelist=conf,srvr").render();
        assert!(text.contains("tickTime=3000\n"));
        assert_eq!(text.matches("tickTime=").count(), 1);
        assert!(text.contains("maxSessionTimeout=60000\n"));
        assert!(text.contains("4lw.commands.whitelist=srvr,mntr,ruok,conf\n"), "{text}");
        assert_eq!(property(&text, "tickTime").as_deref(), Some("3000"));
    }

    #[test]
    fn rejects_owned_keys_with_the_reason_and_the_fix() {
        for (line, hint) in [
            ("dataDir=/tmp", "data directory"),
            ("clientPort=2182", "members file"),
            ("server.4=x:1:2;3", "replicas"),
            ("reconfigEnabled=false", "reconfiguration"),
            ("metricsProvider.httpPort=9", "metrics port"),
        ] {
            let err = Overrides::parse(&format!("tickTime=1\n{line}"), "cfg")
                .unwrap_err()
                .to_string();
            assert!(err.contains("cfg line 2"), "{err}");
            assert!(err.contains("managed by zk-agent"), "{err}");
            assert!(err.contains(hint), "{line}: {err}");
            assert!(err.contains(line.split('=').next().unwrap()), "{err}");
        }
        assert!(Overrides::parse("tickTime=1\ntickTime=2", "cfg")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        for (line, hint) in [
            ("skipACL=yes", "not a setting that can be changed"),
            ("db.autocreate=true", "zookeeper.db.autocreate"),
            ("DigestAuthenticationProvider.superDigest=super:x", "not a setting"),
            ("tickTime=two-seconds", "whole number"),
            ("4lw.commands.whitelist=srvr,dump", "comma-separated list"),
        ] {
            let err = Overrides::parse(line, "cfg").unwrap_err().to_string();
            assert!(err.contains(hint), "{line}: {err}");
        }
        assert!(Overrides::parse("just words", "cfg")
            .unwrap_err()
            .to_string()
            .contains("key=value"));
    }
}
