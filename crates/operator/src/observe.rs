//! Observe: what the reconcile decides from. The API server's objects, each member's pod turned
//! into a state with its cause, and the ensemble's committed configuration. The functions that
//! interpret what was read are pure and tested here; `observe` only reads.

use crate::ensemble::{self, Credentials, EnsembleConfig, Target, TlsIdentity};
use crate::error::{named, At, Error, Stage};
use crate::planner::{ClusterView, MemberState, MemberView};
use crate::references;
use crate::resources::{Names, OperatorSettings, ADMIN_PASSWORD_KEY, ENSEMBLE_STATE_KEY};
use crate::tls::{self, Authority, Kept, MembersShow};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::time::Duration;
use vocabulary::{ports, ServingRole};
use zk_agent::tls::TlsClient;
use zkop_api::ZooKeeperCluster;

/// The container zk-agent runs ZooKeeper in.
pub const CONTAINER: &str = "zookeeper";
/// Causes are cut to this length: a kubelet's image pull message can be long.
const MAX_CAUSE: usize = 240;

/// One member as the operator sees it: its pod (or its absence) and what its `srvr` said.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberObservation {
    pub pod: String,
    pub ordinal: u32,
    /// Empty when the pod is missing.
    pub uid: String,
    pub state: MemberState,
    /// The pod runs the StatefulSet's update revision.
    pub up_to_date: bool,
    /// `<pod IP>:<client port>`, when the pod has an address.
    pub address: Option<String>,
    /// The member's stable DNS name, which its TLS certificate names.
    pub host: String,
    /// Since when it has not served: see `down_since`. `None` while its pod is Ready.
    pub down_since: Option<Timestamp>,
    /// Why it does not run or serve, from the pod.
    pub cause: Option<String>,
    pub restarts: i32,
    /// What the member itself says, when it serves: the release it runs and its last zxid.
    pub version: Option<String>,
    pub zxid: Option<u64>,
}

impl MemberObservation {
    pub fn role(&self) -> Option<ServingRole> {
        match self.state {
            MemberState::Serving(role) => Some(role),
            _ => None,
        }
    }
    pub fn serves(&self) -> bool {
        self.role().is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatefulSetObservation {
    pub replicas: i32,
    pub updated_replicas: i32,
    /// The StatefulSet controller has seen the latest spec and every pod runs its update revision.
    pub rolled_out: bool,
}

/// Everything one reconcile decides from.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub statefulset: Option<StatefulSet>,
    pub statefulset_status: Option<StatefulSetObservation>,
    /// The live ConfigMap (members file and ensemble state).
    pub config_map: Option<ConfigMap>,
    /// Members by ordinal: every ordinal the StatefulSet should have (missing pods included) and
    /// any pod beyond its size.
    pub members: Vec<MemberObservation>,
    pub claims: Vec<PersistentVolumeClaim>,
    /// The admin Secret (the super user's password), once it exists.
    pub admin_secret: Option<Secret>,
    /// The ensemble's committed configuration, read (after `sync`) from a serving member.
    pub ensemble: Option<EnsembleConfig>,
    /// ConfigMaps the pods mount: a configuration revision in use must not be deleted.
    pub revision_config_maps_in_use: BTreeSet<String>,
    /// How the operator proves it is the super user.
    pub credentials: Credentials,
    /// TLS material as the Secrets hold it, and what the members show of it.
    pub tls: TlsObservation,
    /// Why the Secrets and claims the spec names may not be used by this cluster, if so.
    pub refusals: references::Refusals,
}

/// The TLS Secrets, read back, and what the members show.
#[derive(Debug, Clone, Default)]
pub struct TlsObservation {
    pub authority_secret: Option<Secret>,
    pub authority: Option<Authority>,
    /// The user's own authority, when `spec.tls.caSecretName` names one.
    pub user_authority: Option<Result<crate::pki::Issued, String>>,
    pub member_secret: Option<Secret>,
    pub member: Option<Kept>,
    pub client_secrets: BTreeMap<String, Secret>,
    pub clients: BTreeMap<String, Kept>,
    pub members_show: MembersShow,
    /// Members serving the member certificate the Secret holds, and members checked.
    pub serving_current: (usize, usize),
}

impl Observation {
    /// The ensemble state the live ConfigMap records.
    pub fn recorded_ensemble_state(&self) -> Option<&str> {
        self.config_map
            .as_ref()?
            .data
            .as_ref()?
            .get(ENSEMBLE_STATE_KEY)
            .map(String::as_str)
    }

