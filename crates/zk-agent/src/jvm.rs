//! The ZooKeeper JVM's command line.

use std::path::{Path, PathBuf};

/// Share of the container's memory limit given to the heap; the rest is for metaspace,
/// thread stacks, Netty's direct buffers and the page cache the transaction log lives on.
const HEAP_SHARE_PERCENT: u64 = 50;
const MIN_HEAP_MIB: u64 = 64;
/// How long the JVM caches a resolved peer address.
const DNS_CACHE_SECONDS: u32 = 2;
/// How long it remembers that a name did not resolve (a pod being recreated).
const DNS_NEGATIVE_CACHE_SECONDS: u32 = 1;
/// Security properties the agent writes beside zoo.cfg and gives the JVM.
pub const DNS_SECURITY_FILE: &str = "dns.security";

/// The JVM's DNS caching as security properties. The JDK's java.security sets
/// `networkaddress.cache.negative.ttl=10`, which wins over the `sun.net.inetaddr.negative.ttl`
/// system property: only a security properties file (`-Djava.security.properties`) changes it.
pub fn dns_security_properties() -> String {
    format!(
        "# Written by zk-agent: peers' addresses are cached briefly, so that a member recreated with a\n\
         # new IP, or whose name did not resolve a moment ago, is found again within seconds.\n\
         networkaddress.cache.ttl={DNS_CACHE_SECONDS}\nnetworkaddress.cache.negative.ttl={DNS_NEGATIVE_CACHE_SECONDS}\n"
    )
}

/// `-Xmx`/`-Xms` for a memory limit, unless the user set the heap in their JVM options.
pub fn heap_flags(memory_limit_bytes: Option<u64>, user_options: &[String]) -> Vec<String> {
    let user_sized = user_options
        .iter()
        .any(|o| o.starts_with("-Xmx") || o.starts_with("-XX:MaxRAMPercentage") || o.starts_with("-XX:MaxHeapSize"));
    match memory_limit_bytes {
        Some(limit) if !user_sized => {
            let mib = (limit / 1024 / 1024 * HEAP_SHARE_PERCENT / 100).max(MIN_HEAP_MIB);
            vec![format!("-Xmx{mib}m"), format!("-Xms{mib}m")]
        }
        _ => Vec::new(),
    }
}

/// The container's memory limit from cgroup v2 or v1; `None` when unlimited or unknown.
pub fn container_memory_limit() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(|text| parse_memory_limit(&text))
}

fn parse_memory_limit(text: &str) -> Option<u64> {
    let limit = text.trim().parse::<u64>().ok()?;
    // cgroup v1 reports "unlimited" as a huge page-aligned number.
    (limit < 1 << 60).then_some(limit)
}

/// Rejects user JVM options outside the allow-list (see `vocabulary::jvm`).
pub fn check_user_options(options: &[String]) -> Result<(), String> {
    for option in options {
        vocabulary::jvm::check(option).map_err(|why| format!("{why}; remove {option:?}"))?;
    }
    Ok(())
}

pub struct JavaCommand {
    pub java: PathBuf,
    pub zookeeper_home: PathBuf,
    pub user_options: Vec<String>,
    pub memory_limit_bytes: Option<u64>,
    pub config_file: PathBuf,
    /// `super:<base64 sha1>` digest of the super user the operator authenticates as (for reconfiguration).
    pub super_digest: Option<String>,
    /// The x509 subject of the super user (the operator's client certificate), with TLS on.
    pub x509_super_user: Option<String>,
}

impl JavaCommand {
    /// The full argument list after the `java` executable.
    pub fn args(&self) -> Vec<String> {
        let home = self.zookeeper_home.to_string_lossy();
        let mut args = heap_flags(self.memory_limit_bytes, &self.user_options);
        args.extend(self.user_options.iter().cloned());
        // The agent's own settings come after the user's: of two -D flags the JVM keeps the last.
        args.extend([
            // Lost-disk guard: an empty data directory does not vote until synced (see guard.rs).
            "-Dzookeeper.db.autocreate=false".to_string(),
            // A pod recreated under the same name has a new IP: peers must not keep connecting
            // to the old one for the JVM's default 30 s of cached DNS answers.
            format!("-Dsun.net.inetaddr.ttl={DNS_CACHE_SECONDS}"),
            format!(
                "-Djava.security.properties={}",
                self.config_file.with_file_name(DNS_SECURITY_FILE).display()
            ),
            "-XX:+ExitOnOutOfMemoryError".to_string(),
            format!("-Dlogback.configurationFile={home}/conf/logback.xml"),
        ]);
        if let Some(digest) = &self.super_digest {
            args.push(format!("-Dzookeeper.DigestAuthenticationProvider.superDigest={digest}"));
        }
        if let Some(subject) = &self.x509_super_user {
            args.push(format!("-Dzookeeper.X509AuthenticationProvider.superUser={subject}"));
        }
        args.extend([
            "-cp".to_string(),
            format!("{home}/lib/*:{home}/conf"),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain".to_string(),
            self.config_file.to_string_lossy().into_owned(),
        ]);
        args
    }

