//! Runs the e2e tests side by side on the shared cluster (`make e2e`), as `e2e::SCHEDULE` allows:
//! up to `--lanes` tests at once (default 2, or E2E_LANES: on two cores a third made tests slow
//! enough to fail), longest first; a test that stops the
//! operator only beside tests that bear it; the tests that disturb nodes one at a time, after
//! all the others. Each test's output goes to build/e2e/<suite>.<test>.log; the log of a failed
//! test is printed at the end, with a table of every test's time.
//!
//!   e2e-run [--full] [--lanes N] [--list] [FILTER...]   FILTER: part of `suite::test` (any matches)
//!
//! Without --full, the tests of the gate (`make test`); with it, every test (`make e2e-full`).
//! Tests named by a filter run whichever they are.
//!
//! No test is tried again: a test that fails once fails the run.
//!
//! A test that needs a part `make test` installs beside the first tests (`Planned::needs`, e.g.
//! Prometheus) waits for it while the others run: E2E_PROMETHEUS_READY names the file that says
//! `ready` (or why not). Unset, the part is taken as installed.

use e2e::{fits, may_join, planned, Need, Planned, Readiness, Sharing};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

struct Case {
    suite: String,
    test: String,
    binary: PathBuf,
    plan: Planned,
}

impl Case {
    fn id(&self) -> String {
        format!("{}::{}", self.suite, self.test)
    }
}

struct Outcome {
    index: usize,
    passed: bool,
    timed_out: bool,
    elapsed: Duration,
}

fn main() -> ExitCode {
    let mut lanes: usize = std::env::var("E2E_LANES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let mut list_only = false;
    let mut full = false;
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--lanes" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n > 0 => lanes = n,
                _ => return usage("--lanes takes a number of tests to run at once, 1 or more"),
            },
            "--list" => list_only = true,
            "--full" => full = true,
            "-h" | "--help" => return usage(""),
            other if other.starts_with('-') => return usage(&format!("unknown option {other}")),
            other => filters.push(other.to_string()),
        }
    }
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir.join("../..");
    let binaries = match build(&root) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("e2e-run: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut cases = Vec::new();
    let mut unplanned = Vec::new();
    for (suite, binary) in &binaries {
        let tests = match list_tests(binary) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("e2e-run: listing the tests of {}: {e}", binary.display());
                return ExitCode::FAILURE;
            }
        };
        for test in tests {
            match planned(suite, &test) {
                Some(plan) => cases.push(Case {
                    suite: suite.clone(),
                    test,
                    binary: binary.clone(),
                    plan: *plan,
                }),
                None => unplanned.push(format!("{suite}::{test}")),
            }
        }
    }
    if !unplanned.is_empty() {
        eprintln!(
            "e2e-run: these tests have no entry in crates/e2e/src/lib.rs SCHEDULE (add one: how the test \
             shares the cluster, and how long it takes): {}",
            unplanned.join(", ")
        );
        return ExitCode::FAILURE;
    }
    cases.retain(|c| {
        if filters.is_empty() {
            full || c.plan.in_gate()
        } else {
            filters.iter().any(|f| c.id().contains(f.as_str()))
        }
    });
    if cases.is_empty() {
        eprintln!("e2e-run: no test matches {filters:?}");
        return ExitCode::FAILURE;
    }
    // The longest first; the tests that run alone after all the others.
    cases.sort_by_key(|c| (c.plan.sharing == Sharing::Alone, std::cmp::Reverse(c.plan.seconds)));
    if list_only {
        for c in &cases {
            println!(
                "{:<90} {:?}, ~{} s, {} members",
                c.id(),
                c.plan.sharing,
                c.plan.seconds,
                c.plan.members
            );
        }
        return ExitCode::SUCCESS;
    }
    let logs = root.join("build/e2e");
    if let Err(e) = std::fs::create_dir_all(&logs) {
        eprintln!("e2e-run: creating {}: {e}", logs.display());
        return ExitCode::FAILURE;
    }
    let outcomes = run(&cases, lanes, &crate_dir, &logs);
    report(&cases, &outcomes, &logs)
}

fn usage(problem: &str) -> ExitCode {
    if !problem.is_empty() {
        eprintln!("e2e-run: {problem}");
    }
    eprintln!("usage: e2e-run [--full] [--lanes N] [--list] [FILTER...]   (FILTER: part of suite::test)");
    if problem.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}