    /// The TLS phase the StatefulSet's template runs (its `ZK_TLS_PHASE`); plaintext for a
    /// template from before TLS existed.
    pub fn template_tls_phase(&self) -> Option<vocabulary::tls::Phase> {
        let spec = self.statefulset.as_ref()?.spec.as_ref()?;
        let container = spec
            .template
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == CONTAINER)?;
        let value = container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == "ZK_TLS_PHASE")
            .and_then(|e| e.value.clone());
        Some(match value {
            Some(phase) => vocabulary::tls::Phase::parse(&phase)?,
            None => vocabulary::tls::Phase::Plaintext,
        })
    }

    pub fn statefulset_replicas(&self) -> Option<u32> {
        let replicas = self.statefulset.as_ref()?.spec.as_ref()?.replicas?;
        u32::try_from(replicas).ok()
    }
}

pub async fn observe(
    client: &Client,
    zk: &ZooKeeperCluster,
    names: &Names,
    settings: &OperatorSettings,
) -> Result<Observation, Error> {
    let ns = &names.namespace;
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let selector = ListParams::default().labels(&names.label_selector());

    let statefulset = statefulsets
        .get_opt(&names.statefulset())
        .await
        .at(Stage::Observe, named::<StatefulSet>(ns, &names.statefulset()))?;
    let config_map = config_maps
        .get_opt(&names.config_map())
        .await
        .at(Stage::Observe, named::<ConfigMap>(ns, &names.config_map()))?;
    let admin_secret = secrets
        .get_opt(&names.admin_secret())
        .await
        .at(Stage::Observe, named::<Secret>(ns, &names.admin_secret()))?;
    let pod_list = pods
        .list(&selector)
        .await
        .at(Stage::Observe, format!("Pods {ns}/{}", names.label_selector()))?
        .items;
    let claims = claims
        .list(&selector)
        .await
        .at(
            Stage::Observe,
            format!("PersistentVolumeClaims {ns}/{}", names.label_selector()),
        )?
        .items;

    let update_revision = statefulset
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .and_then(|s| s.update_revision.clone());
    let replicas = statefulset
        .as_ref()
        .and_then(|s| s.spec.as_ref())
        .and_then(|s| s.replicas)
        .and_then(|r| u32::try_from(r).ok())
        .unwrap_or(0);
    let tls_observed = observe_tls(&secrets, zk, names).await?;
    let refusals = observe_references(client, zk, names).await?;
    let credentials = Credentials {
        tls: operator_identity(&tls_observed),
        password: admin_secret.as_ref().and_then(admin_password),
    };
    let domain = vocabulary::PeerDomain {
        service: names.headless_service(),
        namespace: ns.clone(),
        cluster_domain: settings.cluster_domain.clone(),
    };
    let mut members: Vec<MemberObservation> = pod_list
        .iter()
        .filter_map(|pod| member_from_pod(pod, &names.statefulset(), update_revision.as_deref()))
        .map(|mut m| {
            m.host = domain.host(&names.statefulset(), m.ordinal);
            m
        })
        .collect();
    let tls_client = credentials
        .tls
        .as_ref()
        .and_then(|t| TlsClient::from_pem(&t.ca_bundle, &t.cert_pem, &t.key_pem).ok());
    probe_members(&mut members, tls_client.as_ref()).await;
    let mut tls_observed = tls_observed;
    if let Some(client) = &tls_client {
        check_members_tls(&mut tls_observed, client, &members).await;
    }
    for ordinal in 0..replicas {
        if !members.iter().any(|m| m.ordinal == ordinal) {
            members.push(missing_member(names, ordinal));
        }
    }
    members.sort_by_key(|m| m.ordinal);

    let ensemble = if members.iter().any(MemberObservation::serves) {
        ensemble::read_config(&serving_targets(&members, None), &credentials).await
    } else {
        None
    };
    let statefulset_status = statefulset.as_ref().map(statefulset_observation);
    let revision_config_maps_in_use = pod_list.iter().flat_map(config_maps_mounted).collect();
    Ok(Observation {
        statefulset,
        statefulset_status,
        config_map,
        members,
        claims,
        admin_secret,
        ensemble,
        revision_config_maps_in_use,
        credentials,
        tls: tls_observed,
        refusals,
    })
}