    /// Replaces this process with the JVM, so that signals reach it and its exit status is the pod's.
    pub fn exec(&self) -> std::io::Error {
        use std::os::unix::process::CommandExt;
        std::process::Command::new(&self.java).args(self.args()).exec()
    }
}

pub fn java_from_env() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| Path::new(&home).join("bin/java"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_is_half_the_limit_unless_the_user_sized_it() {
        let gib = 1024 * 1024 * 1024;
        assert_eq!(heap_flags(Some(2 * gib), &[]), vec!["-Xmx1024m", "-Xms1024m"]);
        assert_eq!(heap_flags(Some(64 * 1024 * 1024), &[]), vec!["-Xmx64m", "-Xms64m"]);
        assert!(heap_flags(Some(2 * gib), &["-Xmx300m".into()]).is_empty());
        assert!(heap_flags(Some(2 * gib), &["-XX:MaxRAMPercentage=75".into()]).is_empty());
        assert!(heap_flags(None, &[]).is_empty());
        assert_eq!(parse_memory_limit("max\n"), None);
        assert_eq!(parse_memory_limit("9223372036854771712\n"), None);
        assert_eq!(parse_memory_limit("536870912\n"), Some(536870912));
    }

    #[test]
    fn refuses_options_that_switch_off_the_guard() {
        assert!(check_user_options(&["-Xmx1g".into(), "-XX:+UseG1GC".into()]).is_ok());
        assert!(check_user_options(&["-agentlib:jdwp=transport=dt_socket".into()]).is_err());
        let err = check_user_options(&["-Dzookeeper.db.autocreate=true".into()]).unwrap_err();
        assert!(err.contains("lost-disk guard") && err.contains("remove"), "{err}");
    }

    #[test]
    fn command_line_guards_empty_databases_and_puts_owned_properties_after_user_options() {
        let cmd = JavaCommand {
            java: "java".into(),
            zookeeper_home: "/opt/zookeeper".into(),
            user_options: vec!["-Djute.maxbuffer=4194304".into()],
            memory_limit_bytes: Some(1 << 30),
            config_file: "/data/conf/zoo.cfg".into(),
            super_digest: Some("super:abc=".into()),
            x509_super_user: Some("CN=zookeeper-operator".into()),
        };
        let args = cmd.args();
        assert_eq!(args[0], "-Xmx512m");
        assert!(args.contains(&"-Dzookeeper.db.autocreate=false".to_string()));
        assert!(
            args.contains(&"-Dsun.net.inetaddr.ttl=2".to_string()),
            "peers' new pod IPs are seen quickly"
        );
        assert!(
            args.contains(&"-Djava.security.properties=/data/conf/dns.security".to_string()),
            "and names that did not resolve are asked again soon: {args:?}"
        );
        assert!(dns_security_properties().contains("\nnetworkaddress.cache.negative.ttl=1\n"));
        assert!(args.contains(&"-Dzookeeper.DigestAuthenticationProvider.superDigest=super:abc=".to_string()));
        let user = args.iter().position(|a| a == "-Djute.maxbuffer=4194304").unwrap();
        let guard = args
            .iter()
            .position(|a| a == "-Dzookeeper.db.autocreate=false")
            .unwrap();
        let main = args
            .iter()
            .position(|a| a == "org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .unwrap();
        assert!(user < guard && guard < main, "{args:?}");
        assert_eq!(args.last().unwrap(), "/data/conf/zoo.cfg");
        assert!(args.contains(&"/opt/zookeeper/lib/*:/opt/zookeeper/conf".to_string()));
    }
}
