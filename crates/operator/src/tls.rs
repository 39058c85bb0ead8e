//! TLS material and the migration phase, decided from what was observed: pure, no API calls.
//!
//! - The authority (`<cluster>-ca`): made by the operator, or the user's own Secret. Rotated in
//!   three steps, each taken only once the members show the previous one took effect: trust the
//!   next authority beside the current one; sign with the next one (members and clients get new
//!   certificates); drop the old one.
//! - The member certificate (`<cluster>-tls`, one for all members, named for the members' stable
//!   DNS names) and client certificates (`<cluster>-client-<name>`): issued, and renewed two
//!   thirds of the way through their lifetime. zk-agent hands new files to ZooKeeper, which
//!   reloads them: no member restarts.
//! - The phase of the members' template: plaintext, unified, quorum-tls, tls; one step at a time
//!   toward the spec, each step a rolling restart, the next taken once the roll is done.

use crate::pki::{self, Issued, Leaf};
use crate::resources::Names;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vocabulary::tls::{Phase, CA_FILE, CERT_FILE, KEY_FILE};
use zkop_api::ZooKeeperCluster;

pub const ISSUED_AT: &str = "zookeeper.zkop.io/issued-at";
pub const NOT_AFTER: &str = "zookeeper.zkop.io/not-after";
/// The authority a certificate was signed by (its fingerprint).
pub const ISSUER: &str = "zookeeper.zkop.io/issuer";
/// On the authority's Secret: the rotation step in progress, and since when.
pub const ROTATION: &str = "zookeeper.zkop.io/ca-rotation";
pub const ROTATION_SINCE: &str = "zookeeper.zkop.io/ca-rotation-since";
/// The user's last renewal or rotation request the Secret was made for.
pub const REQUEST: &str = "zookeeper.zkop.io/request";
const NEXT_CERT: &str = "next.crt";
const NEXT_KEY: &str = "next.key";
/// The authorities members and clients trust, a PEM bundle.
const TRUSTED: &str = "trusted.crt";
/// How long the operator's own client certificate lives: it is minted again as needed.
const OPERATOR_CERT_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    None,
    /// Members trust the current and the next authority; the current one still signs.
    TrustingNext,
    /// The new authority signs; members still trust the previous one, until they serve new
    /// certificates and clients had time to take theirs.
    DroppingPrevious,
}

impl Rotation {
    fn as_str(self) -> &'static str {
        match self {
            Rotation::None => "",
            Rotation::TrustingNext => "trusting-next",
            Rotation::DroppingPrevious => "dropping-previous",
        }
    }
    fn parse(text: &str) -> Rotation {
        match text {
            "trusting-next" => Rotation::TrustingNext,
            "dropping-previous" => Rotation::DroppingPrevious,
            _ => Rotation::None,
        }
    }
}

/// The authority as its Secret records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// Signs new certificates. Its key is absent for a user's authority whose Secret went away.
    pub signing: Issued,
    pub issued_at: u64,
    /// The next authority, during a rotation's first step.
    pub next: Option<Issued>,
    /// Every authority members and clients trust (PEM certificates).
    pub trusted: Vec<String>,
    pub rotation: Rotation,
    pub rotation_since: u64,
    /// The rotation request (annotation value) last acted on.
    pub request: String,
}

