//! Preparing a member's start: every input is read and validated, DNS is waited for, and only
//! then are files written, each atomically, so a failed start leaves nothing half-written.

use crate::config::{property, Overrides, StaticConfig, TlsConfig};
use crate::dns::{self, Backoff};
use crate::guard::{self, EnsembleState, StartMode};
use crate::identity::Identity;
use crate::members::{Membership, PeerDomain, Role};
use crate::{log, probe, tls, AgentError};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct StartOptions {
    pub identity: Identity,
    /// Used when it exists; otherwise membership comes from `replicas`.
    pub members_file: Option<PathBuf>,
    pub replicas: Option<u32>,
    pub domain: PeerDomain,
    /// The member's volume: ZooKeeper's data in `zookeeper/`, configuration in `conf/`.
    pub data_dir: PathBuf,
    pub overrides_file: Option<PathBuf>,
    pub bind_address: String,
    pub metrics_port: u16,
    pub ensemble_state: EnsembleState,
    /// TLS phase and stores; `tls_secret_dir` is where the operator's Secret is mounted.
    pub tls: TlsConfig,
    pub tls_secret_dir: PathBuf,
    pub dns_backoff: Backoff,
    /// Once a quorum's names resolve, how long to wait for the other peers' names.
    pub dns_peer_grace: Duration,
}

#[derive(Debug)]
pub struct Prepared {
    pub myid: u64,
    pub config_file: PathBuf,
    pub start_mode: StartMode,
    pub membership_source: String,
}

impl StartOptions {
    pub fn zookeeper_data_dir(&self) -> PathBuf {
        self.data_dir.join("zookeeper")
    }
    pub fn conf_dir(&self) -> PathBuf {
        self.data_dir.join("conf")
    }
}

pub fn prepare(opts: &StartOptions) -> Result<Prepared, AgentError> {
    let myid = opts.identity.myid();
    let overrides = match &opts.overrides_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(AgentError::io(format!(
                "--config-overrides / ZK_CONFIG_OVERRIDES_FILE {}",
                path.display()
            )))?;
            Overrides::parse(&text, &path.display().to_string())?
        }
        None => Overrides::default(),
    };
    let conf_dir = opts.conf_dir();
    let zk_data_dir = opts.zookeeper_data_dir();
    let config_file = conf_dir.join("zoo.cfg");
    let (membership, source, zookeeper_owned_dynamic_file) = membership(opts, &config_file)?;
    membership.member(myid).ok_or_else(|| AgentError::Config {
        origin: source.clone(),
        message: format!(
            "does not list this member (server.{myid}, ordinal {} of {}); the operator adds a member to the \
             members file before it starts",
            opts.identity.ordinal, opts.identity.name
        ),
    })?;
    check_myid(&zk_data_dir, myid)?;

    let dns_started = std::time::Instant::now();
    wait_for_dns(opts, &membership, myid)?;
    log(&format!(
        "DNS: this member's name and a quorum of peers' resolve (waited {:.1}s)",
        dns_started.elapsed().as_secs_f64()
    ));

    let data = guard::data_state(&zk_data_dir).map_err(AgentError::io(format!("reading {}", zk_data_dir.display())))?;
    if opts.tls.phase.secure_clients() {
        let replaced = tls::sync(&opts.tls_secret_dir, &opts.tls.live_dir).map_err(AgentError::io(format!(
            "copying the TLS Secret from {} to {} (is the Secret mounted?)",
            opts.tls_secret_dir.display(),
            opts.tls.live_dir.display()
        )))?;
        log(&format!(
            "TLS phase {}: key and trust stores in {} ({} replaced)",
            opts.tls.phase.as_str(),
            opts.tls.live_dir.display(),
            replaced.len()
        ));
    }
    let serving_peer = if data == guard::DataState::Empty && opts.ensemble_state == EnsembleState::New {
        serving_peer(&membership, myid, &opts.tls)
    } else {
        None
    };
    let start_mode = guard::start_mode(data, opts.ensemble_state, serving_peer.as_deref());

    let written_by_zookeeper = zookeeper_owned_dynamic_file.is_some();
    let dynamic_file = zookeeper_owned_dynamic_file.unwrap_or_else(|| conf_dir.join("zoo.cfg.dynamic"));
    let static_config = StaticConfig {
        zookeeper_data_dir: zk_data_dir.clone(),
        dynamic_config_file: dynamic_file.clone(),
        bind_address: opts.bind_address.clone(),
        metrics_port: opts.metrics_port,
        overrides,
        tls: opts.tls.clone(),
    };

    for dir in [&conf_dir, &zk_data_dir] {
        std::fs::create_dir_all(dir).map_err(AgentError::io(format!("creating {}", dir.display())))?;
    }
    write_atomic(&zk_data_dir.join("myid"), &format!("{myid}\n"))?;
    if !written_by_zookeeper {
        write_atomic(&dynamic_file, &membership.render())?;
    }
    write_atomic(&config_file, &static_config.render())?;
    write_atomic(
        &conf_dir.join(crate::jvm::DNS_SECURITY_FILE),
        &crate::jvm::dns_security_properties(),
    )?;
    let marker = zk_data_dir.join("initialize");
    match &start_mode {
        StartMode::BootstrapEmpty => {
            write_atomic(&marker, "")?;
            log("new ensemble and empty data directory: this member may vote with an empty database (initialize marker written)");
        }
        StartMode::SyncBeforeVoting { reason } => {
            remove_if_present(&marker)?;
            log(&format!(
                "{reason}: this member will not vote until it has synced from the leader"
            ));
        }
        StartMode::Recover => {
            remove_if_present(&marker)?;
            log("the data directory holds a database: this member recovers from it and votes as before");
        }
    }
    log(&format!(
        "server.{myid} ({}-{}) configured from {source}: {} members, config {}",
        opts.identity.name,
        opts.identity.ordinal,
        membership.members.len(),
        config_file.display()
    ));
    Ok(Prepared {
        myid,
        config_file,
        start_mode,
        membership_source: source,
    })
}

