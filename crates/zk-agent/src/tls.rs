//! TLS files and connections.
//!
//! Kubernetes updates a mounted Secret by swapping a symlink, which ZooKeeper's certificate
//! reload (it watches file names in a directory) does not see. zk-agent copies the Secret's
//! files into a directory of its own, each replaced by write-then-rename, which the reload does
//! see: once before ZooKeeper starts, then whenever the Secret changes (`zk-agent sync-tls`).
//!
//! `TlsClient` asks a member a four-letter word over mutual TLS: the operator's `srvr` and the
//! agent's check for a serving peer, when plaintext listens on 127.0.0.1 only.

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use vocabulary::tls::{CA_FILE, CERT_FILE, KEY_FILE, KEY_STORE, TRUST_STORE};

/// The files ZooKeeper reads, from the Secret's: the key store (key and certificate chain) and
/// the trust store (the CA bundle).
fn live_files(secret_dir: &Path) -> std::io::Result<[(String, &'static str); 2]> {
    let read = |name: &str| std::fs::read_to_string(secret_dir.join(name));
    let key = read(KEY_FILE)?;
    let cert = read(CERT_FILE)?;
    let ca = read(CA_FILE)?;
    Ok([(format!("{}\n{}", key.trim_end(), cert), KEY_STORE), (ca, TRUST_STORE)])
}

/// Brings `live_dir` up to date with the Secret in `secret_dir`; returns the files replaced.
pub fn sync(secret_dir: &Path, live_dir: &Path) -> std::io::Result<Vec<&'static str>> {
    std::fs::create_dir_all(live_dir)?;
    let mut replaced = Vec::new();
    for (contents, name) in live_files(secret_dir)? {
        let target = live_dir.join(name);
        if std::fs::read_to_string(&target).ok().as_deref() == Some(contents.as_str()) {
            continue;
        }
        let temporary = live_dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&temporary, &contents)?;
        std::fs::rename(&temporary, &target)?;
        replaced.push(name);
    }
    Ok(replaced)
}

/// The DER of the first certificate in a PEM text.
pub fn pem_to_der(cert_pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .next()?
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// A mutual-TLS client for four-letter words.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<rustls::ClientConfig>,
}

impl TlsClient {
    /// From PEM: the CA bundle to trust, and the client's certificate and PKCS#8 key.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<TlsClient, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("reading the CA bundle: {e}"))?;
            roots.add(cert).map_err(|e| format!("trusting a CA: {e}"))?;
        }
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("reading the certificate: {e}"))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("reading the key: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate: {e}"))?;
        Ok(TlsClient {
            config: Arc::new(config),
        })
    }

    /// From the files zk-agent keeps for ZooKeeper (the member's own identity).
    pub fn from_live_dir(live_dir: &Path) -> Result<TlsClient, String> {
        let read =
            |name: &str| std::fs::read_to_string(live_dir.join(name)).map_err(|e| format!("reading {name}: {e}"));
        let key_store = read(KEY_STORE)?;
        TlsClient::from_pem(&read(TRUST_STORE)?, &key_store, &key_store)
    }

    fn open(
        &self,
        address: &str,
        server_name: &str,
        timeout: Duration,
    ) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let target: SocketAddr = address
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| invalid(format!("{address} does not resolve")))?;
        let name =
            rustls::pki_types::ServerName::try_from(server_name.to_string()).map_err(|e| invalid(e.to_string()))?;
        let connection =
            rustls::ClientConnection::new(self.config.clone(), name).map_err(|e| invalid(e.to_string()))?;
        let socket = TcpStream::connect_timeout(&target, timeout)?;
        socket.set_read_timeout(Some(timeout))?;
        socket.set_write_timeout(Some(timeout))?;
        Ok(rustls::StreamOwned::new(connection, socket))
    }

    /// The certificate `address` serves (DER), once the handshake, client certificate included,
    /// succeeds: how the operator sees that a member reloaded a renewed certificate, or trusts
    /// a new authority.
    pub fn served_certificate(&self, address: &str, server_name: &str, timeout: Duration) -> std::io::Result<Vec<u8>> {
        let deadline = std::time::Instant::now() + timeout;
        let mut stream = self.open(address, server_name, timeout)?;
        // `ruok` completes the handshake both ways: a server that refuses our certificate
        // closes the connection instead of answering.
        stream.write_all(b"ruok")?;
        stream.flush()?;
        let socket = stream.sock.try_clone()?;
        let reply =
            crate::probe::read_reply(&mut stream, deadline, |t| socket.set_read_timeout(Some(t))).unwrap_or_default();
        if reply != b"imok" {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{address} did not answer over TLS (it refused the client certificate?)"),
            ));
        }
        stream
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.as_ref().to_vec())
            .ok_or_else(|| std::io::Error::other("no server certificate"))
    }

    /// Sends a four-letter word over TLS to `address`, verifying the server as `server_name`.
    pub fn four_letter_word(
        &self,
        address: &str,
        server_name: &str,
        word: &str,
        timeout: Duration,
    ) -> std::io::Result<String> {
        let deadline = std::time::Instant::now() + timeout;
        let mut stream = self.open(address, server_name, timeout)?;
        stream.write_all(word.as_bytes())?;
        stream.flush()?;
        let socket = stream.sock.try_clone()?;
        let reply = crate::probe::read_reply(&mut stream, deadline, |t| socket.set_read_timeout(Some(t)))?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    }

    /// `srvr` over TLS, as `probe::srvr` asks it in plaintext.
    pub fn srvr(&self, address: &str, server_name: &str, timeout: Duration) -> Result<crate::probe::Serving, String> {
        let reply = self
            .four_letter_word(address, server_name, "srvr", timeout)
            .map_err(|e| format!("srvr over TLS to {address}: {e}"))?;
        match crate::probe::parse_srvr(&reply)? {
            crate::probe::SrvrState::Serving(serving) => Ok(serving),
            crate::probe::SrvrState::NotServing => Err(format!("{address} is running but not serving")),
        }
    }

    /// `srvr` over TLS: the member's serving role, as `probe::ready` answers in plaintext.
    pub fn ready(
        &self,
        address: &str,
        server_name: &str,
        timeout: Duration,
    ) -> Result<crate::probe::ServingMode, String> {
        self.srvr(address, server_name, timeout).map(|s| s.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_replaces_only_what_changed_and_by_rename() {
        let root = std::env::temp_dir().join(format!("zk-agent-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let secret = root.join("secret");
        let live = root.join("live");
        std::fs::create_dir_all(&secret).unwrap();
        std::fs::write(secret.join(KEY_FILE), "KEY\n").unwrap();
        std::fs::write(secret.join(CERT_FILE), "CERT\n").unwrap();
        std::fs::write(secret.join(CA_FILE), "CA\n").unwrap();
        assert_eq!(sync(&secret, &live).unwrap(), vec![KEY_STORE, TRUST_STORE]);
        assert_eq!(std::fs::read_to_string(live.join(KEY_STORE)).unwrap(), "KEY\nCERT\n");
        assert!(
            sync(&secret, &live).unwrap().is_empty(),
            "nothing changed, nothing replaced"
        );
        std::fs::write(secret.join(CA_FILE), "CA\nNEXT CA\n").unwrap();
        assert_eq!(sync(&secret, &live).unwrap(), vec![TRUST_STORE]);
        let leftovers: Vec<_> = std::fs::read_dir(&live)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "no temporary files left behind");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
