//! A real ZooKeeper ensemble on this machine, each member started by zk-agent exactly as in a pod.
//!
//! Every member runs in its own mount namespace whose `/etc/hosts` is a file this harness
//! controls, so the members' DNS names (`zk-<i>.zk-headless.it.svc.cluster.local`) resolve only
//! when the harness says so: for the agent (glibc) and for the JVM alike. Members share the
//! loopback address and differ by port.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// C1 only: the members start with less CPU, beside the builds of a cold `make test`.
pub const JVM_OPTS: &str = "-Xmx192m -Xms64m -XX:+UseSerialGC -Xss512k -XX:TieredStopAtLevel=1";

pub fn zookeeper_home() -> PathBuf {
    let home = std::env::var_os("ZK_TEST_ZOOKEEPER_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("build/zookeeper-3.9.5"));
    assert!(
        home.join("lib").is_dir(),
        "no ZooKeeper distribution at {} (run `make zookeeper-dist`, or set ZK_TEST_ZOOKEEPER_HOME)",
        home.display()
    );
    home
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn agent_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zk-agent"))
}

pub struct Ensemble {
    pub root: PathBuf,
    pub hosts_file: PathBuf,
    pub size: u32,
    base_port: u16,
    children: Vec<Option<Child>>,
    /// ZooKeeper settings for every member (`key=value` lines), if any.
    pub overrides: Option<String>,
    /// The members' JVM options, when not [`JVM_OPTS`].
    pub jvm_opts: Option<String>,
}

impl Ensemble {
    /// `base_port` must be unique per test: members use base+i (client), +10 (quorum),
    /// +20 (election), +30 (admin), +40 (metrics).
    pub fn new(test: &str, size: u32, base_port: u16) -> Ensemble {
        let root = std::env::temp_dir().join(format!("zk-agent-it-{test}"));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let hosts_file = root.join("hosts");
        let ensemble = Ensemble {
            root,
            hosts_file,
            size,
            base_port,
            children: (0..size).map(|_| None).collect(),
            overrides: None,
            jvm_opts: None,
        };
        ensemble.set_resolvable(&(0..size).collect::<Vec<_>>());
        fs::write(ensemble.members_file(), ensemble.members_text()).unwrap();
        ensemble
    }

    pub fn host(&self, i: u32) -> String {
        format!("zk-{i}.zk-headless.it.svc.cluster.local")
    }
    pub fn client_port(&self, i: u32) -> u16 {
        self.base_port + i as u16
    }
    pub fn client_address(&self, i: u32) -> String {
        format!("127.0.0.1:{}", self.client_port(i))
    }
    pub fn connect_string(&self, members: &[u32]) -> String {
        members
            .iter()
            .map(|i| self.client_address(*i))
            .collect::<Vec<_>>()
            .join(",")
    }
    pub fn data_dir(&self, i: u32) -> PathBuf {
        self.root.join(format!("member-{i}"))
    }
    pub fn members_file(&self) -> PathBuf {
        self.root.join("members")
    }
    pub fn log_file(&self, i: u32) -> PathBuf {
        self.root.join(format!("member-{i}.log"))
    }

    /// The members file as the operator would mount it.
    pub fn members_text(&self) -> String {
        (0..self.size)
            .map(|i| {
                format!(
                    "server.{}={}:{}:{}:participant;127.0.0.1:{}\n",
                    i + 1,
                    self.host(i),
                    self.base_port + 10 + i as u16,
                    self.base_port + 20 + i as u16,
                    self.client_port(i)
                )
            })
            .collect()
    }

    /// Rewrites the hosts file in place (the bind mounts follow the inode) so that exactly
    /// these members' names resolve.
    pub fn set_resolvable(&self, members: &[u32]) {
        let mut text = String::from("127.0.0.1 localhost\n");
        for i in members {
            text.push_str(&format!("127.0.0.1 {}\n", self.host(*i)));
        }
        let mut file = fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.hosts_file)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    /// A command that runs `program args...` with this ensemble's hosts file as `/etc/hosts`.
    pub fn in_namespace(&self, program: &Path) -> Command {
        let mut command = Command::new("unshare");
        command
            .args([
                "--mount",
                "--",
                "sh",
                "-c",
                "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
            ])
            .arg(&self.hosts_file)
            .arg(program);
        command
    }

    /// The agent command for member `i`, without the subcommand's extra arguments.
    pub fn agent(&self, i: u32, subcommand: &str, ensemble_state: &str) -> Command {
        let mut command = self.in_namespace(&agent_binary());
        command
            .arg(subcommand)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ZK_HOSTNAME", format!("zk-{i}"))
            .env("ZK_MEMBERS_FILE", self.members_file())
            .env("ZK_DATA_DIR", self.data_dir(i))
            .env("ZK_BIND_ADDRESS", "127.0.0.1")
            .env("ZK_METRICS_PORT", (self.base_port + 40 + i as u16).to_string())
            .env("ZK_ENSEMBLE_STATE", ensemble_state)
            .env("ZK_DNS_TIMEOUT_SECONDS", "120")
            .env("ZOOKEEPER_HOME", zookeeper_home())
            .env("ZK_JVM_OPTS", self.jvm_opts.as_deref().unwrap_or(JVM_OPTS));
        if let Some(java_home) = std::env::var_os("JAVA_HOME") {
            command.env("JAVA_HOME", java_home);
        }
        // These tests are about identity, discovery and the lost-disk guard, not about how fast a
        // lost follower is noticed: the default syncLimit (2 ticks, 4 s) dropped the quorum of
        // two healthy members in a cold `make test`, their JVMs starved by the Go and Rust builds
        // beside them. 5 ticks (10 s) bears that.
        let mut overrides = self.overrides.clone().unwrap_or_default();
        if !overrides.contains("syncLimit") {
            overrides.push_str("\nsyncLimit=5\n");
        }
        // One file per member: rewriting a shared one for the next member truncated it while
        // the member before was reading it, which then ran without the overrides (seen in make
        // test: a member with no snapCount, so no snapshot to back up).
        let file = self.root.join(format!("overrides-{i}"));
        fs::write(&file, overrides).unwrap();
        command.env("ZK_CONFIG_OVERRIDES_FILE", file);
        command
    }

    /// Starts member `i` with `zk-agent run`, its output appended to its log file.
    pub fn start(&mut self, i: u32, ensemble_state: &str) {
        assert!(self.children[i as usize].is_none(), "member {i} is already running");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file(i))
            .unwrap();
        let child = self
            .agent(i, "run", ensemble_state)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning zk-agent");
        self.children[i as usize] = Some(child);
    }

    pub fn start_all(&mut self, ensemble_state: &str) {
        for i in 0..self.size {
            self.start(i, ensemble_state);
        }
    }

    /// SIGKILL, as a node failure or `kubectl delete pod --grace-period=0` would.
    pub fn kill(&mut self, i: u32) {
        if let Some(mut child) = self.children[i as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process exited by itself (the agent refused to start, or ZooKeeper died).
    pub fn exited(&mut self, i: u32) -> Option<std::process::ExitStatus> {
        self.children[i as usize].as_mut().and_then(|c| c.try_wait().unwrap())
    }

    pub fn wipe(&self, i: u32) {
        fs::remove_dir_all(self.data_dir(i)).unwrap();
    }

    pub fn ready(&self, i: u32) -> bool {
        zk_agent::probe::ready(&self.client_address(i), Duration::from_millis(500)).is_ok()
    }

    /// Whether member `i` has stopped serving, as it says itself ("not currently serving") or by
    /// refusing connections. A reply that does not come within 5 s is no answer either way: on
    /// a loaded machine (CI builds Go beside these tests) srvr took longer than the 500 ms
    /// `ready` gives it, and a slow reply is not a lost quorum.
    pub fn stopped_serving(&self, i: u32) -> bool {
        use zk_agent::probe::{four_letter_word, parse_srvr, SrvrState};
        match four_letter_word(&self.client_address(i), "srvr", Duration::from_secs(5)) {
            Ok(reply) => matches!(parse_srvr(&reply), Ok(SrvrState::NotServing)),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        }
    }

    pub fn wait_ready(&mut self, members: &[u32], timeout: Duration) {
        let start = Instant::now();
        loop {
            if members.iter().all(|i| self.ready(*i)) {
                return;
            }
            for i in members {
                if let Some(status) = self.exited(*i) {
                    panic!(
                        "member {i} exited with {status} while waiting for it to be ready:\n{}",
                        self.log(*i)
                    );
                }
            }
            if start.elapsed() > timeout {
                let logs: String = members
                    .iter()
                    .map(|i| format!("--- member {i}\n{}", self.log_tail(*i)))
                    .collect();
                panic!("members {members:?} not ready after {timeout:?}\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self, i: u32) -> String {
        fs::read_to_string(self.log_file(i)).unwrap_or_default()
    }

    pub fn log_tail(&self, i: u32) -> String {
        let log = self.log(i);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for i in 0..self.size {
            self.kill(i);
        }
    }
}

/// A ZooKeeper client session through the given members.
pub async fn client(connect: &str) -> zookeeper_client::Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match zookeeper_client::Client::connector()
            .with_session_timeout(Duration::from_secs(10))
            .connect(connect)
            .await
        {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connecting to {connect}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot connect to {connect}: {e}"),
        }
    }
}

pub async fn create(client: &zookeeper_client::Client, path: &str, value: &str) {
    let options = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    client
        .create(path, value.as_bytes(), &options)
        .await
        .unwrap_or_else(|e| panic!("create {path}: {e}"));
}

/// Reads `path` through a session that talks only to `member`, after `sync` so the read
/// reflects everything the quorum committed.
pub async fn read_through(ensemble: &Ensemble, member: u32, path: &str) -> Option<String> {
    let client = client(&ensemble.client_address(member)).await;
    client
        .sync(path)
        .await
        .unwrap_or_else(|e| panic!("sync through member {member}: {e}"));
    match client.get_data(path).await {
        Ok((data, _)) => Some(String::from_utf8(data).unwrap()),
        Err(zookeeper_client::Error::NoNode) => None,
        Err(e) => panic!("get {path} through member {member}: {e}"),
    }
}