/// Waits until this member's own name and a majority of the voters' names resolve (without them
/// no quorum can form), then gives the remaining peers a short grace period. A peer that stays
/// unresolvable (its pod unschedulable, say) must not keep a majority from starting: ZooKeeper
/// resolves peer addresses again on every connection attempt.
fn wait_for_dns(opts: &StartOptions, membership: &Membership, myid: u64) -> Result<(), AgentError> {
    let own = membership.member(myid).map(|m| m.host.clone()).unwrap_or_default();
    let hosts: Vec<String> = membership.members.iter().map(|m| m.host.clone()).collect();
    let voters: Vec<&str> = membership
        .members
        .iter()
        .filter(|m| m.role == Role::Participant)
        .map(|m| m.host.as_str())
        .collect();
    let quorum = voters.len() / 2 + 1;
    let enough = |missing: &[String]| {
        !missing.contains(&own) && voters.iter().filter(|v| !missing.iter().any(|m| m == *v)).count() >= quorum
    };
    dns::wait_until_enough_resolve(&hosts, enough, &opts.dns_backoff, dns::resolves, log).map_err(|missing| {
        AgentError::DnsTimeout {
            seconds: opts.dns_backoff.deadline.as_secs(),
            names: missing.join(", "),
        }
    })?;
    let grace = Backoff {
        deadline: opts.dns_peer_grace,
        ..Backoff::default()
    };
    if let Err(missing) = dns::wait_until_resolved(&hosts, &grace, dns::resolves, log) {
        log(&format!(
            "starting with a quorum of names resolvable; ZooKeeper will retry these peers: {}",
            missing.join(", ")
        ));
    }
    Ok(())
}

