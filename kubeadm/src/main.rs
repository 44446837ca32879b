//! The `kubeadm` binary: the cluster's certificates and kubeconfigs, in upstream's layout
//! (`/etc/kubernetes/pki`, `/etc/kubernetes/*.conf`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "kubeadm", version, about = "Makes the cluster's certificates and kubeconfigs")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The phases of setting up a control plane.
    Init {
        #[command(subcommand)]
        phase: InitCommand,
    },
    /// Kubeconfigs for users.
    Kubeconfig {
        #[command(subcommand)]
        command: KubeconfigCommand,
    },
    /// Certificates.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Bootstrap tokens, which let new nodes join.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Joins this host to a cluster: checks the cluster against the token and the CA's
    /// hash, writes the kubelet's bootstrap kubeconfig and prints the kubelet command.
    Join {
        /// The API server, HOST:PORT.
        endpoint: String,
        /// The bootstrap token (`abcdef.0123456789abcdef`).
        #[arg(long)]
        token: String,
        /// The CA's public key hash (`sha256:...`), from `kubeadm token create --print-join-command`.
        #[arg(long)]
        discovery_token_ca_cert_hash: Vec<String>,
        /// Trust the CA the token-signed cluster information names, without a hash.
        #[arg(long)]
        discovery_token_unsafe_skip_ca_verification: bool,
        /// This node's name (default: the hostname).
        #[arg(long)]
        node_name: Option<String>,
        /// Where the files go.
        #[arg(long, default_value = "/etc/kubernetes")]
        dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Makes a token and prints it (or, with --print-join-command, the command a new node runs).
    Create {
        /// The admin's kubeconfig.
        #[arg(long, default_value = "/etc/kubernetes/admin.conf")]
        kubeconfig: PathBuf,
        /// How long the token is valid (0: forever).
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        /// What the token is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Print `kubeadm join ...` rather than the token alone.
        #[arg(long)]
        print_join_command: bool,
    },
    /// Lists the tokens.
    List {
        /// The admin's kubeconfig.
        #[arg(long, default_value = "/etc/kubernetes/admin.conf")]
        kubeconfig: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum InitCommand {
    /// Runs one phase.
    Phase {
        #[command(subcommand)]
        phase: Phase,
    },
}

#[derive(Subcommand, Debug)]
enum Phase {
    /// The CA, the apiserver's serving certificate and its client certificate for kubelets
    /// (existing files are kept).
    Certs {
        /// `all` (the only set there is).
        #[arg(default_value = "all")]
        which: String,
        #[command(flatten)]
        dirs: CertDir,
        /// The address the apiserver is reached at from other hosts.
        #[arg(long)]
        apiserver_advertise_address: Option<IpAddr>,
        /// More DNS names and addresses for the apiserver's certificate, comma-separated.
        #[arg(long, value_delimiter = ',')]
        apiserver_cert_extra_sans: Vec<String>,
        /// The Service range (its first address is `kubernetes.default`'s).
        #[arg(long, default_value = "10.96.0.0/12", value_parser = parse_cidr)]
        service_cidr: (Ipv4Addr, u8),
    },
    /// A kubeconfig, with its own client certificate, for each control-plane identity:
    /// admin.conf, controller-manager.conf, scheduler.conf, kube-proxy.conf, kube-dns.conf.
    Kubeconfig {
        /// `all` (the only set there is).
        #[arg(default_value = "all")]
        which: String,
        #[command(flatten)]
        dirs: CertDir,
        #[command(flatten)]
        out: KubeconfigDir,
        /// The apiserver's URL (https://HOST:6443).
        #[arg(long)]
        control_plane_endpoint: String,
    },
    /// Lets nodes join with bootstrap tokens: the RBAC bindings that let tokens ask for
    /// node certificates (approved automatically) and the public `cluster-info`.
    BootstrapToken {
        /// The admin's kubeconfig (its server and CA are what cluster-info publishes).
        #[arg(long, default_value = "/etc/kubernetes/admin.conf")]
        kubeconfig: PathBuf,
    },
    /// A node's kubeconfig (system:node:NAME) and its kubelet's serving certificate.
    Node {
        /// The node's name.
        name: String,
        /// The node's addresses and DNS names, for the serving certificate, comma-separated.
        #[arg(long, value_delimiter = ',')]
        address: Vec<String>,
        #[command(flatten)]
        dirs: CertDir,
        #[command(flatten)]
        out: KubeconfigDir,
        /// The apiserver's URL (https://HOST:6443).
        #[arg(long)]
        control_plane_endpoint: String,
    },
}

#[derive(clap::Args, Debug)]
struct CertDir {
    /// Where the certificates are.
    #[arg(long, default_value = "/etc/kubernetes/pki")]
    cert_dir: PathBuf,
}

#[derive(clap::Args, Debug)]
struct KubeconfigDir {
    /// Where the kubeconfigs go.
    #[arg(long, default_value = "/etc/kubernetes")]
    kubeconfig_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum KubeconfigCommand {
    /// Prints a kubeconfig for a user, with a new client certificate signed by the CA.
    User {
        /// The user's name (the certificate's CN).
        #[arg(long)]
        client_name: String,
        /// A group (the certificate's O); up to two.
        #[arg(long)]
        org: Vec<String>,
        #[command(flatten)]
        dirs: CertDir,
        /// The apiserver's URL.
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
        /// How long the certificate is valid (8760h, 30m, 90s).
        #[arg(long, default_value = "8760h", value_parser = parse_duration)]
        validity_period: Duration,
    },
}

#[derive(Subcommand, Debug)]
enum CertsCommand {
    /// When each certificate and kubeconfig expires.
    CheckExpiration {
        #[command(flatten)]
        dirs: CertDir,
        #[command(flatten)]
        out: KubeconfigDir,
    },
}

fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, bits) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR (10.96.0.0/12)"))?;
    let ip: Ipv4Addr = ip.parse().map_err(|e| format!("{ip:?}: {e}"))?;
    let bits: u8 = bits.parse().ok().filter(|b| *b <= 32).ok_or_else(|| format!("{bits:?} is not a prefix length"))?;
    Ok((ip, bits))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = number.parse().map_err(|_| format!("{s:?} is not a duration (8760h, 30m, 90s)"))?;
    let secs = match unit {
        "h" => n * 3600,
        "m" => n * 60,
        "s" | "" => n,
        _ => return Err(format!("{s:?}: the unit must be h, m or s")),
    };
    if secs == 0 {
        return Err("the validity period must be more than zero".into());
    }
    Ok(Duration::from_secs(secs))
}

/// A token's lifetime; zero is forever.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    if s == "0" || s == "0s" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

fn print(report: kubeadm::Report) {
    for line in report {
        println!("{line}");
    }
}

fn one_set(which: &str) -> anyhow::Result<()> {
    anyhow::ensure!(which == "all", "unknown set {which:?}: only \"all\" is made");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use kubeadm::token::{self, Cluster};
    match Args::parse().command {
        Command::Token { command: TokenCommand::Create { kubeconfig, ttl, description, print_join_command } } => {
            let client = component_base::client(Some(&kubeconfig), None).await?;
            let cluster = Cluster::from_kubeconfig(&kubeconfig)?;
            let ttl = (!ttl.is_zero()).then_some(ttl);
            let token = token::create_token(&client, ttl, &description).await?;
            if print_join_command {
                println!("{}", token::join_command(&cluster, &token)?);
            } else {
                println!("{token}");
            }
        }
        Command::Token { command: TokenCommand::List { kubeconfig } } => {
            let client = component_base::client(Some(&kubeconfig), None).await?;
            print(token::list_tokens(&client).await?);
        }
        Command::Join {
            endpoint,
            token,
            discovery_token_ca_cert_hash,
            discovery_token_unsafe_skip_ca_verification,
            node_name,
            dir,
        } => {
            let token = component_base::bootstrap::Token::parse(&token)
                .context("--token: a bootstrap token is [a-z0-9]{6}.[a-z0-9]{16}")?;
            let node_name = node_name.unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_lowercase()
            });
            print(
                token::join(&token::JoinOptions {
                    endpoint,
                    token,
                    ca_hashes: discovery_token_ca_cert_hash,
                    unsafe_skip_ca: discovery_token_unsafe_skip_ca_verification,
                    node_name,
                    dir,
                })
                .await?,
            );
        }
        Command::Init { phase: InitCommand::Phase { phase } } => match phase {
            Phase::Certs { which, dirs, apiserver_advertise_address, apiserver_cert_extra_sans, service_cidr } => {
                one_set(&which)?;
                print(kubeadm::certs(&kubeadm::CertsOptions {
                    cert_dir: dirs.cert_dir,
                    advertise_address: apiserver_advertise_address,
                    extra_sans: apiserver_cert_extra_sans,
                    service_cidr,
                })?)
            }
            Phase::Kubeconfig { which, dirs, out, control_plane_endpoint } => {
                one_set(&which)?;
                print(kubeadm::kubeconfigs(&dirs.cert_dir, &out.kubeconfig_dir, &control_plane_endpoint)?)
            }
            Phase::Node { name, address, dirs, out, control_plane_endpoint } => {
                print(kubeadm::node(&dirs.cert_dir, &out.kubeconfig_dir, &control_plane_endpoint, &name, &address)?)
            }
            Phase::BootstrapToken { kubeconfig } => {
                let client = component_base::client(Some(&kubeconfig), None).await?;
                print(token::bootstrap_token_phase(&client, &Cluster::from_kubeconfig(&kubeconfig)?).await?);
            }
        },
        Command::Kubeconfig {
            command: KubeconfigCommand::User { client_name, org, dirs, server, validity_period },
        } => {
            let ca = component_base::pki::Ca::load(&dirs.cert_dir)?;
            let groups: Vec<&str> = org.iter().map(String::as_str).collect();
            print!("{}", kubeadm::user_kubeconfig(&ca, &server, &client_name, &groups, validity_period)?);
        }
        Command::Certs { command: CertsCommand::CheckExpiration { dirs, out } } => {
            let rows =
                kubeadm::check_expiration(&dirs.cert_dir, &out.kubeconfig_dir).context("reading certificates")?;
            let now = jiff::Timestamp::now();
            println!("{:<36} {:<40} {:<22} RESIDUAL TIME", "CERTIFICATE", "SUBJECT", "EXPIRES");
            for (file, cn, at) in rows {
                let days = (at.as_second() - now.as_second()) / 86_400;
                let left = if days >= 0 { format!("{days}d") } else { "<expired>".to_owned() };
                println!("{file:<36} {cn:<40} {:<22} {left}", at.strftime("%b %d, %Y %H:%M UTC").to_string());
            }
        }
    }
    Ok(())
}
