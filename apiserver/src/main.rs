//! The `kube-apiserver` binary.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

/// Serves the Kubernetes API over etcd, or over an embedded store when no etcd is given.
#[derive(Parser, Debug)]
#[command(name = "kube-apiserver", version)]
struct Args {
    /// etcd endpoints, comma-separated (http://127.0.0.1:2379). Without it the embedded
    /// store in --data-dir is used.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// Directory of the embedded store.
    #[arg(long, default_value = ".cluster/apiserver")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Port to listen on.
    #[arg(long, visible_alias = "secure-port", default_value_t = 6443)]
    port: u16,
    #[command(flatten)]
    serving: component_base::flags::ServingFlags,
    /// Bearer tokens: one `token,user,uid[,"group1,group2"]` per line.
    #[arg(long, requires = "tls_cert_file")]
    token_auth_file: Option<PathBuf>,
    /// The private key ServiceAccount tokens are signed with (EC P-256, PKCS#8 PEM:
    /// kubeadm's sa.key); without it no token is issued.
    #[arg(long, requires = "tls_cert_file")]
    service_account_signing_key_file: Option<PathBuf>,
    /// Public (or private) keys whose tokens are honored, besides the signing key's
    /// (repeatable: the old key while tokens it signed live on).
    #[arg(long, requires = "tls_cert_file")]
    service_account_key_file: Vec<PathBuf>,
    /// The `iss` of the tokens, and the base of OIDC discovery.
    #[arg(long, default_value = apiserver::serviceaccount::DEFAULT_ISSUER)]
    service_account_issuer: String,
    /// The audiences a token must name to reach the API (default: the issuer).
    #[arg(long, value_delimiter = ',')]
    api_audiences: Vec<String>,
    /// How requests are authorized: `Node,RBAC` (the default with TLS: members of
    /// system:masters, then kubelets' rights, then RBAC) or `AlwaysAllow` (any
    /// authenticated user may do anything).
    #[arg(long, value_delimiter = ',', default_value = "Node,RBAC")]
    authorization_mode: Vec<String>,
    /// Serve plain HTTP with no authentication: anyone who reaches the port may do
    /// anything. For tests on loopback only; a warning is logged.
    #[arg(long, conflicts_with = "tls_cert_file")]
    insecure_serving: bool,
    /// Let in bootstrap tokens (`kube-system` Secrets of type `bootstrap.kubernetes.io/token`):
    /// how a new node joins (`kubeadm token create --print-join-command`).
    #[arg(long, requires = "tls_cert_file", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set, default_value_t = false)]
    enable_bootstrap_token_auth: bool,
    /// Where the audit log goes (`-`: standard output): one audit.k8s.io/v1 Event per
    /// request and stage, as JSON lines.
    #[arg(long, requires = "audit_policy_file")]
    audit_log_path: Option<PathBuf>,
    /// Which requests are logged, and how much of each: upstream's audit Policy.
    #[arg(long, requires = "audit_log_path")]
    audit_policy_file: Option<PathBuf>,
    /// Which resources are encrypted in storage, and with which keys: upstream's
    /// `EncryptionConfiguration` (aescbc, aesgcm, secretbox, identity).
    #[arg(long)]
    encryption_provider_config: Option<PathBuf>,
    /// The client certificate the apiserver presents to kubelets (logs, exec).
    #[arg(long, requires = "kubelet_client_key")]
    kubelet_client_certificate: Option<PathBuf>,
    /// Its private key.
    #[arg(long, requires = "kubelet_client_certificate")]
    kubelet_client_key: Option<PathBuf>,
    /// The CA kubelets' serving certificates must chain to; with it, kubelets are reached
    /// over HTTPS.
    #[arg(long)]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Events kept per resource for watches that resume.
    #[arg(long, default_value_t = 20_000)]
    watch_cache_size: usize,
    /// A prefix put before every etcd key, so several clusters can share one etcd.
    #[arg(long, default_value = "")]
    etcd_prefix: String,
    /// Seconds between storage compactions (0 disables).
    #[arg(long, default_value_t = 300)]
    etcd_compaction_interval: u64,
    /// The largest object stored, in bytes as encoded (etcd's default request limit).
    #[arg(long, default_value_t = apiserver::limits::DEFAULT_MAX_OBJECT_BYTES)]
    max_object_size_bytes: usize,
    /// Bytes of objects each resource's watch cache keeps for watches that resume.
    #[arg(long, default_value_t = apiserver::limits::DEFAULT_WATCH_HISTORY_BYTES)]
    watch_cache_bytes: usize,
    /// Read-only requests served at once (watches not counted); more get 429.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests served at once; more get 429.
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// Seconds a request that is not a watch may take; 504 after.
    #[arg(long, default_value_t = 60)]
    request_timeout: u64,
    /// Seconds a client may take to send a request's headers, or leave a connection idle.
    #[arg(long, default_value_t = 32)]
    read_header_timeout: u64,
    /// Connections open at once (and at most three quarters of the open-files limit).
    #[arg(long, default_value_t = 10_000)]
    max_open_connections: usize,
    /// DNS names clients reach this server by, comma-separated (IP literals, localhost and
    /// this machine's name are always accepted); other Host headers get 403, which stops
    /// DNS rebinding.
    #[arg(long, value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Browser origins (scheme://host[:port], or *) allowed to send writes; a write with any
    /// other Origin header gets 403.
    #[arg(long, value_delimiter = ',')]
    cors_allowed_origins: Vec<String>,
    /// The IPv4 range Service cluster IPs come from (a /12 to a /29).
    #[arg(long, default_value = "10.96.0.0/12", value_parser = apiserver::api::Ranges::parse_cidr)]
    service_cluster_ip_range: (std::net::Ipv4Addr, u8),
    /// The ports NodePort and LoadBalancer Services are given on every node.
    #[arg(long, default_value = "30000-32767", value_parser = apiserver::api::Ranges::parse_ports)]
    service_node_port_range: std::ops::RangeInclusive<u16>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    // A file-size limit (ulimit -f) reached by the store is an I/O error to report and
    // recover from, as a full disk is, not a signal that kills the server.
    let _file_size_limit =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25)).context("handling SIGXFSZ")?;
    let (tls, authentication) = match args.serving.serving()? {
        Some(serving) => {
            let tokens = match &args.token_auth_file {
                Some(path) => apiserver::authn::Authenticator::read_token_file(path)?,
                None => Default::default(),
            };
            let authenticator = apiserver::authn::Authenticator {
                tokens,
                enable_bootstrap_tokens: args.enable_bootstrap_token_auth,
                ..Default::default()
            };
            (Some(serving), authenticator)
        }
        _ if args.insecure_serving => (None, apiserver::authn::Authenticator::insecure()),
        _ => anyhow::bail!(
            "no --tls-cert-file and --tls-private-key-file: give them (`kubeadm init phase certs` makes them), \
             or --insecure-serving to serve plain HTTP with no authentication"
        ),
    };
    let kubelet_client = apiserver::api::KubeletClient::new(
        args.kubelet_certificate_authority.as_deref(),
        args.kubelet_client_certificate.as_deref().zip(args.kubelet_client_key.as_deref()),
    )?;
    let mut modes: Vec<&str> = args.authorization_mode.iter().map(String::as_str).collect();
    modes.sort_unstable();
    let authorization = match modes.as_slice() {
        _ if tls.is_none() => apiserver::AuthorizationMode::AlwaysAllow,
        ["AlwaysAllow"] => apiserver::AuthorizationMode::AlwaysAllow,
        ["Node", "RBAC"] => apiserver::AuthorizationMode::NodeRbac,
        other => anyhow::bail!("--authorization-mode {other:?}: the modes served are Node,RBAC and AlwaysAllow"),
    };
    let service_account_tokens = (args.service_account_signing_key_file.is_some()
        || !args.service_account_key_file.is_empty())
    .then(|| apiserver::serviceaccount::TokenConfig {
        issuer: args.service_account_issuer.clone(),
        audiences: args.api_audiences.clone(),
        signing_key_file: args.service_account_signing_key_file.clone(),
        key_files: args.service_account_key_file.clone(),
    });
    let encryption = match &args.encryption_provider_config {
        Some(path) => Some(std::sync::Arc::new(
            apiserver::encryption::Encryption::load(path)
                .map_err(|e| anyhow::anyhow!("--encryption-provider-config {e}"))?,
        )),
        None => None,
    };
    let audit = match (&args.audit_log_path, &args.audit_policy_file) {
        (Some(path), Some(policy)) => {
            let policy =
                apiserver::audit::Policy::load(policy).map_err(|e| anyhow::anyhow!("--audit-policy-file {e}"))?;
            Some(
                apiserver::audit::Auditor::open(path, policy)
                    .with_context(|| format!("--audit-log-path {}", path.display()))?,
            )
        }
        _ => None,
    };
    let config = apiserver::Config {
        audit,
        encryption,
        service_account_tokens,
        authorization,
        tls,
        authentication,
        kubelet_client,
        etcd_servers: args.etcd_servers,
        data_dir: args.data_dir,
        listen: SocketAddr::new(args.bind_address, args.port),
        watch_cache_size: args.watch_cache_size,
        compaction_interval: Duration::from_secs(args.etcd_compaction_interval),
        etcd_prefix: args.etcd_prefix,
        limits: apiserver::limits::Limits {
            max_object_bytes: args.max_object_size_bytes,
            watch_history_bytes: args.watch_cache_bytes,
            max_requests_inflight: args.max_requests_inflight,
            max_mutating_requests_inflight: args.max_mutating_requests_inflight,
            request_timeout: Duration::from_secs(args.request_timeout),
            read_header_timeout: Duration::from_secs(args.read_header_timeout),
            max_open_connections: args.max_open_connections,
        },
        allowed_hosts: args.allowed_hosts,
        cors_allowed_origins: args.cors_allowed_origins,
        ranges: apiserver::api::Ranges {
            service_ips: args.service_cluster_ip_range,
            node_ports: args.service_node_port_range,
        },
    };
    let server = apiserver::start(config).await.context("starting kube-apiserver")?;
    println!("kube-apiserver listening on {}", server.url());
    component_base::shutdown_signal().await;
    server.shutdown();
    Ok(())
}