/// Reads the labels of every Secret and claim the spec names (see `references`).
async fn observe_references(
    client: &Client,
    zk: &ZooKeeperCluster,
    names: &Names,
) -> Result<references::Refusals, Error> {
    let ns = &names.namespace;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut seen = references::Seen::new();
    for reference in references::named_in(&zk.spec) {
        let key = (reference.kind, reference.name.clone());
        if seen.contains_key(&key) {
            continue;
        }
        let labels = match reference.kind {
            references::Kind::Secret => secrets
                .get_metadata_opt(&reference.name)
                .await
                .at(Stage::Observe, named::<Secret>(ns, &reference.name))?
                .map(|o| o.metadata.labels.unwrap_or_default()),
            references::Kind::PersistentVolumeClaim => claims
                .get_metadata_opt(&reference.name)
                .await
                .at(Stage::Observe, named::<PersistentVolumeClaim>(ns, &reference.name))?
                .map(|o| o.metadata.labels.unwrap_or_default()),
        };
        seen.insert(key, labels);
    }
    Ok(references::refusals(ns, &names.cluster, &zk.spec, &seen))
}

/// The authority, member and client Secrets, and the user's authority if named.
async fn observe_tls(secrets: &Api<Secret>, zk: &ZooKeeperCluster, names: &Names) -> Result<TlsObservation, Error> {
    let ns = &names.namespace;
    let get = |name: String| async move {
        secrets
            .get_opt(&name)
            .await
            .at(Stage::Observe, named::<Secret>(ns, &name))
    };
    let authority_secret = get(names.ca_secret()).await?;
    let member_secret = get(names.tls_secret()).await?;
    let mut client_secrets = BTreeMap::new();
    for client in &zk.spec.tls.clients {
        if let Some(secret) = get(names.client_secret(client)).await? {
            client_secrets.insert(client.clone(), secret);
        }
    }
    let user_authority = match &zk.spec.tls.ca_secret_name {
        Some(name) => Some(match get(name.clone()).await? {
            Some(secret) if !references::allows(secret.metadata.labels.as_ref(), &names.cluster) => Err(format!(
                "{ns}/{name} does not allow cluster {cluster} to sign with it. Whoever may read it allows it with: kubectl -n {ns} label secret {name} {label}=true",
                cluster = names.cluster,
                label = references::allow_label(&names.cluster),
            )),
            Some(secret) => tls::read_user_authority(&secret).map_err(|why| format!("{ns}/{name} {why}")),
            None => Err(format!("{ns}/{name} does not exist")),
        }),
        None => None,
    };
    Ok(TlsObservation {
        authority: authority_secret.as_ref().and_then(tls::read_authority),
        member: member_secret.as_ref().and_then(tls::read_kept),
        clients: client_secrets
            .iter()
            .filter_map(|(name, s)| Some((name.clone(), tls::read_kept(s)?)))
            .collect(),
        authority_secret,
        member_secret,
        client_secrets,
        user_authority,
        members_show: MembersShow::default(),
        serving_current: (0, 0),
    })
}

/// The operator's client certificate, minted from the signing authority.
fn operator_identity(observed: &TlsObservation) -> Option<TlsIdentity> {
    let authority = observed.authority.as_ref()?;
    let signing = signing_material(observed, &authority.signing)?;
    let issued = tls::cached_operator_identity(&signing, std::time::SystemTime::now()).ok()?;
    Some(TlsIdentity {
        ca_bundle: authority.trusted.concat(),
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
    })
}

/// An authority with its key: from its Secret, or, for a user's authority, from theirs.
fn signing_material(observed: &TlsObservation, authority: &crate::pki::Issued) -> Option<crate::pki::Issued> {
    if !authority.key_pem.is_empty() {
        return Some(authority.clone());
    }
    match &observed.user_authority {
        Some(Ok(user)) if tls::fingerprint(&user.cert_pem) == tls::fingerprint(&authority.cert_pem) => {
            Some(user.clone())
        }
        _ => None,
    }
}

