use std::sync::atomic::Ordering;
use std::sync::Arc;
use zkop_operator::controller::{self, Context};
use zkop_operator::leader::LeaderElection;
use zkop_operator::metrics::{self, Metrics};
use zkop_operator::resources::OperatorSettings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Two TLS providers are compiled in (kube's and zookeeper-client's defaults): pick one for
    // the process, or rustls cannot choose.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,kube=warn,zookeeper_client=warn".into());
    match std::env::var("ZKOP_LOG_FORMAT").as_deref() {
        Ok("json") => tracing_subscriber::fmt()
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .with_env_filter(filter)
            .init(),
        Ok("text") | Err(_) => tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init(),
        Ok(other) => {
            eprintln!("ZKOP_LOG_FORMAT={other:?}: expected text or json");
            return std::process::ExitCode::from(2);
        }
    }
    let settings = OperatorSettings {
        cluster_domain: std::env::var("ZKOP_CLUSTER_DOMAIN").unwrap_or_else(|_| "cluster.local".into()),
        operator_namespace: std::env::var("POD_NAMESPACE").ok(),
    };
    let metrics_address = std::env::var("ZKOP_METRICS_ADDRESS").unwrap_or_else(|_| "0.0.0.0:8080".into());
    let Ok(metrics_address) = metrics_address.parse::<std::net::SocketAddr>() else {
        tracing::error!(%metrics_address, "ZKOP_METRICS_ADDRESS is not an address:port such as 0.0.0.0:8080");
        return std::process::ExitCode::from(2);
    };
    let metrics = Arc::new(Metrics::default());
    let client = match counting_client(metrics.clone()).await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot reach the Kubernetes API (in a pod: service account; outside: KUBECONFIG)");
            return std::process::ExitCode::FAILURE;
        }
    };
    tokio::spawn({
        let metrics = metrics.clone();
        async move {
            if let Err(error) = metrics::serve(metrics_address, metrics).await {
                tracing::error!(%error, %metrics_address, "cannot serve metrics and health");
                std::process::exit(1);
            }
        }
    });
    let namespaces: Vec<String> = std::env::var("ZKOP_WATCH_NAMESPACES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect();
    tracing::info!(cluster_domain = %settings.cluster_domain, ?namespaces, "zookeeper-operator starting");
    let ctx = Arc::new(Context::new(client.clone(), settings, metrics.clone()));
    let contact = {
        let metrics = metrics.clone();
        move || metrics.api_reachable.store(true, Ordering::Relaxed)
    };

    // Several replicas elect one that acts; outside a pod (no POD_NAMESPACE) there is one.
    let (Ok(namespace), Ok(identity)) = (std::env::var("POD_NAMESPACE"), std::env::var("POD_NAME")) else {
        tracing::info!("POD_NAMESPACE or POD_NAME not set: running without leader election");
        metrics.leader.set(1);
        controller::run(ctx, &namespaces).await;
        return std::process::ExitCode::SUCCESS;
    };
    let lease_name = std::env::var("ZKOP_LEASE_NAME").unwrap_or_else(|_| "zookeeper-operator".into());
    let election = LeaderElection::new(kube::Api::namespaced(client, &namespace), &lease_name, &identity);
    tokio::select! {
        _ = election.acquire(&contact) => {}
        _ = terminated() => return std::process::ExitCode::SUCCESS,
    }
    metrics.leader.set(1);
    tokio::select! {
        // The controller returns on SIGTERM or SIGINT, after in-flight reconciles finish.
        _ = controller::run(ctx, &namespaces) => {
            election.release().await;
            std::process::ExitCode::SUCCESS
        }
        _ = election.keep(&contact) => {
            tracing::error!("lost the leader Lease: exiting, to come back as a standby");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The API client, every request counted in `zkop_kubernetes_requests_total`.
async fn counting_client(metrics: Arc<Metrics>) -> Result<kube::Client, kube::Error> {
    let config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    let count = tower::util::MapRequestLayer::new(move |request: http::Request<kube::client::Body>| {
        metrics.api_request(request.method().as_str(), request.uri().path(), request.uri().query());
        request
    });
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&count)
        .build())
}

async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
