//! Leader election on a `coordination.k8s.io` Lease, so that of several operator replicas
//! exactly one acts.
//!
//! As client-go does it: a replica takes the Lease when nobody holds it or when its record has
//! not changed for the lease duration, judged by this replica's own clock since it last saw
//! the record change (never by comparing another machine's timestamps with ours). The holder
//! renews every retry period; if it cannot renew within the renew deadline, which is shorter
//! than the lease duration, it stops acting before anyone else may start.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::{Duration, Instant};

pub struct LeaderElection {
    leases: Api<Lease>,
    name: String,
    identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// The holder and renew time last seen, and when this replica saw them change.
struct Seen {
    record: (Option<String>, Option<MicroTime>),
    at: Instant,
}

impl LeaderElection {
    pub fn new(leases: Api<Lease>, name: &str, identity: &str) -> LeaderElection {
        LeaderElection {
            leases,
            name: name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Returns once this replica holds the Lease. `on_contact` is called after every answer
    /// from the API server.
    pub async fn acquire(&self, on_contact: impl Fn()) {
        let mut seen = None;
        let mut waiting_logged = false;
        loop {
            match self.try_acquire_or_renew(&mut seen).await {
                Ok(true) => {
                    on_contact();
                    tracing::info!(lease = %self.name, identity = %self.identity, "became the leader");
                    return;
                }
                Ok(false) => {
                    on_contact();
                    if !waiting_logged {
                        let holder = seen
                            .as_ref()
                            .and_then(|s: &Seen| s.record.0.clone())
                            .unwrap_or_default();
                        tracing::info!(lease = %self.name, %holder, "standing by: another replica leads");
                        waiting_logged = true;
                    }
                }
                Err(error) => tracing::warn!(%error, lease = %self.name, "cannot read the leader Lease"),
            }
            tokio::time::sleep(self.retry_period).await;
        }
    }

    /// Renews the Lease until it cannot: returns when leadership is lost (another replica took
    /// it, or no renewal succeeded within the renew deadline).
    pub async fn keep(&self, on_contact: impl Fn()) {
        let mut seen = None;
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.retry_period).await;
            // A call that hangs (the API server unreachable) must not keep this replica acting:
            // each attempt gets one retry period, so leadership is given up within the renew
            // deadline plus one period, before the Lease can expire for the others.
            let attempt = tokio::time::timeout(self.retry_period, self.try_acquire_or_renew(&mut seen)).await;
            let attempt = attempt.unwrap_or_else(|_| Err(kube::Error::Service("renewing timed out".into())));
            match attempt {
                Ok(true) => {
                    on_contact();
                    renewed = Instant::now();
                }
                Ok(false) => {
                    tracing::error!(lease = %self.name, "another replica holds the leader Lease");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, lease = %self.name, "renewing the leader Lease failed");
                    if renewed.elapsed() >= self.renew_deadline {
                        tracing::error!(lease = %self.name, "could not renew the leader Lease within {:?}", self.renew_deadline);
                        return;
                    }
                }
            }
        }
    }

    /// Gives the Lease up on shutdown, so that a standby takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.leases.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        match self.leases.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!(lease = %self.name, "released the leader Lease"),
            Err(error) => tracing::warn!(%error, lease = %self.name, "could not release the leader Lease"),
        }
    }

    async fn try_acquire_or_renew(&self, seen: &mut Option<Seen>) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let seconds = i32::try_from(self.lease_duration.as_secs()).unwrap_or(15);
        let Some(current) = self.leases.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let record = (spec.holder_identity.clone(), spec.renew_time.clone());
        if seen.as_ref().is_none_or(|s| s.record != record) {
            *seen = Some(Seen {
                record,
                at: Instant::now(),
            });
        }
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let their_duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(seconds).max(1) as u64);
        let expired = seen.as_ref().is_some_and(|s| s.at.elapsed() >= their_duration);
        if !mine && spec.holder_identity.is_some() && !expired {
            return Ok(false);
        }
        let mut lease = current;
        let spec = lease.spec.get_or_insert_with(Default::default);
        if !mine {
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(now);
        // The resourceVersion read above makes this a compare-and-swap: of two replicas taking
        // an expired Lease at once, one gets a conflict.
        match self.leases.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }
}
