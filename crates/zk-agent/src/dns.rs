//! Waiting until the ensemble's names resolve.
//!
//! The JVM caches failed look-ups, and a member that writes its configuration before its peers
//! are in DNS may never find them. So the agent waits before starting ZooKeeper.

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
    pub deadline: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(200),
            // A name appears when its pod gets an address; look often (a look-up is cheap), so
            // that the member starts within a second of it.
            max: Duration::from_secs(1),
            deadline: Duration::from_secs(600),
        }
    }
}

pub fn resolves(host: &str) -> bool {
    (host, 0)
        .to_socket_addrs()
        .map(|mut a| a.next().is_some())
        .unwrap_or(false)
}

/// Waits until every name resolves, logging one line per attempt that still lacks some.
/// Returns the names still unresolved when the deadline passes.
pub fn wait_until_resolved(
    names: &[String],
    backoff: &Backoff,
    resolve: impl Fn(&str) -> bool,
    log: impl Fn(&str),
) -> Result<(), Vec<String>> {
    wait_until_enough_resolve(names, |missing| missing.is_empty(), backoff, resolve, log)
}

/// Waits until `enough(missing names)` holds, logging one line per attempt that still lacks some.
/// Returns the names still unresolved when the deadline passes.
pub fn wait_until_enough_resolve(
    names: &[String],
    enough: impl Fn(&[String]) -> bool,
    backoff: &Backoff,
    resolve: impl Fn(&str) -> bool,
    log: impl Fn(&str),
) -> Result<(), Vec<String>> {
    let started = Instant::now();
    let mut delay = backoff.first;
    for attempt in 1.. {
        let missing: Vec<String> = names.iter().filter(|n| !resolve(n)).cloned().collect();
        if enough(&missing) {
            if attempt > 1 {
                log(&format!(
                    "{} of {} ensemble names resolve after {attempt} attempts",
                    names.len() - missing.len(),
                    names.len()
                ));
            }
            return Ok(());
        }
        let elapsed = started.elapsed();
        if elapsed >= backoff.deadline {
            return Err(missing);
        }
        let wait = delay.min(backoff.deadline - elapsed);
        log(&format!(
            "waiting for DNS (attempt {attempt}): {} of {} names do not resolve yet: {}; next try in {:.1}s",
            missing.len(),
            names.len(),
            missing.join(", "),
            wait.as_secs_f64()
        ));
        std::thread::sleep(wait);
        delay = (delay * 2).min(backoff.max);
    }
    unreachable!()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn waits_with_growing_delays_until_names_appear() {
        let calls = Cell::new(0);
        let logged = std::cell::RefCell::new(Vec::new());
        let names = vec!["a".to_string(), "b".to_string()];
        let backoff = Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(4),
            deadline: Duration::from_secs(5),
        };
        let result = wait_until_resolved(
            &names,
            &backoff,
            |name| {
                calls.set(calls.get() + 1);
                name == "a" || calls.get() > 8
            },
            |line| logged.borrow_mut().push(line.to_string()),
        );
        assert!(result.is_ok());
        let logged = logged.into_inner();
        assert!(
            logged[0].contains("attempt 1") && logged[0].contains("1 of 2") && logged[0].contains(": b;"),
            "{logged:?}"
        );
        assert!(
            logged.last().unwrap().contains("2 of 2 ensemble names resolve after"),
            "{logged:?}"
        );
    }

    #[test]
    fn stops_waiting_when_enough_names_resolve() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let backoff = Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(1),
            deadline: Duration::from_millis(50),
        };
        let two_of_three = |missing: &[String]| missing.len() <= 1;
        assert!(wait_until_enough_resolve(&names, two_of_three, &backoff, |n| n != "c", |_| {}).is_ok());
        assert_eq!(
            wait_until_enough_resolve(&names, two_of_three, &backoff, |n| n == "a", |_| {}),
            Err(vec!["b".to_string(), "c".to_string()])
        );
    }

    #[test]
    fn gives_up_at_the_deadline_naming_what_is_missing() {
        let backoff = Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(2),
            deadline: Duration::from_millis(20),
        };
        let result = wait_until_resolved(&["x".to_string(), "y".to_string()], &backoff, |n| n == "y", |_| {});
        assert_eq!(result, Err(vec!["x".to_string()]));
    }
}
