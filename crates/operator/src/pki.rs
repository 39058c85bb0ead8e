//! Certificates: a certificate authority per cluster, member certificates for the members'
//! stable DNS names, and client certificates (the operator's own, applications'). Pure: keys
//! are generated here, nothing is read or written.
//!
//! Keys are ECDSA P-256 in PKCS#8 PEM, which ZooKeeper's PEM key stores read natively.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The subject common name of the operator's client certificate: ZooKeeper's super user.
pub const OPERATOR_CN: &str = "zookeeper-operator";

/// A certificate and its private key, in PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    /// Seconds since the Unix epoch after which the certificate is no longer valid.
    pub not_after: u64,
}

fn error(what: &str, e: rcgen::Error) -> String {
    format!("{what}: {e}")
}

fn time(at: SystemTime) -> time::OffsetDateTime {
    let seconds = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    time::OffsetDateTime::from_unix_timestamp(seconds).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    // A random positive serial: the high bit clear.
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// Validity from a minute ago (clock skew between nodes) for `lifetime`.
fn validity(params: &mut CertificateParams, now: SystemTime, lifetime: Duration) -> u64 {
    let start = now - Duration::from_secs(60);
    let end = now + lifetime;
    params.not_before = time(start);
    params.not_after = time(end);
    seconds(end)
}

/// A new certificate authority for one cluster.
pub fn new_authority(cluster: &str, now: SystemTime, lifetime: Duration) -> Result<Issued, String> {
    let key = KeyPair::generate().map_err(|e| error("generating the CA key", e))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, format!("{cluster} ZooKeeper CA {}", seconds(now)));
    name.push(DnType::OrganizationName, "zookeeper-operator");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(serial());
    let not_after = validity(&mut params, now, lifetime);
    let cert = params.self_signed(&key).map_err(|e| error("signing the CA", e))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// A member: server and client of its peers, for these DNS names.
    Member { names: Vec<String> },
    /// A client, identified by its common name (ZooKeeper's x509 identity `CN=<name>`).
    Client { name: String },
}

/// A certificate signed by `authority`.
pub fn issue(authority: &Issued, leaf: &Leaf, now: SystemTime, lifetime: Duration) -> Result<Issued, String> {
    let ca_key = KeyPair::from_pem(&authority.key_pem).map_err(|e| error("reading the CA key", e))?;
    let issuer = Issuer::from_ca_cert_pem(&authority.cert_pem, ca_key).map_err(|e| error("reading the CA", e))?;
    let key = KeyPair::generate().map_err(|e| error("generating a key", e))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    match leaf {
        Leaf::Member { names } => {
            name.push(DnType::CommonName, names.first().cloned().unwrap_or_default());
            params.subject_alt_names = names
                .iter()
                .map(|n| match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => Ok(SanType::IpAddress(ip)),
                    Err(_) => n.clone().try_into().map(SanType::DnsName),
                })
                .collect::<Result<_, _>>()
                .map_err(|e| error("a member name", e))?;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        }
        Leaf::Client { name: client } => {
            name.push(DnType::CommonName, client.clone());
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
    }
    params.distinguished_name = name;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyAgreement];
    params.serial_number = Some(serial());
    params.use_authority_key_identifier_extension = true;
    let not_after = validity(&mut params, now, lifetime);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| error("signing a certificate", e))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// Time to renew: two thirds of the way from issue to expiry, as is usual for short-lived
/// certificates (there is a third of the lifetime left to roll the new one out).
pub fn renew_at(issued_at: u64, not_after: u64) -> u64 {
    issued_at + (not_after.saturating_sub(issued_at)) * 2 / 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_member_and_client_certificates_from_a_cluster_authority() {
        let now = SystemTime::now();
        let ca = new_authority("zk", now, Duration::from_secs(3600)).unwrap();
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(
            ca.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "PKCS#8, as ZooKeeper reads it"
        );
        let member = issue(
            &ca,
            &Leaf::Member {
                names: vec![
                    "*.zk-headless.ns.svc.cluster.local".into(),
                    "localhost".into(),
                    "127.0.0.1".into(),
                ],
            },
            now,
            Duration::from_secs(600),
        )
        .unwrap();
        assert!(member.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(member.not_after, seconds(now) + 600);
        let client = issue(
            &ca,
            &Leaf::Client {
                name: OPERATOR_CN.into(),
            },
            now,
            Duration::from_secs(600),
        )
        .unwrap();
        assert_ne!(client.cert_pem, member.cert_pem);
    }

    #[test]
    fn renews_two_thirds_of_the_way() {
        assert_eq!(renew_at(1000, 1300), 1200);
        assert_eq!(renew_at(1000, 900), 1000);
    }
}