/// What every member shows over TLS: the certificate it serves, and, during a rotation, whether
/// it accepts a client certificate signed by the next authority.
async fn check_members_tls(observed: &mut TlsObservation, client: &TlsClient, members: &[MemberObservation]) {
    let current = observed
        .member
        .as_ref()
        .and_then(|m| zk_agent::tls::pem_to_der(&m.cert_pem));
    let next_client = observed.authority.as_ref().and_then(|a| {
        let next = a.next.as_ref()?;
        let next = signing_material(observed, next)?;
        let issued = tls::cached_operator_identity(&next, std::time::SystemTime::now()).ok()?;
        TlsClient::from_pem(&a.trusted.concat(), &issued.cert_pem, &issued.key_pem).ok()
    });
    let checks = members.iter().filter(|m| m.state != MemberState::Missing).map(|m| {
        let (client, next_client, host) = (client.clone(), next_client.clone(), m.host.clone());
        tokio::task::spawn_blocking(move || {
            let address = format!("{host}:{}", ports::SECURE_CLIENT);
            let timeout = Duration::from_secs(2);
            let served = client.served_certificate(&address, &host, timeout).ok();
            let trusts_next = next_client.map(|c| c.served_certificate(&address, &host, timeout).is_ok());
            (served, trusts_next)
        })
    });
    let results: Vec<_> = futures::future::join_all(checks).await.into_iter().flatten().collect();
    let serving_current = results
        .iter()
        .filter(|(served, _)| served.is_some() && *served == current)
        .count();
    observed.serving_current = (serving_current, results.len());
    observed.members_show = MembersShow {
        trust_next: !results.is_empty() && results.iter().all(|(_, next)| *next == Some(true)),
        serve_current_certificate: !results.is_empty() && serving_current == results.len(),
    };
}

/// Names of the ConfigMaps a pod mounts, directly or in a projected volume.
fn config_maps_mounted(pod: &Pod) -> Vec<String> {
    let volumes = pod
        .spec
        .as_ref()
        .map(|s| s.volumes.clone().unwrap_or_default())
        .unwrap_or_default();
    volumes
        .iter()
        .flat_map(|v| {
            let direct = v.config_map.as_ref().map(|c| c.name.clone());
            let projected = v
                .projected
                .as_ref()
                .and_then(|p| p.sources.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|s| s.config_map.map(|c| c.name));
            direct.into_iter().chain(projected).collect::<Vec<_>>()
        })
        .collect()
}

/// The super user's password an admin Secret holds.
pub fn admin_password(secret: &Secret) -> Option<String> {
    let password = secret.data.as_ref()?.get(ADMIN_PASSWORD_KEY)?;
    Some(String::from_utf8_lossy(&password.0).into_owned())
}

/// Asks every running member `srvr`, at once: over TLS when the operator has a certificate,
/// else (or if the member does not answer over TLS yet, during a migration) in plaintext.
async fn probe_members(members: &mut [MemberObservation], tls: Option<&TlsClient>) {
    let probes = members.iter().map(|m| {
        let address = m.address.clone().filter(|_| m.state == MemberState::Running);
        let host = m.host.clone();
        let tls = tls.cloned();
        tokio::task::spawn_blocking(move || {
            let address = address?;
            let timeout = Duration::from_secs(2);
            let secure = tls.and_then(|c| c.srvr(&format!("{host}:{}", ports::SECURE_CLIENT), &host, timeout).ok());
            secure.or_else(|| zk_agent::probe::srvr(&address, timeout).ok())
        })
    });
    let replies = futures::future::join_all(probes).await;
    for (member, reply) in members.iter_mut().zip(replies) {
        if let Ok(Some(serving)) = reply {
            member.state = MemberState::Serving(serving.mode);
            member.down_since = None;
            member.version = serving.version;
            member.zxid = serving.zxid;
        }
    }
}

/// The role each member that served when observed has now, by ordinal (`None`: not serving at
/// this moment), asked again with `srvr`: for steps that wait on the ensemble, e.g. a hand-off.
pub async fn roles_now(members: &[MemberObservation], credentials: &Credentials) -> Vec<(u32, Option<ServingRole>)> {
    let mut again: Vec<MemberObservation> = members
        .iter()
        .filter(|m| m.serves())
        .cloned()
        .map(|mut m| {
            m.state = MemberState::Running;
            m
        })
        .collect();
    let tls = credentials
        .tls
        .as_ref()
        .and_then(|t| TlsClient::from_pem(&t.ca_bundle, &t.cert_pem, &t.key_pem).ok());
    probe_members(&mut again, tls.as_ref()).await;
    again.iter().map(|m| (m.ordinal, m.role())).collect()
}

/// Serving members, as the operator reaches them, the member with server id `avoid` last.
pub fn serving_targets(members: &[MemberObservation], avoid: Option<u64>) -> Vec<Target> {
    let mut serving: Vec<&MemberObservation> = members.iter().filter(|m| m.serves()).collect();
    serving.sort_by_key(|m| Some(vocabulary::myid_for_ordinal(m.ordinal)) == avoid);
    serving
        .iter()
        .map(|m| Target {
            host: m.host.clone(),
            plaintext: m.address.clone(),
        })
        .collect()
}

