//! zk-agent: runs inside each ZooKeeper pod. It works out the member's identity and the ensemble,
//! waits for DNS, writes `myid` and the configuration, applies the lost-disk guard, then becomes
//! the ZooKeeper JVM; `zk-agent probe` answers the kubelet's probes.

pub mod backup;
pub mod config;
pub mod dns;
pub mod guard;
pub mod handoff;
pub mod identity;
pub mod jvm;
pub mod members;
pub mod probe;
pub mod start;
pub mod tls;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A flag or environment variable is missing or wrong.
    #[error("{field}: {message}")]
    Usage { field: String, message: String },
    /// A configuration input (members file, overrides) is invalid.
    #[error("{origin}: {message}")]
    Config { origin: String, message: String },
    #[error("{0}")]
    Unsafe(String),
    #[error("{context}: {error}")]
    Io { context: String, error: std::io::Error },
    #[error("gave up waiting for DNS after {seconds}s; these names still do not resolve: {names}. Check that the headless Service exists, publishes not-ready addresses, and that the pods are scheduled")]
    DnsTimeout { seconds: u64, names: String },
}

impl AgentError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
        let context = context.into();
        move |error| AgentError::Io { context, error }
    }

    /// Exit status: 2 for bad input the user must fix, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Usage { .. } | AgentError::Config { .. } => 2,
            _ => 1,
        }
    }
}

pub fn log(line: &str) {
    eprintln!("zk-agent: {line}");
}