/// A short, stable name for an authority: the first bytes of its certificate's SHA-256.
pub fn fingerprint(cert_pem: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(cert_pem.trim().as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let data = secret.data.as_ref()?.get(key)?;
    Some(String::from_utf8_lossy(&data.0).into_owned())
}

fn annotation(secret: &Secret, key: &str) -> Option<String> {
    secret.metadata.annotations.as_ref()?.get(key).cloned()
}

fn number(secret: &Secret, key: &str) -> u64 {
    annotation(secret, key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The PEM certificates in a bundle.
fn split_bundle(bundle: &str) -> Vec<String> {
    let mut certs = Vec::new();
    let mut current = String::new();
    for line in bundle.lines() {
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END") {
            certs.push(std::mem::take(&mut current));
        }
    }
    certs
}

pub fn now_seconds(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

pub fn rfc3339(seconds: u64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Reads the authority's Secret.
pub fn read_authority(secret: &Secret) -> Option<Authority> {
    let signing = Issued {
        cert_pem: text(secret, CA_FILE)?,
        key_pem: text(secret, "ca.key").unwrap_or_default(),
        not_after: number(secret, NOT_AFTER),
    };
    let next = match (text(secret, NEXT_CERT), text(secret, NEXT_KEY)) {
        (Some(cert_pem), key) => Some(Issued {
            cert_pem,
            key_pem: key.unwrap_or_default(),
            not_after: 0,
        }),
        _ => None,
    };
    let trusted = text(secret, TRUSTED).map(|b| split_bundle(&b)).unwrap_or_default();
    Some(Authority {
        trusted: if trusted.is_empty() {
            vec![signing.cert_pem.clone()]
        } else {
            trusted
        },
        signing,
        issued_at: number(secret, ISSUED_AT),
        next,
        rotation: Rotation::parse(&annotation(secret, ROTATION).unwrap_or_default()),
        rotation_since: number(secret, ROTATION_SINCE),
        request: annotation(secret, REQUEST).unwrap_or_default(),
    })
}

/// A user's authority from their Secret (`tls.crt`, `tls.key`).
pub fn read_user_authority(secret: &Secret) -> Result<Issued, String> {
    let cert_pem = text(secret, CERT_FILE).ok_or("has no tls.crt")?;
    let key_pem = text(secret, KEY_FILE).ok_or("has no tls.key")?;
    Ok(Issued {
        cert_pem,
        key_pem,
        not_after: 0,
    })
}

/// What the members showed about TLS, each over a TLS connection from the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MembersShow {
    /// Every member accepted a client certificate signed by the next authority.
    pub trust_next: bool,
    /// Every member serves the member certificate the Secret holds now.
    pub serve_current_certificate: bool,
}

/// A certificate kept in a Secret, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub cert_pem: String,
    pub key_pem: String,
    pub issued_at: u64,
    pub not_after: u64,
    pub issuer: String,
    pub bundle: String,
    /// The renewal request (annotation value) it was issued for.
    pub request: String,
}

pub fn read_kept(secret: &Secret) -> Option<Kept> {
    Some(Kept {
        cert_pem: text(secret, CERT_FILE)?,
        key_pem: text(secret, KEY_FILE).unwrap_or_default(),
        issued_at: number(secret, ISSUED_AT),
        not_after: number(secret, NOT_AFTER),
        issuer: annotation(secret, ISSUER).unwrap_or_default(),
        bundle: text(secret, CA_FILE).unwrap_or_default(),
        request: annotation(secret, REQUEST).unwrap_or_default(),
    })
}

/// Everything the TLS decision needs.
pub struct TlsInputs<'a> {
    pub zk: &'a ZooKeeperCluster,
    pub names: &'a Names,
    pub cluster_domain: &'a str,
    pub authority: Option<Authority>,
    /// The user's authority, when `spec.tls.caSecretName` names one (or why it cannot be read).
    pub user_authority: Option<Result<Issued, String>>,
    pub member: Option<Kept>,
    pub clients: BTreeMap<String, Kept>,
    pub members_show: MembersShow,
    pub now: SystemTime,
}

/// A Secret's data and annotations.
pub type SecretContent = (BTreeMap<String, ByteString>, BTreeMap<String, String>);

/// What the operator should keep in the Secrets, and what happened.
#[derive(Debug, Clone)]
pub struct TlsPlan {
    /// The authority's Secret data and annotations.
    pub authority: Authority,
    /// (data, annotations) of the member Secret, when it must be written.
    pub member: Option<SecretContent>,
    /// Client Secrets to write, by client name.
    pub clients: BTreeMap<String, SecretContent>,
    pub events: Vec<(&'static str, String)>,
    /// Why TLS cannot proceed (a user's authority that cannot be read), for status.
    pub problem: Option<String>,
    /// The next moment (seconds since the epoch) a certificate or the authority is due.
    pub next_due: Option<u64>,
}

/// The names a member certificate covers: every member of the headless Service, the client
/// Service, and the pod itself as seen from inside (localhost).
/// The members' x509 identity in ZooKeeper: the subject of the member certificate.
pub fn member_identity(names: &Names, cluster_domain: &str) -> String {
    format!("CN={}", member_names(names, cluster_domain)[0])
}

pub fn member_names(names: &Names, cluster_domain: &str) -> Vec<String> {
    let ns = &names.namespace;
    let headless = names.headless_service();
    let client = names.client_service();
    vec![
        format!("*.{headless}.{ns}.svc.{cluster_domain}"),
        format!("*.{headless}.{ns}.svc"),
        format!("{client}.{ns}.svc.{cluster_domain}"),
        format!("{client}.{ns}.svc"),
        format!("{client}.{ns}"),
        client.clone(),
        "localhost".into(),
        "127.0.0.1".into(),
    ]
}

fn secret_data(issued: &Issued, bundle: &str) -> BTreeMap<String, ByteString> {
    BTreeMap::from([
        (CERT_FILE.to_string(), ByteString(issued.cert_pem.clone().into_bytes())),
        (KEY_FILE.to_string(), ByteString(issued.key_pem.clone().into_bytes())),
        (CA_FILE.to_string(), ByteString(bundle.as_bytes().to_vec())),
    ])
}

fn kept_annotations(issued: &Issued, issued_at: u64, issuer: &str, request: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ISSUED_AT.to_string(), issued_at.to_string()),
        (NOT_AFTER.to_string(), issued.not_after.to_string()),
        (ISSUER.to_string(), issuer.to_string()),
        (REQUEST.to_string(), request.to_string()),
    ])
}