fn missing_member(names: &Names, ordinal: u32) -> MemberObservation {
    let view = MemberView::missing(ordinal);
    MemberObservation {
        pod: names.pod(ordinal),
        ordinal,
        uid: String::new(),
        state: view.state,
        up_to_date: true,
        address: None,
        host: String::new(),
        down_since: None,
        cause: view.cause,
        restarts: 0,
        version: None,
        zxid: None,
    }
}

/// A member pod as the planner needs it, before `srvr` is asked: `Running` means the container
/// runs (whether it serves is for `srvr` to say). `None` for a pod that is not a member.
pub fn member_from_pod(pod: &Pod, statefulset: &str, update_revision: Option<&str>) -> Option<MemberObservation> {
    let name = pod.name_any();
    let ordinal = name.strip_prefix(&format!("{statefulset}-"))?.parse::<u32>().ok()?;
    let status = pod.status.clone().unwrap_or_default();
    let container = status
        .container_statuses
        .as_ref()
        .and_then(|all| all.iter().find(|c| c.name == CONTAINER));
    let restarts = container.map_or(0, |c| c.restart_count);
    let last_exit = container
        .and_then(|c| c.last_state.as_ref()?.terminated.as_ref())
        .map(|t| {
            format!(
                "last exit {} (exit code {})",
                t.reason.as_deref().unwrap_or("unknown"),
                t.exit_code
            )
        });
    let unscheduled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    let (state, cause) = if pod.metadata.deletion_timestamp.is_some() {
        (MemberState::Terminating, Some("its pod is being deleted".to_string()))
    } else if matches!(status.phase.as_deref(), Some("Failed" | "Succeeded")) {
        let why = [status.reason.as_deref(), status.message.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(": ");
        (
            MemberState::Broken,
            Some(format!("pod {}: {why}", status.phase.as_deref().unwrap_or(""))),
        )
    } else if let Some(condition) = unscheduled {
        let why = condition.message.as_deref().unwrap_or("no node fits");
        (MemberState::Broken, Some(format!("Unschedulable: {why}")))
    } else if let Some(state) = container.and_then(|c| c.state.as_ref()) {
        if let Some(waiting) = &state.waiting {
            let mut why = waiting.reason.clone().unwrap_or_else(|| "Waiting".into());
            if let Some(message) = &waiting.message {
                why.push_str(&format!(": {message}"));
            }
            if let Some(exit) = &last_exit {
                why.push_str(&format!("; {exit}"));
            }
            (MemberState::Broken, Some(why))
        } else if let Some(terminated) = &state.terminated {
            let why = format!(
                "exited {} (exit code {})",
                terminated.reason.as_deref().unwrap_or("unknown"),
                terminated.exit_code
            );
            (MemberState::Broken, Some(why))
        } else {
            let why = (restarts > 0)
                .then(|| format!("restarted {restarts} times, {}", last_exit.unwrap_or_default()))
                .map(|s| s.trim_end_matches([',', ' ']).to_string());
            (MemberState::Running, why)
        }
    } else {
        (
            MemberState::Broken,
            Some("its container has not started yet".to_string()),
        )
    };
    let down_since = down_since(pod);
    Some(MemberObservation {
        pod: name,
        ordinal,
        uid: pod.uid().unwrap_or_default(),
        up_to_date: update_revision.is_some()
            && pod.labels().get("controller-revision-hash").map(String::as_str) == update_revision,
        address: status.pod_ip.map(|ip| format!("{ip}:{}", ports::CLIENT)),
        host: String::new(),
        down_since,
        cause: cause.map(|c| cut(&c)),
        restarts,
        state,
        version: None,
        zxid: None,
    })
}

/// Since when a member's pod has not served, as far as Kubernetes can tell:
/// - not Ready: since its Ready condition turned false (or since its deletion began, if earlier);
/// - being deleted while still Ready (the kubelet keeps probing readiness through the preStop
///   hook and the JVM's stop): since its deletion began, not since it was created, so that a
///   member a roll just evicted is not counted down for its whole life, and declared stuck;
/// - Ready and not being deleted: unknown (`None`). The kubelet's probe says it serves; a `srvr`
///   the operator could not get an answer to (a slow machine) starts no clock;
/// - no Ready condition yet: since it was created.
fn down_since(pod: &Pod) -> Option<Timestamp> {
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    // deletionTimestamp is when the grace period ends: the deletion began that many seconds before.
    let deleting_since = pod.metadata.deletion_timestamp.as_ref().map(|t| {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        t.0.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(grace))
            .unwrap_or(t.0)
    });
    let created = pod.metadata.creation_timestamp.as_ref().map(|t| t.0);
    match ready {
        Some(ready) if ready.status == "True" => deleting_since,
        Some(ready) => ready
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
            .into_iter()
            .chain(deleting_since)
            .min()
            .or(created),
        None => deleting_since.or(created),
    }
}

fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_CAUSE) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

pub fn statefulset_observation(sts: &StatefulSet) -> StatefulSetObservation {
    let status = sts.status.clone().unwrap_or_default();
    let generation_seen = status.observed_generation >= sts.metadata.generation;
    let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    StatefulSetObservation {
        replicas: status.replicas,
        updated_replicas: updated,
        // With OnDelete the StatefulSet controller never advances currentRevision, so "rolled
        // out" is every pod on the update revision.
        rolled_out: generation_seen && updated == replicas,
    }
}

/// Volumes of this cluster created before the resource itself: it was re-created over volumes
/// an earlier ensemble kept (`whenDeleted: Retain`), so the ensemble already exists.
pub fn volumes_predate_cluster(zk: &ZooKeeperCluster, names: &Names, claims: &[PersistentVolumeClaim]) -> bool {
    !retained_volumes(zk, names, claims).is_empty()
}

/// The names of this cluster's claims created before the resource itself, in order.
pub fn retained_volumes(zk: &ZooKeeperCluster, names: &Names, claims: &[PersistentVolumeClaim]) -> Vec<String> {
    let Some(created) = zk.metadata.creation_timestamp.as_ref() else {
        return Vec::new();
    };
    let prefix = format!("{}-", names.claim_prefix());
    let mut retained: Vec<String> = claims
        .iter()
        .filter(|claim| {
            claim.name_any().starts_with(&prefix)
                && claim
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .is_some_and(|t| t.0 < created.0)
        })
        .map(|claim| claim.name_any())
        .collect();
    retained.sort();
    retained
}

/// Ordinals at or beyond `replicas` that still have a volume (retained by `whenScaled: Retain`,
/// or not yet deleted).
pub fn leftover_volumes(names: &Names, claims: &[PersistentVolumeClaim], replicas: u32) -> BTreeSet<u32> {
    let prefix = format!("{}-", names.claim_prefix());
    claims
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .filter_map(|c| c.name_any().strip_prefix(&prefix)?.parse::<u32>().ok())
        .filter(|ordinal| *ordinal >= replicas)
        .collect()
}

