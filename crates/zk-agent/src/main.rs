use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use vocabulary::PeerDomain;
use zk_agent::dns::Backoff;
use zk_agent::guard::EnsembleState;
use zk_agent::identity::Identity;
use zk_agent::jvm::{self, JavaCommand};
use zk_agent::start::{self, StartOptions};
use zk_agent::{log, probe, AgentError};

/// Runs a ZooKeeper ensemble member inside a StatefulSet pod.
#[derive(Parser)]
#[command(name = "zk-agent", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare the member (identity, membership, DNS, configuration, lost-disk guard), then become the ZooKeeper JVM.
    Run(RunArgs),
    /// Prepare the member as `run` does, without starting ZooKeeper.
    Configure(MemberArgs),
    /// Print the ZooKeeper server id (myid) this member has.
    Myid(IdentityArgs),
    /// Answer a kubelet probe: exit 0 when healthy, 1 with the reason otherwise.
    Probe(ProbeArgs),
    /// Keep ZooKeeper's TLS stores up to date with the mounted Secret (a sidecar), replacing
    /// each file by write-then-rename so that ZooKeeper reloads it without a restart.
    SyncTls(TlsArgs),
    /// The preStop hook: if this member leads, hand leadership to a follower before it stops
    /// (no election). Always exits 0 within a few seconds; what it did goes to the container log.
    HandOff(HandOffArgs),
    /// Copy this member's data (the newest valid snapshot and the logs after it, verified and cut
    /// at a committed zxid) to a backup target, then apply retention. Prints a JSON report.
    Backup(BackupArgs),
    /// Download a backup, verify every file, and write it into the data directory of a member of
    /// an ensemble that is being created (`--verify-only`: download and verify only).
    Restore(RestoreArgs),
}

#[derive(Args)]
struct TargetArgs {
    /// `s3://<bucket>/<prefix>` or a directory (a mounted volume), where backups are kept.
    #[arg(long, env = "ZK_BACKUP_TARGET")]
    target: String,
    /// The S3 endpoint (`https://host:port`); AWS when unset.
    #[arg(long, env = "ZK_BACKUP_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    #[arg(long, env = "ZK_BACKUP_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// PEM file of the CA that signed the endpoint's certificate.
    #[arg(long, env = "ZK_BACKUP_S3_CA_FILE")]
    s3_ca_file: Option<PathBuf>,
    /// Where the JSON report also goes (the operator reads the container's termination message).
    #[arg(long, env = "ZK_REPORT_FILE", default_value = "/dev/termination-log")]
    report_file: PathBuf,
    /// The member's volume: ZooKeeper's data is in `zookeeper/`.
    #[arg(long, env = "ZK_DATA_DIR", default_value = "/data")]
    data_dir: PathBuf,
    /// The ZooKeeper version of this image.
    #[arg(long, env = "ZOOKEEPER_VERSION")]
    zookeeper_version: String,
}

#[derive(Args)]
struct BackupArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The backup's name: `<cluster>-<UTC time, 20261201T153000Z>`.
    #[arg(long)]
    name: String,
    #[arg(long)]
    namespace: String,
    #[arg(long)]
    cluster: String,
    /// The member (pod) whose volume is read, and its server id.
    #[arg(long)]
    member: String,
    #[arg(long)]
    server_id: u64,
    /// A zxid the member had applied (so committed) when the backup started: the cut.
    #[arg(long, value_parser = parse_zxid_arg)]
    committed_zxid: Option<u64>,
    /// Keep at most this many complete backups of the cluster (the newest is always kept).
    #[arg(long)]
    keep_count: Option<u32>,
    /// Delete complete backups older than this (the newest is always kept).
    #[arg(long)]
    max_age_seconds: Option<i64>,
}

#[derive(Args)]
struct RestoreArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// The backup to restore.
    #[arg(long)]
    name: String,
    #[arg(long)]
    verify_only: bool,
    /// Restore up to this zxid of the backup's logs (the whole backup when unset).
    #[arg(long, value_parser = parse_zxid_arg)]
    up_to_zxid: Option<u64>,
    /// Restores happen only while the ensemble is new.
    #[arg(long, env = "ZK_ENSEMBLE_STATE", value_enum, default_value = "existing")]
    ensemble_state: EnsembleStateArg,
}