/// The membership to start with, where it came from, and ZooKeeper's own dynamic file if used.
///
/// ZooKeeper rewrites `zoo.cfg` to point at a versioned dynamic file once an ensemble has formed
/// or been reconfigured. That file is the ensemble's committed view as this member last saw it,
/// and wins over the members file: a member must never be restarted into a membership its
/// ensemble did not commit. A member with no such file (new, or its disk was lost) takes the
/// members file, then the StatefulSet's replicas.
fn membership(opts: &StartOptions, config_file: &Path) -> Result<(Membership, String, Option<PathBuf>), AgentError> {
    if let Some(own) = zookeeper_dynamic_file(config_file) {
        if let Ok(text) = std::fs::read_to_string(&own) {
            let source = own.display().to_string();
            let membership = Membership::parse(&text, &source)?;
            if membership.member(opts.identity.myid()).is_some() {
                return Ok((membership, source, Some(own)));
            }
            // The ensemble removed this member; it is being added again, as the members file says.
            log(&format!(
                "{source} no longer lists this member (it was removed); taking the members file"
            ));
        }
    }
    if let Some(path) = opts.members_file.as_ref().filter(|p| p.exists()) {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(AgentError::io(format!("reading members file {source}")))?;
        return Ok((Membership::parse(&text, &source)?, source, None));
    }
    match opts.replicas {
        Some(0) => Err(AgentError::Usage { field: "--replicas / ZK_REPLICAS".into(), message: "must be at least 1".into() }),
        Some(replicas) => Ok((
            Membership::from_statefulset(&opts.identity.name, replicas, &opts.domain),
            format!("{replicas} replicas of StatefulSet {}", opts.identity.name),
            None,
        )),
        None => Err(AgentError::Usage {
            field: "--members-file / ZK_MEMBERS_FILE, --replicas / ZK_REPLICAS".into(),
            message: format!(
                "no membership: the members file {} does not exist and no replica count is set; mount the members file or set ZK_REPLICAS",
                opts.members_file.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "(none given)".into())
            ),
        }),
    }
}

/// The versioned dynamic file ZooKeeper wrote and pointed `zoo.cfg` at, if any.
fn zookeeper_dynamic_file(config_file: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(config_file).ok()?;
    let path = PathBuf::from(property(&text, "dynamicConfigFile")?);
    let name = path.file_name()?.to_string_lossy().into_owned();
    let version = name.rsplit_once(".dynamic.")?.1;
    (!version.is_empty() && version.chars().all(|c| c.is_ascii_hexdigit())).then_some(path)
}

/// A volume that already holds another member's id must never be started as this member.
fn check_myid(zk_data_dir: &Path, myid: u64) -> Result<(), AgentError> {
    let path = zk_data_dir.join("myid");
    match std::fs::read_to_string(&path) {
        Ok(text) if text.trim() != myid.to_string() => Err(AgentError::Unsafe(format!(
            "{} says this volume belongs to server.{}, but this member is server.{myid}; refusing to start on another member's data",
            path.display(),
            text.trim()
        ))),
        _ => Ok(()),
    }
}

/// A peer that serves in a quorum, asked `srvr` on its client port, or over TLS where plaintext
/// listens on 127.0.0.1 only.
fn serving_peer(membership: &Membership, myid: u64, tls: &TlsConfig) -> Option<String> {
    let client = if tls.phase.secure_clients() {
        match crate::tls::TlsClient::from_live_dir(&tls.live_dir) {
            Ok(client) => Some(client),
            Err(error) => {
                log(&format!("cannot ask peers over TLS ({error}); asking in plaintext"));
                None
            }
        }
    } else {
        None
    };
    membership.members.iter().filter(|m| m.id != myid).find_map(|m| {
        let timeout = Duration::from_secs(1);
        let (address, serves) = match &client {
            Some(client) => {
                let address = format!("{}:{}", m.host, vocabulary::ports::SECURE_CLIENT);
                let serves = client.ready(&address, &m.host, timeout).is_ok();
                (address, serves)
            }
            None => {
                let address = format!("{}:{}", m.host, m.client_port);
                let serves = probe::ready(&address, timeout).is_ok();
                (address, serves)
            }
        };
        serves.then(|| format!("server.{} ({address})", m.id))
    })
}

fn write_atomic(path: &Path, contents: &str) -> Result<(), AgentError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, contents)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(AgentError::io(format!("writing {}", path.display())))
}

fn remove_if_present(path: &Path) -> Result<(), AgentError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(AgentError::Io {
            context: format!("removing {}", path.display()),
            error: e,
        }),
        _ => Ok(()),
    }
}
