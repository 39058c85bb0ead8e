use zkop_operator::controller;
use zkop_operator::resources::OperatorSettings;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn,zookeeper_client=warn".into()),
        )
        .init();
    let settings = OperatorSettings {
        cluster_domain: std::env::var("ZKOP_CLUSTER_DOMAIN").unwrap_or_else(|_| "cluster.local".into()),
    };
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "cannot reach the Kubernetes API (in a pod: service account; outside: KUBECONFIG)");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(cluster_domain = %settings.cluster_domain, "zookeeper-operator starting");
    controller::run(client, settings).await;
    std::process::ExitCode::SUCCESS
}