#[derive(Args)]
struct HandOffArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// Where the operator's TLS Secret is mounted: the member authenticates with it.
    #[arg(long, env = "ZK_TLS_SECRET_DIR", default_value = vocabulary::tls::SECRET_DIR)]
    tls_secret_dir: PathBuf,
}

#[derive(Args)]
struct TlsArgs {
    /// Where the operator's TLS Secret is mounted.
    #[arg(long, env = "ZK_TLS_SECRET_DIR", default_value = vocabulary::tls::SECRET_DIR)]
    tls_secret_dir: PathBuf,
    /// Where ZooKeeper's key and trust stores are kept.
    #[arg(long, env = "ZK_TLS_DIR", default_value = vocabulary::tls::LIVE_DIR)]
    tls_dir: PathBuf,
    /// Seconds between checks of the Secret.
    #[arg(long, env = "ZK_TLS_SYNC_SECONDS", default_value_t = 5)]
    interval_seconds: u64,
}

#[derive(Args)]
struct IdentityArgs {
    /// Pod hostname `<statefulset>-<ordinal>`; defaults to $HOSTNAME, then the kernel's hostname.
    #[arg(long, env = "ZK_HOSTNAME")]
    hostname: Option<String>,
    /// Overrides the ordinal taken from the hostname.
    #[arg(long, env = "ZK_ORDINAL")]
    ordinal: Option<u32>,
}

#[derive(Args)]
struct MemberArgs {
    #[command(flatten)]
    identity: IdentityArgs,
    /// Members in ZooKeeper's dynamic-configuration syntax, one `server.N=...` line each (mounted by the operator).
    #[arg(long, env = "ZK_MEMBERS_FILE", default_value = "/etc/zookeeper/members/members")]
    members_file: PathBuf,
    /// Number of StatefulSet replicas, used when the members file does not exist.
    #[arg(long, env = "ZK_REPLICAS")]
    replicas: Option<u32>,
    /// Headless Service the peers' DNS names live under (default: `<statefulset>-headless`).
    #[arg(long, env = "ZK_HEADLESS_SERVICE")]
    headless_service: Option<String>,
    #[arg(long, env = "ZK_NAMESPACE", default_value = "default")]
    namespace: String,
    #[arg(long, env = "ZK_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// The member's volume: ZooKeeper's data goes to `zookeeper/`, configuration to `conf/`.
    #[arg(long, env = "ZK_DATA_DIR", default_value = "/data")]
    data_dir: PathBuf,
    /// ZooKeeper settings (`key=value` lines) merged over the agent's defaults.
    #[arg(long, env = "ZK_CONFIG_OVERRIDES_FILE")]
    config_overrides: Option<PathBuf>,
    /// Address the metrics endpoint listens on.
    #[arg(long, env = "ZK_BIND_ADDRESS", default_value = "0.0.0.0")]
    bind_address: String,
    #[arg(long, env = "ZK_METRICS_PORT", default_value_t = vocabulary::ports::METRICS)]
    metrics_port: u16,
    /// `new` only while the ensemble is created for the first time: then empty members may vote.
    #[arg(long, env = "ZK_ENSEMBLE_STATE", value_enum, default_value = "existing")]
    ensemble_state: EnsembleStateArg,
    /// TLS: plaintext, unified, quorum-tls or tls (the steps from plaintext to TLS).
    #[arg(long, env = "ZK_TLS_PHASE", default_value = "plaintext", value_parser = parse_phase)]
    tls_phase: vocabulary::tls::Phase,
    #[command(flatten)]
    tls: TlsArgs,
    /// Refuse ZooKeeper sessions that did not authenticate.
    #[arg(long, env = "ZK_ENFORCE_AUTHENTICATION", default_value_t = false)]
    enforce_authentication: bool,
    /// The ZooKeeper release of this image (its TLS settings differ by line).
    #[arg(long, env = "ZOOKEEPER_VERSION", default_value = "")]
    zookeeper_version: String,
    /// How long to wait for the ensemble's DNS names before giving up.
    #[arg(long, env = "ZK_DNS_TIMEOUT_SECONDS", default_value_t = 600)]
    dns_timeout_seconds: u64,
    /// Once this member's and a majority's names resolve, how long to wait for the other peers'.
    /// Short: ZooKeeper resolves a peer again on every connection attempt, and the JVM caches a
    /// failed look-up for 1 s only (dns.security); a majority is all a quorum needs.
    #[arg(long, env = "ZK_DNS_PEER_GRACE_SECONDS", default_value_t = 2)]
    dns_peer_grace_seconds: u64,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    member: MemberArgs,
    #[arg(long, env = "ZOOKEEPER_HOME", default_value = "/opt/zookeeper")]
    zookeeper_home: PathBuf,
    /// Extra JVM options, separated by spaces. The heap is sized from the memory limit unless -Xmx is given.
    #[arg(long, env = "ZK_JVM_OPTS", default_value = "")]
    jvm_opts: String,
    /// `super:<base64 sha1(super:password)>`: the super user that may reconfigure the ensemble.
    #[arg(long, env = "ZK_SUPER_DIGEST")]
    super_digest: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum EnsembleStateArg {
    New,
    Existing,
}

#[derive(Args)]
struct ProbeArgs {
    #[arg(value_enum)]
    kind: ProbeKind,
    /// The member's client address.
    #[arg(long, env = "ZK_PROBE_ADDRESS", default_value = "127.0.0.1:2181")]
    address: String,
    #[arg(long, default_value_t = 3)]
    timeout_seconds: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProbeKind {
    /// Serving in a quorum as leader, follower or observer.
    Ready,
    /// The server process answers (`ruok`), quorum or not.
    Live,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log(&format!("error: {error}"));
            ExitCode::from(error.exit_code() as u8)
        }
    }
}