/// Builds the e2e test binaries; returns each suite (tests/<suite>.rs) with its executable.
fn build(root: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut child = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        // The whole workspace, as `make test` builds it: a build of this package alone
        // compiles dependencies again with other features.
        .args([
            "test",
            "--locked",
            "--workspace",
            "--all-targets",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting cargo: {e}"))?;
    let mut binaries = BTreeMap::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.map_err(|e| format!("reading cargo's output: {e}"))?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let is_test = message["reason"] == "compiler-artifact"
            && message["profile"]["test"] == true
            && message["target"]["src_path"]
                .as_str()
                .is_some_and(|p| p.contains("/crates/e2e/tests/"))
            && message["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "test"));
        if let (true, Some(name), Some(executable)) = (
            is_test,
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            binaries.insert(name.to_string(), PathBuf::from(executable));
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the e2e tests failed ({status})"));
    }
    Ok(binaries)
}

fn list_tests(binary: &Path) -> Result<Vec<String>, String> {
    let output = Command::new(binary)
        .args(["--list", "--format", "terse"])
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

fn log_path(logs: &Path, case: &Case) -> PathBuf {
    logs.join(format!("{}.{}.log", case.suite, case.test))
}

/// A test that takes this much longer than planned is stopped and counts as failed.
fn time_limit(plan: &Planned) -> Duration {
    Duration::from_secs(u64::from(plan.seconds).saturating_mul(3).max(600))
}

fn run(cases: &[Case], lanes: usize, crate_dir: &Path, logs: &Path) -> Vec<Option<Outcome>> {
    let started = Instant::now();
    let stamp = || {
        let s = started.elapsed().as_secs();
        format!("[{:>2}:{:02}]", s / 60, s % 60)
    };
    println!(
        "e2e-run: {} tests, up to {lanes} at once; logs in {}",
        cases.len(),
        logs.display()
    );
    let (done, finished) = mpsc::channel::<Outcome>();
    let mut pending: Vec<usize> = (0..cases.len()).collect();
    let mut running: Vec<usize> = Vec::new();
    let mut outcomes: Vec<Option<Outcome>> = (0..cases.len()).map(|_| None).collect();
    let mut idle_since: Option<Instant> = None;
    loop {
        // Tests whose needs failed to install fail now; those still pending wait.
        let mut waiting = Vec::new();
        for &index in &pending {
            match cases[index].plan.needs.map_or(Readiness::Ready, readiness) {
                Readiness::Ready => {}
                Readiness::Pending => waiting.push(index),
                Readiness::Failed(why) => {
                    println!("{} FAILED {}: {why}", stamp(), cases[index].id());
                    let _ = std::fs::write(log_path(logs, &cases[index]), format!("not started: {why}\n"));
                    outcomes[index] = Some(Outcome {
                        index,
                        passed: false,
                        timed_out: false,
                        elapsed: Duration::ZERO,
                    });
                }
            }
        }
        pending.retain(|i| outcomes[*i].is_none());
        while running.len() < lanes {
            let sharing: Vec<Sharing> = running.iter().map(|i| cases[*i].plan.sharing).collect();
            let members: Vec<u32> = running.iter().map(|i| cases[*i].plan.members).collect();
            let only_alone_left = pending.iter().all(|i| cases[*i].plan.sharing == Sharing::Alone);
            let Some(position) = pending.iter().position(|i| {
                let s = cases[*i].plan.sharing;
                !waiting.contains(i)
                    && (s != Sharing::Alone || only_alone_left)
                    && may_join(s, &sharing)
                    && fits(cases[*i].plan.members, &members)
            }) else {
                break;
            };
            let index = pending.remove(position);
            let case = &cases[index];
            println!(
                "{} start {} ({:?}, ~{} s)",
                stamp(),
                case.id(),
                case.plan.sharing,
                case.plan.seconds
            );
            start(index, case, crate_dir, &log_path(logs, case), done.clone());
            running.push(index);
        }
        if running.is_empty() && pending.is_empty() {
            break;
        }
        if running.is_empty() {
            // Only tests waiting for what they need are left.
            let since = *idle_since.get_or_insert_with(Instant::now);
            if since.elapsed() > NEED_PATIENCE {
                for &index in &pending {
                    let why = format!(
                        "{:?} was still not installed after {} s with nothing else to run",
                        cases[index].plan.needs,
                        NEED_PATIENCE.as_secs()
                    );
                    println!("{} FAILED {}: {why}", stamp(), cases[index].id());
                    let _ = std::fs::write(log_path(logs, &cases[index]), format!("not started: {why}\n"));
                    outcomes[index] = Some(Outcome {
                        index,
                        passed: false,
                        timed_out: true,
                        elapsed: Duration::ZERO,
                    });
                }
                break;
            }
        } else {
            idle_since = None;
        }
        let outcome = match finished.recv_timeout(Duration::from_secs(2)) {
            Ok(outcome) => outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("run holds a sender"),
        };
        running.retain(|i| *i != outcome.index);
        let case = &cases[outcome.index];
        println!(
            "{} {} {} in {} s{}",
            stamp(),
            if outcome.passed { "ok    " } else { "FAILED" },
            case.id(),
            outcome.elapsed.as_secs(),
            if outcome.timed_out {
                format!(" (stopped after its limit of {} s)", time_limit(&case.plan).as_secs())
            } else {
                String::new()
            }
        );
        let index = outcome.index;
        outcomes[index] = Some(outcome);
    }
    outcomes
}

/// How long e2e-run waits, with nothing else left to run, for what the last tests need.
const NEED_PATIENCE: Duration = Duration::from_secs(20 * 60);

fn readiness(need: Need) -> Readiness {
    match std::env::var_os(need.variable()) {
        None => need.readiness(false, None),
        Some(path) => need.readiness(true, std::fs::read_to_string(path).ok().as_deref()),
    }
}

/// Starts one test in its own process, output to its log; reports on `done` when it ends.
fn start(index: usize, case: &Case, crate_dir: &Path, log: &Path, done: mpsc::Sender<Outcome>) {
    let limit = time_limit(&case.plan);
    let began = Instant::now();
    let spawned = File::create(log).and_then(|out| {
        let err = out.try_clone()?;
        Command::new(&case.binary)
            .args(["--exact", &case.test, "--test-threads=1", "--nocapture"])
            .current_dir(crate_dir)
            .env("CARGO_MANIFEST_DIR", crate_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
    });
    std::thread::spawn(move || {
        let mut outcome = Outcome {
            index,
            passed: false,
            timed_out: false,
            elapsed: Duration::ZERO,
        };
        match spawned {
            Err(e) => eprintln!("e2e-run: starting test #{index}: {e}"),
            Ok(mut child) => loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        outcome.passed = status.success();
                        break;
                    }
                    Ok(None) if began.elapsed() > limit => {
                        let _ = child.kill();
                        let _ = child.wait();
                        outcome.timed_out = true;
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                    Err(e) => {
                        eprintln!("e2e-run: waiting for test #{index}: {e}");
                        break;
                    }
                }
            },
        }
        outcome.elapsed = began.elapsed();
        let _ = done.send(outcome);
    });
}

fn report(cases: &[Case], outcomes: &[Option<Outcome>], logs: &Path) -> ExitCode {
    let failed: Vec<usize> = (0..cases.len())
        .filter(|i| !outcomes[*i].as_ref().is_some_and(|o| o.passed))
        .collect();
    for i in &failed {
        let path = log_path(logs, &cases[*i]);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(300);
        println!(
            "\n===== {} FAILED: the last {} lines of {} =====",
            cases[*i].id(),
            lines.len() - from,
            path.display()
        );
        for line in &lines[from..] {
            println!("{line}");
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\n| e2e test | runs beside others | result | seconds | planned |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut total = 0;
    for (case, outcome) in cases.iter().zip(outcomes) {
        let (result, seconds) = match outcome {
            Some(o) if o.passed => ("ok", o.elapsed.as_secs()),
            Some(o) if o.timed_out => ("TIMED OUT", o.elapsed.as_secs()),
            Some(o) => ("FAILED", o.elapsed.as_secs()),
            None => ("not run", 0),
        };
        total += seconds;
        let _ = writeln!(
            out,
            "| {} | {:?} | {result} | {seconds} | {} |",
            case.id(),
            case.plan.sharing,
            case.plan.seconds
        );
    }
    let _ = writeln!(
        out,
        "\n{} of {} e2e tests passed; {total} s of tests (rerun one: cargo run -q -p e2e --bin e2e-run -- SUITE::TEST)",
        cases.len() - failed.len(),
        cases.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