/// Whether a kept certificate must be issued again: missing, signed by another authority than
/// the one signing now, trusting another bundle, due for renewal, or renewal was requested.
fn stale(kept: Option<&Kept>, signer: &str, bundle: &str, request: &str, now: u64) -> bool {
    match kept {
        None => true,
        Some(k) => {
            k.issuer != signer
                || k.bundle != bundle
                || k.request != request
                || now >= pki::renew_at(k.issued_at, k.not_after)
        }
    }
}

pub fn plan(inputs: TlsInputs<'_>) -> Result<TlsPlan, String> {
    let spec = &inputs.zk.spec.tls;
    let now = now_seconds(inputs.now);
    let cert_lifetime = Duration::from_secs(u64::from(spec.certificate_lifetime_seconds));
    let ca_lifetime = Duration::from_secs(u64::from(spec.ca_lifetime_seconds));
    let cluster = &inputs.names.cluster;
    let annotations = inputs.zk.metadata.annotations.clone().unwrap_or_default();
    let renew_request = annotations
        .get(zkop_api::RENEW_CERTIFICATES_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let rotate_request = annotations
        .get(zkop_api::ROTATE_CA_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let mut events = Vec::new();

    // The authority, and the next step of a rotation once the members show the last one took.
    let mut authority = match (inputs.authority, &inputs.user_authority) {
        (Some(authority), _) => authority,
        (None, Some(Ok(user))) => Authority {
            signing: user.clone(),
            issued_at: now,
            next: None,
            trusted: vec![user.cert_pem.clone()],
            rotation: Rotation::None,
            rotation_since: now,
            request: rotate_request.clone(),
        },
        (None, Some(Err(why))) => return Err(format!("spec.tls.caSecretName: the Secret {why}")),
        // The authority's Secret is gone but the members run certificates from it: a new
        // authority is trusted beside the one they use, and signs only once every member
        // accepts it, as in a rotation. Reissuing at once, trusting only the new one, would
        // split the members while each reloads its files at its own time.
        (None, None)
            if inputs
                .member
                .as_ref()
                .is_some_and(|m| split_bundle(&m.bundle).iter().any(|c| fingerprint(c) == m.issuer)) =>
        {
            let member = inputs.member.as_ref().expect("checked above");
            let trusted = split_bundle(&member.bundle);
            let in_use = trusted
                .iter()
                .find(|c| fingerprint(c) == member.issuer)
                .cloned()
                .unwrap_or_default();
            let next = pki::new_authority(cluster, inputs.now, ca_lifetime)?;
            events.push((
                "CertificateAuthorityReplaced",
                format!(
                    "the Secret {cluster}-ca is gone: a new certificate authority is trusted beside the one the members use, and signs once every member accepts it"
                ),
            ));
            Authority {
                trusted: trusted.into_iter().chain([next.cert_pem.clone()]).collect(),
                signing: Issued {
                    cert_pem: in_use,
                    key_pem: String::new(),
                    not_after: 0,
                },
                next: Some(next),
                issued_at: now,
                rotation: Rotation::TrustingNext,
                rotation_since: now,
                request: rotate_request.clone(),
            }
        }
        (None, None) => {
            let ca = pki::new_authority(cluster, inputs.now, ca_lifetime)?;
            events.push((
                "CertificateAuthorityCreated",
                format!(
                    "a certificate authority for {cluster}, valid until {}",
                    rfc3339(ca.not_after)
                ),
            ));
            Authority {
                trusted: vec![ca.cert_pem.clone()],
                signing: ca,
                issued_at: now,
                next: None,
                rotation: Rotation::None,
                rotation_since: now,
                request: rotate_request.clone(),
            }
        }
    };
    // A user's authority signs with the key from the user's own Secret, read at each pass; it
    // is never copied into the cluster's authority Secret (see the end).
    let user = match &inputs.user_authority {
        Some(Ok(user)) => Some(user.clone()),
        _ => None,
    };
    let users = |issued: &Issued| {
        user.as_ref()
            .is_some_and(|u| fingerprint(&u.cert_pem) == fingerprint(&issued.cert_pem))
    };
    let with_users_key = |issued: &mut Issued| {
        if issued.key_pem.is_empty() && users(issued) {
            issued.key_pem = user.as_ref().map(|u| u.key_pem.clone()).unwrap_or_default();
        }
    };
    with_users_key(&mut authority.signing);
    if let Some(next) = authority.next.as_mut() {
        with_users_key(next);
    }
    let mut problem = None;
    match authority.rotation {
        Rotation::None => {
            // The user's authority changed, or ours is two thirds through its life: trust the
            // next one beside the current one.
            let next = match &inputs.user_authority {
                Some(Ok(user)) if fingerprint(&user.cert_pem) != fingerprint(&authority.signing.cert_pem) => {
                    Some(user.clone())
                }
                Some(Err(why)) => {
                    problem = Some(format!(
                        "spec.tls.caSecretName: the Secret {why}; certificates are not renewed"
                    ));
                    None
                }
                None if (authority.signing.not_after > 0
                    && now >= pki::renew_at(authority.issued_at, authority.signing.not_after))
                    || authority.request != rotate_request =>
                {
                    authority.request = rotate_request.clone();
                    Some(pki::new_authority(cluster, inputs.now, ca_lifetime)?)
                }
                _ => None,
            };
            if let Some(next) = next {
                events.push((
                    "CertificateAuthorityRotating",
                    "members now trust the next certificate authority beside the current one".into(),
                ));
                authority.trusted = vec![authority.signing.cert_pem.clone(), next.cert_pem.clone()];
                authority.next = Some(next);
                authority.rotation = Rotation::TrustingNext;
                authority.rotation_since = now;
            }
        }
        Rotation::TrustingNext if inputs.members_show.trust_next => {
            if let Some(next) = authority.next.take() {
                events.push((
                    "CertificateAuthoritySwitched",
                    "the next certificate authority signs; members and clients get new certificates".into(),
                ));
                let previous = std::mem::replace(&mut authority.signing, next);
                authority.trusted = vec![previous.cert_pem, authority.signing.cert_pem.clone()];
                authority.issued_at = now;
                if authority.signing.not_after == 0 {
                    authority.signing.not_after = now + ca_lifetime.as_secs();
                }
                authority.rotation = Rotation::DroppingPrevious;
                authority.rotation_since = now;
            }
        }
        Rotation::DroppingPrevious
            if inputs.members_show.serve_current_certificate
                && inputs
                    .member
                    .as_ref()
                    .is_some_and(|m| m.issuer == fingerprint(&authority.signing.cert_pem))
                // Clients had their new certificates for a tenth of their lifetime.
                && now >= authority.rotation_since + cert_lifetime.as_secs() / 10 =>
        {
            events.push((
                "CertificateAuthorityRotated",
                "the previous certificate authority is no longer trusted".into(),
            ));
            authority.trusted = vec![authority.signing.cert_pem.clone()];
            authority.rotation = Rotation::None;
            authority.rotation_since = now;
        }
        _ => {}
    }

    let signer = fingerprint(&authority.signing.cert_pem);
    let bundle = authority.trusted.concat();
    let can_sign = !authority.signing.key_pem.is_empty();
    // Without the signing key (an authority replaced after its Secret was lost), a kept
    // certificate still gets the new trust bundle: the same certificate and key, re-bundled.
    let rebundled = |kept: Option<&Kept>| -> Option<SecretContent> {
        let kept = kept.filter(|k| !can_sign && k.bundle != bundle && !k.key_pem.is_empty())?;
        let issued = Issued {
            cert_pem: kept.cert_pem.clone(),
            key_pem: kept.key_pem.clone(),
            not_after: kept.not_after,
        };
        Some((
            secret_data(&issued, &bundle),
            kept_annotations(&issued, kept.issued_at, &kept.issuer, &kept.request),
        ))
    };
    let member = if can_sign && stale(inputs.member.as_ref(), &signer, &bundle, &renew_request, now) {
        let issued = pki::issue(
            &authority.signing,
            &Leaf::Member {
                names: member_names(inputs.names, inputs.cluster_domain),
            },
            inputs.now,
            cert_lifetime,
        )?;
        let renewal = inputs.member.is_some();
        events.push((
            if renewal {
                "CertificateRenewed"
            } else {
                "CertificateIssued"
            },
            format!("member certificate valid until {}", rfc3339(issued.not_after)),
        ));
        Some((
            secret_data(&issued, &bundle),
            kept_annotations(&issued, now, &signer, &renew_request),
        ))
    } else {
        rebundled(inputs.member.as_ref())
    };
    let mut clients = BTreeMap::new();
    for name in &spec.clients {
        if let Some(content) = rebundled(inputs.clients.get(name)) {
            clients.insert(name.clone(), content);
        } else if can_sign && stale(inputs.clients.get(name), &signer, &bundle, &renew_request, now) {
            let issued = pki::issue(
                &authority.signing,
                &Leaf::Client { name: name.clone() },
                inputs.now,
                cert_lifetime,
            )?;
            clients.insert(
                name.clone(),
                (
                    secret_data(&issued, &bundle),
                    kept_annotations(&issued, now, &signer, &renew_request),
                ),
            );
        }
    }
    // When to look again: the next certificate or authority due for renewal.
    let member_due = member
        .as_ref()
        .filter(|_| can_sign)
        .map(|_| now + cert_lifetime.as_secs() * 2 / 3)
        .or_else(|| inputs.member.as_ref().map(|k| pki::renew_at(k.issued_at, k.not_after)));
    let authority_due =
        (authority.signing.not_after > 0).then(|| pki::renew_at(authority.issued_at, authority.signing.not_after));
    let client_due = inputs
        .clients
        .values()
        .map(|k| pki::renew_at(k.issued_at, k.not_after))
        .min();
    let next_due = [member_due, authority_due, client_due].into_iter().flatten().min();
    if users(&authority.signing) {
        authority.signing.key_pem.clear();
    }
    if let Some(next) = authority.next.as_mut().filter(|n| users(n)) {
        next.key_pem.clear();
    }
    Ok(TlsPlan {
        authority,
        member,
        clients,
        events,
        problem,
        next_due,
    })
}

/// The authority's Secret data and annotations.
pub fn authority_secret(authority: &Authority) -> SecretContent {
    let mut data = BTreeMap::from([
        (
            CA_FILE.to_string(),
            ByteString(authority.signing.cert_pem.clone().into_bytes()),
        ),
        (TRUSTED.to_string(), ByteString(authority.trusted.concat().into_bytes())),
    ]);
    if !authority.signing.key_pem.is_empty() {
        data.insert(
            "ca.key".into(),
            ByteString(authority.signing.key_pem.clone().into_bytes()),
        );
    }
    if let Some(next) = &authority.next {
        data.insert(NEXT_CERT.into(), ByteString(next.cert_pem.clone().into_bytes()));
        if !next.key_pem.is_empty() {
            data.insert(NEXT_KEY.into(), ByteString(next.key_pem.clone().into_bytes()));
        }
    }
    let annotations = BTreeMap::from([
        (ISSUED_AT.to_string(), authority.issued_at.to_string()),
        (NOT_AFTER.to_string(), authority.signing.not_after.to_string()),
        (ROTATION.to_string(), authority.rotation.as_str().to_string()),
        (ROTATION_SINCE.to_string(), authority.rotation_since.to_string()),
        (REQUEST.to_string(), authority.request.clone()),
    ]);
    (data, annotations)
}

/// The operator's own client certificate (the super user), signed by `signing`.
pub fn operator_identity(signing: &Issued, now: SystemTime) -> Result<Issued, String> {
    pki::issue(
        signing,
        &Leaf::Client {
            name: vocabulary::tls::OPERATOR_CN.into(),
        },
        now,
        OPERATOR_CERT_LIFETIME,
    )
}

/// The operator's client certificate from `signing`, minted once and reused while it has more
/// than half its lifetime left: a reconcile used to mint one (a key pair and a signature) every
/// time. Kept per authority, so a rotated authority gets a certificate of its own at once.
pub fn cached_operator_identity(signing: &Issued, now: SystemTime) -> Result<Issued, String> {
    static CACHE: std::sync::Mutex<BTreeMap<String, Issued>> = std::sync::Mutex::new(BTreeMap::new());
    let seconds = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let fresh = |issued: &Issued| issued.not_after > seconds + OPERATOR_CERT_LIFETIME.as_secs() / 2;
    let authority = fingerprint(&signing.cert_pem);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(issued) = cache.get(&authority).filter(|i| fresh(i)) {
        return Ok(issued.clone());
    }
    let issued = operator_identity(signing, now)?;
    cache.retain(|_, i| fresh(i));
    cache.insert(authority, issued.clone());
    Ok(issued)
}

/// The phase the members' template should be at: the spec's target for a new ensemble, else
/// one step from where the members are toward it, taken only once the last roll is done.
pub fn phase(enabled: bool, current: Option<Phase>, new_ensemble: bool, roll_done: bool) -> Phase {
    let target = if enabled { Phase::Tls } else { Phase::Plaintext };
    match current {
        None if new_ensemble => target,
        // A cluster made before TLS existed: its members run plaintext.
        None => Phase::Plaintext,
        Some(current) if roll_done => current.toward(target),
        Some(current) => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_operator_certificate_is_reused_per_authority_until_half_its_life() {
        let now = SystemTime::now();
        let first = pki::new_authority("first test CA", now, Duration::from_secs(86_400)).unwrap();
        let second = pki::new_authority("second test CA", now, Duration::from_secs(86_400)).unwrap();
        let a = cached_operator_identity(&first, now).unwrap();
        assert_eq!(
            cached_operator_identity(&first, now + Duration::from_secs(60)).unwrap(),
            a
        );
        let b = cached_operator_identity(&second, now).unwrap();
        assert_ne!(b.cert_pem, a.cert_pem, "another authority, another certificate");
        let later = now + OPERATOR_CERT_LIFETIME / 2 + Duration::from_secs(60);
        assert_ne!(
            cached_operator_identity(&first, later).unwrap().cert_pem,
            a.cert_pem,
            "renewed past half its lifetime"
        );
    }

    fn cluster(spec: serde_json::Value) -> (ZooKeeperCluster, Names) {
        let mut zk = ZooKeeperCluster::new("zk", serde_json::from_value(spec).unwrap());
        zk.metadata.namespace = Some("ns".into());
        let names = Names::of(&zk);
        (zk, names)
    }

    fn secret(data: BTreeMap<String, ByteString>, annotations: BTreeMap<String, String>) -> Secret {
        Secret {
            data: Some(data),
            metadata: kube::api::ObjectMeta {
                annotations: Some(annotations),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    struct World {
        authority: Option<Authority>,
        member: Option<Kept>,
        clients: BTreeMap<String, Kept>,
    }

    impl World {
        fn step(&mut self, zk: &ZooKeeperCluster, names: &Names, at: u64, show: MembersShow) -> Vec<&'static str> {
            let plan = plan(TlsInputs {
                zk,
                names,
                cluster_domain: "cluster.local",
                authority: self.authority.clone(),
                user_authority: None,
                member: self.member.clone(),
                clients: self.clients.clone(),
                members_show: show,
                now: UNIX_EPOCH + Duration::from_secs(at),
            })
            .unwrap();
            let (data, annotations) = authority_secret(&plan.authority);
            self.authority = read_authority(&secret(data, annotations));
            if let Some((data, annotations)) = plan.member {
                self.member = read_kept(&secret(data, annotations));
            }
            for (name, (data, annotations)) in plan.clients {
                self.clients
                    .insert(name, read_kept(&secret(data, annotations)).unwrap());
            }
            plan.events.iter().map(|e| e.0).collect()
        }
    }

    #[test]
    fn issues_renews_and_rotates_the_authority_only_as_members_show_each_step() {
        let (zk, names) =
            cluster(json!({"tls": {"certificateLifetimeSeconds": 300, "caLifetimeSeconds": 900, "clients": ["app"]}}));
        let mut world = World {
            authority: None,
            member: None,
            clients: BTreeMap::new(),
        };
        let start = 1_800_000_000;
        let all = MembersShow {
            trust_next: true,
            serve_current_certificate: true,
        };
        assert_eq!(
            world.step(&zk, &names, start, all),
            vec!["CertificateAuthorityCreated", "CertificateIssued"]
        );
        assert_eq!(world.clients.len(), 1);
        assert!(world.step(&zk, &names, start + 60, all).is_empty(), "nothing due yet");
        // Two thirds of 300 s: renewed, by the same authority.
        let first = world.member.clone().unwrap();
        assert_eq!(world.step(&zk, &names, start + 200, all), vec!["CertificateRenewed"]);
        assert_eq!(world.member.as_ref().unwrap().issuer, first.issuer);
        assert_ne!(world.member.as_ref().unwrap().cert_pem, first.cert_pem);

        // Two thirds of 900 s: the next authority is trusted beside the current one...
        let events = world.step(&zk, &names, start + 600, MembersShow::default());
        assert_eq!(events[0], "CertificateAuthorityRotating");
        let authority = world.authority.clone().unwrap();
        assert_eq!(authority.trusted.len(), 2);
        assert_eq!(
            world.member.as_ref().unwrap().bundle,
            authority.trusted.concat(),
            "members get the bundle"
        );
        // ...and signs only once every member trusts it.
        assert!(!world
            .step(&zk, &names, start + 610, MembersShow::default())
            .contains(&"CertificateAuthoritySwitched"));
        let trusting = MembersShow {
            trust_next: true,
            serve_current_certificate: false,
        };
        let events = world.step(&zk, &names, start + 620, trusting);
        assert!(
            events.contains(&"CertificateAuthoritySwitched") && events.contains(&"CertificateRenewed"),
            "{events:?}"
        );
        let switched = world.authority.clone().unwrap();
        assert_eq!(
            world.member.as_ref().unwrap().issuer,
            fingerprint(&switched.signing.cert_pem)
        );
        assert_eq!(
            world.clients["app"].issuer,
            fingerprint(&switched.signing.cert_pem),
            "clients too"
        );
        assert_eq!(switched.trusted.len(), 2, "the previous authority is still trusted");
        // The previous one is dropped once members serve the new certificate, after a grace.
        assert!(world.step(&zk, &names, start + 625, trusting).is_empty());
        assert!(
            world.step(&zk, &names, start + 626, all).is_empty(),
            "a tenth of a lifetime of grace"
        );
        assert_eq!(
            world.step(&zk, &names, start + 660, all)[0],
            "CertificateAuthorityRotated"
        );
        assert_eq!(world.authority.as_ref().unwrap().trusted.len(), 1);
    }

    #[test]
    fn a_users_authority_signs_and_a_new_one_is_rotated_to() {
        let (zk, names) = cluster(json!({"tls": {"caSecretName": "my-ca"}}));
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let first = pki::new_authority("mine", now, Duration::from_secs(86400)).unwrap();
        let run = |authority: Option<Authority>, member: Option<Kept>, user: &Issued, show: MembersShow| {
            plan(TlsInputs {
                zk: &zk,
                names: &names,
                cluster_domain: "cluster.local",
                authority,
                user_authority: Some(Ok(user.clone())),
                member,
                clients: BTreeMap::new(),
                members_show: show,
                now,
            })
            .unwrap()
        };
        let planned = run(None, None, &first, MembersShow::default());
        assert!(
            !planned.events.iter().any(|e| e.0 == "CertificateAuthorityCreated"),
            "the user's, not ours"
        );
        let (data, annotations) = planned.member.clone().unwrap();
        let member = read_kept(&secret(data, annotations)).unwrap();
        assert_eq!(member.issuer, fingerprint(&first.cert_pem));
        let (data, annotations) = authority_secret(&planned.authority);
        assert!(
            !data.contains_key("ca.key") && !data.contains_key(NEXT_KEY),
            "the user's key stays in the user's Secret: {:?}",
            data.keys()
        );
        let authority = read_authority(&secret(data, annotations));
        // The user puts a new authority in their Secret: trusted beside, then it signs.
        let second = pki::new_authority("mine-2", now, Duration::from_secs(86400)).unwrap();
        let planned = run(authority, Some(member.clone()), &second, MembersShow::default());
        assert_eq!(planned.authority.rotation, Rotation::TrustingNext);
        assert_eq!(planned.authority.trusted.len(), 2);
        let show = MembersShow {
            trust_next: true,
            serve_current_certificate: false,
        };
        let (data, annotations) = authority_secret(&planned.authority);
        assert!(
            !data.contains_key("ca.key") && !data.contains_key(NEXT_KEY),
            "{:?}",
            data.keys()
        );
        let planned = run(read_authority(&secret(data, annotations)), Some(member), &second, show);
        assert_eq!(planned.authority.rotation, Rotation::DroppingPrevious);
        let (data, annotations) = planned.member.unwrap();
        assert_eq!(
            read_kept(&secret(data, annotations)).unwrap().issuer,
            fingerprint(&second.cert_pem)
        );
    }

    /// The authority's Secret deleted under a running ensemble: the new authority is trusted
    /// beside the old one first, and member certificates are reissued only once every member
    /// accepts it.
    #[test]
    fn a_deleted_authority_is_replaced_as_in_a_rotation() {
        let (zk, names) = cluster(json!({"tls": {"clients": ["app"]}}));
        let mut world = World {
            authority: None,
            member: None,
            clients: BTreeMap::new(),
        };
        let all = MembersShow {
            trust_next: true,
            serve_current_certificate: true,
        };
        world.step(&zk, &names, 1_800_000_000, all);
        let first_member = world.member.clone().unwrap();
        world.authority = None;
        let none = MembersShow::default();
        let events = world.step(&zk, &names, 1_800_000_010, none);
        assert_eq!(events, vec!["CertificateAuthorityReplaced"]);
        let authority = world.authority.clone().unwrap();
        assert_eq!(authority.rotation, Rotation::TrustingNext);
        assert_eq!(authority.trusted.len(), 2, "the old and the new one");
        let member = world.member.clone().unwrap();
        assert_eq!(
            member.issuer, first_member.issuer,
            "not reissued before members accept the new one"
        );
        assert_eq!(split_bundle(&member.bundle).len(), 2, "members trust both");
        world.step(&zk, &names, 1_800_000_020, all);
        let member = world.member.clone().unwrap();
        assert_ne!(
            member.issuer, first_member.issuer,
            "the new authority signs once accepted"
        );
    }

    #[test]
    fn renewal_and_rotation_can_be_requested() {
        let (mut zk, names) = cluster(json!({"tls": {"clients": ["app"]}}));
        let mut world = World {
            authority: None,
            member: None,
            clients: BTreeMap::new(),
        };
        let all = MembersShow {
            trust_next: true,
            serve_current_certificate: true,
        };
        world.step(&zk, &names, 1_800_000_000, all);
        zk.metadata.annotations = Some(BTreeMap::from([(
            zkop_api::RENEW_CERTIFICATES_ANNOTATION.to_string(),
            "now".to_string(),
        )]));
        assert_eq!(world.step(&zk, &names, 1_800_000_010, all), vec!["CertificateRenewed"]);
        assert!(
            world.step(&zk, &names, 1_800_000_020, all).is_empty(),
            "once per request"
        );
        zk.metadata.annotations = Some(BTreeMap::from([(
            zkop_api::ROTATE_CA_ANNOTATION.to_string(),
            "now".to_string(),
        )]));
        assert_eq!(
            world.step(&zk, &names, 1_800_000_030, all)[0],
            "CertificateAuthorityRotating"
        );
    }

    #[test]
    fn the_phase_moves_one_roll_at_a_time() {
        use Phase::*;
        assert_eq!(
            phase(true, None, true, false),
            Tls,
            "a new ensemble starts where the spec says"
        );
        assert_eq!(
            phase(true, None, false, true),
            Plaintext,
            "a cluster from before TLS runs plaintext"
        );
        assert_eq!(phase(true, Some(Plaintext), false, true), Unified);
        assert_eq!(
            phase(true, Some(Unified), false, false),
            Unified,
            "not before the roll is done"
        );
        assert_eq!(phase(true, Some(QuorumTls), false, true), Tls);
        assert_eq!(phase(false, Some(Tls), false, true), QuorumTls);
    }

    #[test]
    fn member_certificates_name_every_member_and_the_client_service() {
        let (_, names) = cluster(json!({}));
        let covered = member_names(&names, "cluster.local");
        assert!(covered.contains(&"*.zk-headless.ns.svc.cluster.local".to_string()));
        assert!(covered.contains(&"zk-client.ns.svc".to_string()));
        assert!(covered.contains(&"localhost".to_string()));
    }
}