/// The planner's view of the cluster.
pub fn cluster_view(
    zk: &ZooKeeperCluster,
    names: &Names,
    settings: &OperatorSettings,
    observation: &Observation,
    local_plaintext: bool,
    now: Timestamp,
) -> ClusterView {
    let statefulset_replicas = observation.statefulset_replicas().unwrap_or(0);
    let wanted = crate::resources::membership(names, settings, statefulset_replicas.max(1), local_plaintext);
    let outdated_lines = observation
        .ensemble
        .as_ref()
        .map(|e| {
            e.members
                .iter()
                .filter(|(id, committed)| wanted.member(**id).is_some_and(|m| !m.equivalent(committed)))
                .map(|(id, _)| *id)
                .collect()
        })
        .unwrap_or_default();
    let client_moves = observation
        .ensemble
        .as_ref()
        .map(|e| {
            e.members
                .iter()
                .filter(|(id, committed)| wanted.member(**id).is_some_and(|m| !m.same_client_address(committed)))
                .map(|(id, _)| *id)
                .collect()
        })
        .unwrap_or_default();
    let handed_off = observation
        .ensemble
        .as_ref()
        .map(|e| {
            e.members
                .iter()
                .filter(|(_, committed)| committed.quorum_port == ports::QUORUM_HANDOFF)
                .map(|(id, _)| *id)
                .collect()
        })
        .unwrap_or_default();
    ClusterView {
        statefulset: names.statefulset(),
        desired_replicas: u32::try_from(zk.spec.replicas).unwrap_or(1),
        statefulset_replicas,
        members: observation
            .members
            .iter()
            .map(|m| MemberView {
                ordinal: m.ordinal,
                state: m.state.clone(),
                up_to_date: m.up_to_date,
                down_for: m
                    .down_since
                    .filter(|_| !m.serves())
                    .and_then(|since| Duration::try_from(now.duration_since(since)).ok())
                    .unwrap_or_default(),
                down_since: m.down_since.filter(|_| !m.serves()),
                cause: m.cause.clone(),
            })
            .collect(),
        voters: observation.ensemble.as_ref().map(|e| e.voters.clone()),
        leftover_volumes: leftover_volumes(names, &observation.claims, statefulset_replicas),
        member_ready_timeout: Duration::from_secs(u64::from(zk.spec.rollout.member_ready_timeout_seconds)),
        outdated_lines,
        client_moves,
        handed_off,
        leader_hand_off: zk.spec.rollout.leader_hand_off,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "zk-2", "uid": "u-2",
                "creationTimestamp": "2026-11-29T10:00:00Z",
                "labels": {"controller-revision-hash": "zk-new"},
            },
            "status": status,
        }))
        .unwrap()
    }

    fn observe_pod(status: serde_json::Value) -> MemberObservation {
        member_from_pod(&pod(status), "zk", Some("zk-new")).unwrap()
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_named() {
        let m = observe_pod(json!({
            "phase": "Pending", "podIP": "10.0.0.7",
            "containerStatuses": [{"name": "zookeeper", "ready": false, "restartCount": 0, "image": "zkop/zookeeper:3.9.99", "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"zkop/zookeeper:3.9.99\""}}}],
        }));
        assert_eq!(m.state, MemberState::Broken);
        assert_eq!(m.ordinal, 2);
        assert!(m.up_to_date);
        assert_eq!(m.address.as_deref(), Some("10.0.0.7:2181"));
        let cause = m.cause.unwrap();
        assert!(cause.starts_with("ImagePullBackOff: Back-off pulling image"), "{cause}");
    }

    #[test]
    fn a_crash_loop_names_the_last_exit() {
        let m = observe_pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "zookeeper", "ready": false, "restartCount": 4, "image": "i", "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}],
        }));
        assert_eq!(m.state, MemberState::Broken);
        assert_eq!(m.restarts, 4);
        assert_eq!(
            m.cause.as_deref(),
            Some("CrashLoopBackOff: back-off 40s restarting failed container; last exit Error (exit code 2)")
        );
    }

    #[test]
    fn an_unschedulable_pod_gives_the_schedulers_message() {
        let m = observe_pod(json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."}],
        }));
        assert_eq!(m.state, MemberState::Broken);
        assert!(m.cause.unwrap().starts_with("Unschedulable: 0/4 nodes"));
    }

    #[test]
    fn a_running_container_is_left_for_srvr_to_judge() {
        let m = observe_pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-11-29T10:05:00Z"}],
            "containerStatuses": [{"name": "zookeeper", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"running": {"startedAt": "2026-11-29T10:00:01Z"}}}],
        }));
        assert_eq!(m.state, MemberState::Running);
        assert_eq!(m.cause, None);
        assert_eq!(m.down_since.unwrap().to_string(), "2026-11-29T10:05:00Z");
    }

    #[test]
    fn a_pod_on_an_older_revision_is_outdated_and_other_pods_are_not_members() {
        let mut p = pod(json!({}));
        p.metadata.labels = Some([("controller-revision-hash".to_string(), "zk-old".to_string())].into());
        assert!(!member_from_pod(&p, "zk", Some("zk-new")).unwrap().up_to_date);
        assert!(member_from_pod(&p, "zookeeper", Some("zk-new")).is_none());
        assert_eq!(
            member_from_pod(&p, "zk", Some("zk-new")).unwrap().cause.as_deref(),
            Some("its container has not started yet")
        );
    }

    #[test]
    fn long_causes_are_cut() {
        let long = "x".repeat(1000);
        let m = observe_pod(json!({
            "containerStatuses": [{"name": "zookeeper", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"waiting": {"reason": "ErrImagePull", "message": long}}}],
        }));
        assert!(m.cause.unwrap().len() < 300);
    }

    #[test]
    fn volumes_older_than_the_resource_mean_it_was_recreated_over_them() {
        let mut zk = ZooKeeperCluster::new("zk", serde_json::from_value(json!({})).unwrap());
        zk.metadata.namespace = Some("ns".into());
        zk.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-11-29T10:00:00Z".parse().unwrap(),
        ));
        let names = Names::of(&zk);
        let claim = |name: &str, created: &str| -> PersistentVolumeClaim {
            serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created}})).unwrap()
        };
        assert!(!volumes_predate_cluster(
            &zk,
            &names,
            &[claim("data-zk-0", "2026-11-29T10:00:00Z")]
        ));
        assert!(volumes_predate_cluster(
            &zk,
            &names,
            &[claim("data-zk-1", "2026-11-28T09:00:00Z")]
        ));
        assert!(!volumes_predate_cluster(
            &zk,
            &names,
            &[claim("data-other-1", "2026-11-28T09:00:00Z")]
        ));
        assert_eq!(
            leftover_volumes(
                &names,
                &[
                    claim("data-zk-1", "2026-11-28T09:00:00Z"),
                    claim("data-zk-4", "2026-11-28T09:00:00Z")
                ],
                3
            ),
            BTreeSet::from([4])
        );
    }

    /// zk-1 evicted at 10:20:00 with a 30 s grace period; created at 10:00:00.
    fn terminating_pod(ready: &str, ready_since: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "zk-1", "uid": "u-old",
                "creationTimestamp": "2026-11-29T10:00:00Z",
                "deletionTimestamp": "2026-11-29T10:20:30Z",
                "deletionGracePeriodSeconds": 30,
                "labels": {"controller-revision-hash": "zk-old"},
            },
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": ready_since}],
                "containerStatuses": [{"name": "zookeeper", "ready": ready == "True", "restartCount": 0,
                    "image": "i", "imageID": "", "state": {"running": {"startedAt": "2026-11-29T10:00:01Z"}}}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_pod_still_ready_while_it_terminates_is_down_since_its_deletion_began() {
        // The kubelet probes readiness through the preStop hook and the JVM's stop: Ready stays
        // True for a while after the eviction. Counted from the pod's creation, the member a roll
        // had just evicted was down for 20 minutes and declared stuck at once.
        let m = member_from_pod(&terminating_pod("True", "2026-11-29T10:00:40Z"), "zk", Some("zk-new")).unwrap();
        assert_eq!(m.state, MemberState::Terminating);
        assert_eq!(m.down_since.unwrap().to_string(), "2026-11-29T10:20:00Z");
        // Not ready since before its deletion (a broken member being replaced): since then.
        let m = member_from_pod(&terminating_pod("False", "2026-11-29T10:19:00Z"), "zk", Some("zk-new")).unwrap();
        assert_eq!(m.down_since.unwrap().to_string(), "2026-11-29T10:19:00Z");
    }

    #[test]
    fn a_member_the_roll_just_evicted_is_not_stuck_while_its_pod_terminates() {
        let mut zk = ZooKeeperCluster::new(
            "zk",
            serde_json::from_value(json!({"replicas": 3, "rollout": {"memberReadyTimeoutSeconds": 30}})).unwrap(),
        );
        zk.metadata.namespace = Some("ns".into());
        let names = Names::of(&zk);
        let settings = OperatorSettings {
            cluster_domain: "cluster.local".into(),
            operator_namespace: None,
        };
        let observation = Observation {
            members: vec![
                member_from_pod(&terminating_pod("True", "2026-11-29T10:00:40Z"), "zk", Some("zk-new")).unwrap(),
            ],
            ..Default::default()
        };
        let at = |t: &str| -> Timestamp { t.parse().unwrap() };
        let view = cluster_view(&zk, &names, &settings, &observation, false, at("2026-11-29T10:20:02Z"));
        assert!(crate::planner::stuck(&view).is_empty(), "{view:?}");
        // A pod that stays Terminating (its node is gone) is stuck once the timeout has passed
        // since its deletion began.
        let view = cluster_view(&zk, &names, &settings, &observation, false, at("2026-11-29T10:21:00Z"));
        assert_eq!(crate::planner::stuck(&view).len(), 1);
    }

    #[test]
    fn a_ready_pod_that_did_not_answer_srvr_starts_no_down_clock() {
        // A slow machine: the operator's srvr timed out, the kubelet's readiness probe says it
        // serves. Counted from its creation, it was declared stuck at once as "zk-2 (not serving)".
        let m = observe_pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-11-29T10:00:30Z"}],
            "containerStatuses": [{"name": "zookeeper", "ready": true, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"running": {"startedAt": "2026-11-29T10:00:01Z"}}}],
        }));
        assert_eq!(m.state, MemberState::Running);
        assert_eq!(m.down_since, None);
    }
}