fn run(cli: Cli) -> Result<(), AgentError> {
    match cli.command {
        Command::Run(args) => {
            let user_options: Vec<String> = args.jvm_opts.split_whitespace().map(String::from).collect();
            jvm::check_user_options(&user_options).map_err(|message| AgentError::Usage {
                field: "--jvm-opts / ZK_JVM_OPTS".into(),
                message,
            })?;
            let opts = start_options(&args.member)?;
            let prepared = start::prepare(&opts)?;
            let command = JavaCommand {
                java: jvm::java_from_env(),
                zookeeper_home: args.zookeeper_home,
                user_options,
                memory_limit_bytes: jvm::container_memory_limit(),
                config_file: prepared.config_file,
                super_digest: args.super_digest.filter(|d| !d.is_empty()),
                x509_super_user: opts_tls_super_user(args.member.tls_phase),
            };
            let shown: Vec<String> = command
                .args()
                .into_iter()
                .map(|a| {
                    if a.contains("superDigest=") {
                        "-Dzookeeper.DigestAuthenticationProvider.superDigest=<hidden>".into()
                    } else {
                        a
                    }
                })
                .collect();
            log(&format!(
                "starting ZooKeeper: {} {}",
                command.java.display(),
                shown.join(" ")
            ));
            let error = command.exec();
            Err(AgentError::Io {
                context: format!("starting {}", command.java.display()),
                error,
            })
        }
        Command::Configure(args) => {
            let prepared = start::prepare(&start_options(&args)?)?;
            println!("{}", prepared.config_file.display());
            Ok(())
        }
        Command::HandOff(args) => {
            let outcome = match identity(&args.identity)
                .map_err(|e| e.to_string())
                .and_then(|me| zk_agent::handoff::run(me.myid(), &args.tls_secret_dir))
            {
                Ok(done) => format!("hand-off: {done}"),
                Err(why) => format!("hand-off not done, the members elect instead: {why}"),
            };
            // A hook's output is shown nowhere; the container's log is where people look.
            log(&outcome);
            if let Ok(mut main) = std::fs::OpenOptions::new().append(true).open("/proc/1/fd/2") {
                use std::io::Write;
                let _ = writeln!(main, "zk-agent: {outcome}");
            }
            Ok(())
        }
        Command::Backup(args) => {
            let target = backup_target(&args.target)?;
            let opts = zk_agent::backup::run::BackupOptions {
                target,
                name: args.name,
                zookeeper_data_dir: args.target.data_dir.join("zookeeper"),
                namespace: args.namespace,
                cluster: args.cluster,
                member: args.member,
                server_id: args.server_id,
                zookeeper_version: args.target.zookeeper_version.clone(),
                committed_zxid: args.committed_zxid,
                keep_count: args.keep_count,
                max_age_seconds: args.max_age_seconds,
            };
            let report = block_on(zk_agent::backup::run::backup(&opts))?;
            finish_job(&args.target.report_file, report)
        }
        Command::Restore(args) => {
            let target = backup_target(&args.target)?;
            let opts = zk_agent::backup::run::RestoreOptions {
                target,
                name: args.name,
                zookeeper_data_dir: args.target.data_dir.join("zookeeper"),
                zookeeper_version: args.target.zookeeper_version.clone(),
                verify_only: args.verify_only,
                ensemble_state: match args.ensemble_state {
                    EnsembleStateArg::New => EnsembleState::New,
                    EnsembleStateArg::Existing => EnsembleState::Existing,
                },
                up_to_zxid: args.up_to_zxid,
            };
            let report = block_on(zk_agent::backup::run::restore(&opts))?;
            finish_job(&args.target.report_file, report)
        }
        Command::Myid(args) => {
            println!("{}", identity(&args)?.myid());
            Ok(())
        }
        Command::SyncTls(args) => {
            exit_on_sigterm();
            log(&format!(
                "keeping {} up to date with {} every {}s",
                args.tls_dir.display(),
                args.tls_secret_dir.display(),
                args.interval_seconds
            ));
            loop {
                match zk_agent::tls::sync(&args.tls_secret_dir, &args.tls_dir) {
                    Ok(replaced) if !replaced.is_empty() => log(&format!("replaced {}", replaced.join(", "))),
                    Ok(_) => {}
                    Err(error) => log(&format!("cannot copy the TLS Secret: {error}")),
                }
                std::thread::sleep(Duration::from_secs(args.interval_seconds.max(1)));
            }
        }
        Command::Probe(args) => {
            let timeout = Duration::from_secs(args.timeout_seconds);
            let result = match args.kind {
                ProbeKind::Ready => probe::ready(&args.address, timeout).map(|mode| format!("serving as {mode:?}")),
                ProbeKind::Live => probe::live(&args.address, timeout).map(|()| "alive".to_string()),
            };
            match result {
                Ok(message) => {
                    println!("{message}");
                    Ok(())
                }
                Err(reason) => Err(AgentError::Unsafe(format!("probe failed: {reason}"))),
            }
        }
    }
}

