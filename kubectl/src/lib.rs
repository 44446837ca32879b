//! kubectl: the command line for the cluster. It talks only to the apiserver, reads
//! kubeconfig as stock kubectl does, and keeps stock kubectl's flags, output and errors,
//! so habits and scripts carry over. Beside the modern commands it has the tutorials'
//! classic ones that stock kubectl dropped: `run --replicas`, `scale NAME` and
//! `rolling-update` (with `--rollback`), which follow long work with progress.

pub mod client;
pub mod cmd;
pub mod describe;
pub mod discovery;
pub mod jsonpath;
pub mod manifest;
pub mod print;
pub mod progress;
pub mod tabwriter;
pub mod threeway;
pub mod yaml;

use clap::{CommandFactory, Parser, Subcommand};

use crate::client::{Ctx, Globals, Result};
use crate::cmd::{auth, certificate, create, expose, get, info, logs, nodes, workloads, write};

/// The command line.
#[derive(Debug, Parser)]
#[command(name = "kubectl", version, about = "kubectl controls the Kubernetes cluster manager.")]
pub struct Cli {
    /// Flags of every command.
    #[command(flatten)]
    pub globals: Globals,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Display one or many resources.
    Get(get::GetArgs),
    /// Show details of a resource or group of resources.
    Describe(get::DescribeArgs),
    /// Create a resource from a file or from arguments.
    Create(create::CreateArgs),
    /// Apply a configuration to a resource by file name or stdin.
    Apply(write::ApplyArgs),
    /// Delete resources by file names, stdin, resources and names, or by resources and label selector.
    Delete(write::DeleteArgs),
    /// Edit a resource on the server.
    Edit(write::EditArgs),
    /// Update fields of a resource.
    Patch(write::PatchArgs),
    /// Update the labels on a resource.
    Label(write::MetaArgs),
    /// Update the annotations on a resource.
    Annotate(write::MetaArgs),
    /// Print the logs for a container in a pod.
    Logs(logs::LogsArgs),
    /// Run an image: a Deployment with --replicas, else a Pod.
    Run(workloads::RunArgs),
    /// Expose a deployment, replica set, replication controller, pod or service as a new Service.
    Expose(expose::ExposeArgs),
    /// Set a new size for a deployment or replica set.
    Scale(workloads::ScaleArgs),
    /// Roll a deployment to a new image step by step, or roll it back, following it to the end.
    RollingUpdate(workloads::RollingUpdateArgs),
    /// Manage the rollout of a deployment.
    #[command(subcommand)]
    Rollout(workloads::RolloutCommand),
    /// Mark a node as unschedulable.
    Cordon(nodes::NodeArgs),
    /// Mark a node as schedulable.
    Uncordon(nodes::NodeArgs),
    /// Drain a node in preparation for maintenance.
    Drain(nodes::DrainArgs),
    /// Print the supported API resources on the server.
    ApiResources {
        /// Only namespaced (true) or cluster-scoped (false) resources.
        #[arg(long)]
        namespaced: Option<bool>,
    },
    /// Print the client and server version information.
    Version {
        /// The client's only.
        #[arg(long)]
        client: bool,
    },
    /// Display cluster information.
    ClusterInfo,
    /// Inspect authorization.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Modify certificate resources.
    #[command(subcommand)]
    Certificate(certificate::CertificateCommand),
    /// Modify kubeconfig files.
    #[command(subcommand)]
    Config(info::ConfigCommand),
    /// Output shell completion code for bash or zsh.
    Completion {
        /// bash, zsh or fish.
        shell: clap_complete::Shell,
    },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "kubectl", &mut std::io::stdout());
            return Ok(());
        }
        Command::Config(c) => return info::config(&cli.globals, c),
        _ => {}
    }
    let ctx = Ctx::new(&cli.globals).await?;
    match cli.command {
        Command::Get(a) => get::get(&ctx, a).await,
        Command::Describe(a) => get::describe(&ctx, a).await,
        Command::Create(a) => create::create(&ctx, a).await,
        Command::Apply(a) => write::apply(&ctx, a).await,
        Command::Delete(a) => write::delete(&ctx, a).await,
        Command::Edit(a) => write::edit(&ctx, a).await,
        Command::Patch(a) => write::patch(&ctx, a).await,
        Command::Label(a) => write::label(&ctx, a, "labels").await,
        Command::Annotate(a) => write::label(&ctx, a, "annotations").await,
        Command::Logs(a) => logs::logs(&ctx, a).await,
        Command::Run(a) => workloads::run(&ctx, a).await,
        Command::Expose(a) => expose::expose(&ctx, a).await,
        Command::Scale(a) => workloads::scale(&ctx, a).await,
        Command::RollingUpdate(a) => workloads::rolling_update(&ctx, a).await,
        Command::Rollout(c) => workloads::rollout(&ctx, c).await,
        Command::Cordon(a) => nodes::cordon(&ctx, a, true).await,
        Command::Uncordon(a) => nodes::cordon(&ctx, a, false).await,
        Command::Drain(a) => nodes::drain(&ctx, a).await,
        Command::ApiResources { namespaced } => info::api_resources(&ctx, namespaced).await,
        Command::Version { client } => info::version(&ctx, client).await,
        Command::ClusterInfo => info::cluster_info(&ctx).await,
        Command::Auth(command) => auth::run(&ctx, &command).await,
        Command::Certificate(command) => certificate::run(&ctx, &command).await,
        Command::Completion { .. } | Command::Config(_) => Ok(()),
    }
}
