//! Time from start to three members serving in a quorum: started by zk-agent (as in a pod),
//! against the same ZooKeeper servers started by hand with a static configuration (the seed's
//! approach), alternating in one run on this machine.
//!
//! Rerun: make bench-agent   (or: cargo bench -p zk-agent --bench bootstrap -- [rounds])

#[path = "../tests/common/mod.rs"]
mod common;

use common::{zookeeper_home, Ensemble, JVM_OPTS};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

fn main() {
    let rounds: u32 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(5);
    let mut by_agent = Vec::new();
    let mut by_hand = Vec::new();
    for round in 0..rounds {
        let base = 23000 + (round as u16) * 200;
        by_agent.push(time_agent(round, base));
        by_hand.push(time_by_hand(round, base + 100));
        eprintln!(
            "round {}: zk-agent {:.2}s, by hand {:.2}s",
            round + 1,
            by_agent.last().unwrap().as_secs_f64(),
            by_hand.last().unwrap().as_secs_f64()
        );
    }
    let agent = Stats::of(&by_agent);
    let hand = Stats::of(&by_hand);
    println!();
    println!("Start to 3 members serving in a quorum (ZooKeeper 3.9.5, {rounds} rounds each, alternating)");
    println!("| start method                          | median s | min s | max s |");
    println!("|---------------------------------------|---------:|------:|------:|");
    println!(
        "| zk-agent run (members file, DNS wait) | {:8.2} | {:5.2} | {:5.2} |",
        agent.median, agent.min, agent.max
    );
    println!(
        "| java by hand, static zoo.cfg (seed)   | {:8.2} | {:5.2} | {:5.2} |",
        hand.median, hand.min, hand.max
    );
    println!(
        "ratio of medians zk-agent / by hand: {:.3} (goal: at most 1.1)",
        agent.median / hand.median
    );
    println!("command: make bench-agent   (cargo bench -p zk-agent --bench bootstrap -- {rounds})");
}

fn time_agent(round: u32, base: u16) -> Duration {
    let mut zk = Ensemble::new(&format!("bench-agent-{round}"), 3, base);
    let started = Instant::now();
    zk.start_all("new");
    zk.wait_ready(&[0, 1, 2], TIMEOUT);
    started.elapsed()
}

/// The same servers and settings, with the membership written into zoo.cfg by hand and the JVM
/// started directly.
fn time_by_hand(round: u32, base: u16) -> Duration {
    let zk = Ensemble::new(&format!("bench-hand-{round}"), 3, base);
    let home = zookeeper_home();
    let java = std::env::var_os("JAVA_HOME")
        .map(|h| std::path::Path::new(&h).join("bin/java"))
        .unwrap_or_else(|| "java".into());
    let java = which(&java);
    let servers: String = (0..3)
        .map(|i| {
            format!(
                "server.{}={}:{}:{}\n",
                i + 1,
                zk.host(i),
                base + 10 + i as u16,
                base + 20 + i as u16
            )
        })
        .collect();
    let mut commands = Vec::new();
    for i in 0..3u32 {
        let data = zk.data_dir(i).join("zookeeper");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("myid"), format!("{}\n", i + 1)).unwrap();
        let cfg = zk.data_dir(i).join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=2000\ninitLimit=10\nsyncLimit=2\nmaxClientCnxns=60\nautopurge.snapRetainCount=3\n\
                 autopurge.purgeInterval=1\n4lw.commands.whitelist=srvr,mntr,ruok\ndataDir={}\n\
                 clientPort={}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n\
                 metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
                 metricsProvider.httpHost=127.0.0.1\nmetricsProvider.httpPort={}\n{servers}",
                data.display(),
                zk.client_port(i),
                base + 40 + i as u16
            ),
        )
        .unwrap();
        let log = std::fs::File::create(zk.log_file(i)).unwrap();
        let mut command = zk.in_namespace(&java);
        command
            .args(JVM_OPTS.split_whitespace())
            .arg(format!(
                "-Dlogback.configurationFile={}/conf/logback.xml",
                home.display()
            ))
            .arg("-cp")
            .arg(format!("{0}/lib/*:{0}/conf", home.display()))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        commands.push(command);
    }
    // Written configuration is the starting line, as for zk-agent (whose timing includes writing it).
    let started = Instant::now();
    let children: Vec<Child> = commands.iter_mut().map(|c| c.spawn().unwrap()).collect();
    while !(0..3).all(|i| zk.ready(i)) {
        assert!(
            started.elapsed() < TIMEOUT,
            "hand-started ensemble not ready:\n{}",
            zk.log_tail(0)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = started.elapsed();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    elapsed
}

fn which(program: &std::path::Path) -> std::path::PathBuf {
    if program.is_absolute() {
        return program.to_path_buf();
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(program))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| program.to_path_buf())
}

struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(samples: &[Duration]) -> Stats {
        let mut s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let median = if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        };
        Stats {
            median,
            min: s[0],
            max: s[s.len() - 1],
        }
    }
}