/// As PID 1 of its container the sidecar gets no default action for SIGTERM: without a
/// handler, every pod deletion would wait out its whole grace period.
fn exit_on_sigterm() {
    extern "C" fn exit_now(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe; nothing is left to flush or clean up.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: installs a handler that only calls an async-signal-safe function.
    unsafe {
        libc::signal(libc::SIGTERM, exit_now as *const () as libc::sighandler_t);
    }
}

fn parse_zxid_arg(text: &str) -> Result<u64, String> {
    zk_agent::backup::parse_zxid(text).ok_or_else(|| "a zxid: 0x<hex> or a decimal number".into())
}

fn backup_target(args: &TargetArgs) -> Result<zk_agent::backup::store::Target, AgentError> {
    use zk_agent::backup::store::Target;
    let usage = |message: String| AgentError::Usage {
        field: "--target / ZK_BACKUP_TARGET".into(),
        message,
    };
    if let Some(rest) = args.target.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(usage(format!(
                "{:?} names no bucket: s3://<bucket>/<prefix>",
                args.target
            )));
        }
        return Ok(Target::S3 {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: args.s3_endpoint.clone().filter(|e| !e.is_empty()),
            region: args.s3_region.clone(),
            ca_file: args.s3_ca_file.clone().filter(|p| !p.as_os_str().is_empty()),
        });
    }
    let path = args.target.strip_prefix("file://").unwrap_or(&args.target);
    if !path.starts_with('/') {
        return Err(usage(format!(
            "{:?} is neither s3://<bucket>/<prefix> nor an absolute directory",
            args.target
        )));
    }
    Ok(Target::Directory {
        root: PathBuf::from(path),
        prefix: String::new(),
    })
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> Result<T, AgentError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AgentError::io("starting a runtime"))?;
    Ok(runtime.block_on(future))
}

