//! An S3-compatible object store for the local cluster, so that the backup tests run the same S3
//! client code a user points at AWS S3, MinIO or Ceph: `s3s-fs` keeps objects as files under a
//! directory, `s3s` checks every request's SigV4 signature against one access key, and this
//! binary serves it over TLS with the certificate it is given.

use clap::Parser;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
struct Options {
    #[arg(long, default_value = "0.0.0.0:9000")]
    listen: String,
    /// Where objects are kept: `<root>/<bucket>/<key>`.
    #[arg(long, default_value = "/data")]
    root: PathBuf,
    /// Buckets created at start if missing.
    #[arg(long)]
    bucket: Vec<String>,
    #[arg(long, env = "S3_ACCESS_KEY")]
    access_key: String,
    #[arg(long, env = "S3_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// PEM certificate chain and PKCS#8 key; plain HTTP is not offered.
    #[arg(long, default_value = "/tls/tls.crt")]
    cert: PathBuf,
    #[arg(long, default_value = "/tls/tls.key")]
    key: PathBuf,
}

fn tls_config(options: &Options) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&options.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: {e}", options.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&options.key).map_err(|e| format!("{}: {e}", options.key.display()))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key: {e}"))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let options = Options::parse();
    for bucket in &options.bucket {
        std::fs::create_dir_all(options.root.join(bucket)).map_err(|e| format!("creating bucket {bucket}: {e}"))?;
    }
    let fs = s3s_fs::FileSystem::new(&options.root).map_err(|e| format!("{}: {e:?}", options.root.display()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(
        options.access_key.clone(),
        options.secret_key.clone(),
    ));
    let service = builder.build();
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&options)?));
    let listener = TcpListener::bind(&options.listen)
        .await
        .map_err(|e| format!("{}: {e}", options.listen))?;
    eprintln!(
        "s3-store: serving {} over TLS on {}",
        options.root.display(),
        options.listen
    );
    // As PID 1 nothing stops it on SIGTERM but itself: without this, every stop of its pod took
    // the whole grace period (30 s of each backup e2e test).
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("listening for SIGTERM: {e}"))?;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = terminate.recv() => {
                eprintln!("s3-store: SIGTERM: stopping");
                return Ok(());
            }
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("s3-store: accept: {e}");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(socket).await {
                Ok(stream) => stream,
                Err(e) => {
                    eprintln!("s3-store: TLS handshake with {peer}: {e}");
                    return;
                }
            };
            if let Err(e) = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("s3-store: connection from {peer}: {e}");
            }
        });
    }
}