/// The report goes to stdout and to the termination message; a failed job exits 1.
fn finish_job(report_file: &std::path::Path, report: zk_agent::backup::JobReport) -> Result<(), AgentError> {
    let line = report.to_line();
    println!("{line}");
    let _ = std::fs::write(report_file, &line);
    if report.ok {
        Ok(())
    } else {
        Err(AgentError::Unsafe(report.message))
    }
}

fn parse_phase(text: &str) -> Result<vocabulary::tls::Phase, String> {
    vocabulary::tls::Phase::parse(text).ok_or_else(|| {
        let phases: Vec<&str> = vocabulary::tls::Phase::ALL.iter().map(|p| p.as_str()).collect();
        format!("must be one of {}", phases.join(", "))
    })
}

/// With TLS on, the operator's client certificate is ZooKeeper's super user.
fn opts_tls_super_user(phase: vocabulary::tls::Phase) -> Option<String> {
    phase
        .secure_clients()
        .then(|| format!("CN={}", vocabulary::tls::OPERATOR_CN))
}

fn identity(args: &IdentityArgs) -> Result<Identity, AgentError> {
    let hostname = match &args.hostname {
        Some(h) => h.clone(),
        None => std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
    };
    let mut identity = Identity::from_hostname(&hostname)?;
    if let Some(ordinal) = args.ordinal {
        identity.ordinal = ordinal;
    }
    Ok(identity)
}

fn start_options(args: &MemberArgs) -> Result<StartOptions, AgentError> {
    let identity = identity(&args.identity)?;
    if args.dns_timeout_seconds == 0 {
        return Err(AgentError::Usage {
            field: "--dns-timeout-seconds / ZK_DNS_TIMEOUT_SECONDS".into(),
            message: "must be at least 1".into(),
        });
    }
    if let Some(path) = args.config_overrides.as_ref().filter(|p| !p.is_file()) {
        return Err(AgentError::Usage {
            field: "--config-overrides / ZK_CONFIG_OVERRIDES_FILE".into(),
            message: format!(
                "{} is not a file; mount the overrides or unset the variable",
                path.display()
            ),
        });
    }
    let domain = PeerDomain {
        service: args
            .headless_service
            .clone()
            .unwrap_or_else(|| vocabulary::headless_service(&identity.name)),
        namespace: args.namespace.clone(),
        cluster_domain: args.cluster_domain.clone(),
    };
    Ok(StartOptions {
        identity,
        members_file: Some(args.members_file.clone()),
        replicas: args.replicas,
        domain,
        data_dir: args.data_dir.clone(),
        overrides_file: args.config_overrides.clone(),
        bind_address: args.bind_address.clone(),
        metrics_port: args.metrics_port,
        tls: zk_agent::config::TlsConfig {
            phase: args.tls_phase,
            live_dir: args.tls.tls_dir.clone(),
            enforce_authentication: args.enforce_authentication,
            peers_by_reverse_dns: zk_agent::config::checks_peers_by_reverse_dns(&args.zookeeper_version),
        },
        tls_secret_dir: args.tls.tls_secret_dir.clone(),
        ensemble_state: match args.ensemble_state {
            EnsembleStateArg::New => EnsembleState::New,
            EnsembleStateArg::Existing => EnsembleState::Existing,
        },
        dns_backoff: Backoff {
            deadline: Duration::from_secs(args.dns_timeout_seconds),
            ..Backoff::default()
        },
        dns_peer_grace: Duration::from_secs(args.dns_peer_grace_seconds),
    })
}
