//! kube-controller-manager: the controllers that keep the cluster's state at its spec.
//!
//! Every controller has the kube-runtime shape: informers (watch → cache) queue keys on a
//! deduplicating [`workqueue::WorkQueue`]; workers call `reconcile(key) -> Action`; errors
//! come back after a back-off. Controllers: [`replicaset`] (also for
//! ReplicationControllers), [`deployment`],
//! [`nodelifecycle`], [`serviceaccount`], [`clusterrole`] aggregation and the garbage
//! collector [`gc`].

pub mod bootstraptoken;
pub mod certificates;
pub mod clusterrole;
pub mod deployment;
pub mod endpointslice;
pub mod expectations;
pub mod gc;
pub mod informer;
pub mod metrics;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod replicaset;
pub mod rollout;
pub mod serviceaccount;
pub mod workqueue;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;

pub use component_base::leader;

use crate::informer::{Informer, controller_of, key_of};
use crate::workqueue::WorkQueue;

/// The long-running tasks of one controller-manager: dropped, they all stop (so a replica
/// that loses its lease, or a test that drops it, leaves nothing acting behind).
#[derive(Default)]
pub struct Tasks(parking_lot::Mutex<Vec<tokio::task::AbortHandle>>);

impl Tasks {
    /// Spawns a task that lives as long as this set.
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.0.lock().push(tokio::spawn(fut).abort_handle());
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in self.0.lock().drain(..) {
            t.abort();
        }
    }
}

/// Settings of the controllers.
#[derive(Debug, Clone)]
pub struct Config {
    /// How long a node's Lease may go unrenewed before the node is NotReady/Unknown.
    pub node_monitor_grace_period: Duration,
    /// The longest a pod stays on an unreachable node before it is evicted.
    pub pod_eviction_timeout: Duration,
    /// Pods created or deleted at once by one ReplicaSet reconcile, at most.
    pub burst: usize,
    /// Where nodes' pod CIDRs come from (`--cluster-cidr`, with `--allocate-node-cidrs`),
    /// and their prefix length (`--node-cidr-mask-size`); `None`: nodes get none.
    pub cluster_cidr: Option<(String, u8)>,
    /// The cluster's CA (PEM), published in every namespace as `kube-root-ca.crt`.
    pub root_ca: Option<String>,
    /// The CA that signs approved certificate requests, and for how long.
    pub signing: Option<Arc<certificates::Signing>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_monitor_grace_period: Duration::from_secs(40),
            pod_eviction_timeout: Duration::from_secs(300),
            burst: 500,
            cluster_cidr: None,
            root_ca: None,
            signing: None,
        }
    }
}

/// What every controller reads and writes through.
pub struct Context {
    /// The API client.
    pub client: kube::Client,
    /// Settings.
    pub config: Config,
    /// Pods.
    pub pods: Arc<Informer<Pod>>,
    /// ReplicaSets.
    pub replica_sets: Arc<Informer<ReplicaSet>>,
    /// ReplicationControllers (kept by the ReplicaSet code).
    pub replication_controllers: Arc<Informer<ReplicationController>>,
    /// Deployments.
    pub deployments: Arc<Informer<Deployment>>,
    /// Nodes.
    pub nodes: Arc<Informer<Node>>,
    /// Node leases (kube-node-lease).
    pub leases: Arc<Informer<Lease>>,
    /// Namespaces.
    pub namespaces: Arc<Informer<Namespace>>,
    /// ServiceAccounts.
    pub service_accounts: Arc<Informer<ServiceAccount>>,
    /// Services.
    pub services: Arc<Informer<Service>>,
    /// EndpointSlices.
    pub endpoint_slices: Arc<Informer<EndpointSlice>>,
    /// The pod CIDRs nodes hold, when node IPAM is on.
    pub cidrs: Option<nodeipam::CidrSet>,
    /// Outstanding pod creates and deletes of ReplicaSets.
    pub expectations: Arc<expectations::Expectations>,
    /// Metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// Queues, for controllers that wake each other.
    pub queues: Queues,
}

/// The work queues.
pub struct Queues {
    /// ReplicaSet keys.
    pub replica_sets: Arc<WorkQueue>,
    /// ReplicationController keys.
    pub replication_controllers: Arc<WorkQueue>,
    /// Deployment keys.
    pub deployments: Arc<WorkQueue>,
    /// Anything the garbage collector should look at (its key is a uid).
    pub gc: Arc<WorkQueue>,
    /// Namespaces whose default ServiceAccount to ensure.
    pub service_accounts: Arc<WorkQueue>,
    /// Services whose EndpointSlices and Endpoints to bring in line.
    pub endpoints: Arc<WorkQueue>,
    /// Nodes that may need a pod CIDR.
    pub node_ipam: Arc<WorkQueue>,
}

/// Starts the informers and every controller; returns once the caches are filled. The
/// controllers run until `tasks` is dropped.
pub async fn start(
    client: kube::Client,
    config: Config,
    metrics: Arc<metrics::Metrics>,
    tasks: &Tasks,
) -> Arc<Context> {
    let queues = Queues {
        replica_sets: WorkQueue::new("replicaset", metrics.clone()),
        replication_controllers: WorkQueue::new("replicationmanager", metrics.clone()),
        deployments: WorkQueue::new("deployment", metrics.clone()),
        gc: WorkQueue::new("garbagecollector", metrics.clone()),
        service_accounts: WorkQueue::new("serviceaccount", metrics.clone()),
        endpoints: WorkQueue::new("endpointslice", metrics.clone()),
        node_ipam: WorkQueue::new("nodeipam", metrics.clone()),
    };
    let (rsq, dq, gcq) = (queues.replica_sets.clone(), queues.deployments.clone(), queues.gc.clone());
    let saq = queues.service_accounts.clone();
    let rcq = queues.replication_controllers.clone();

    // Services first: pod changes look up the services that select them.
    let epq = queues.endpoints.clone();
    let epq1 = epq.clone();
    let services = Informer::start(
        tasks,
        Api::<Service>::all(client.clone()),
        vec![Box::new(move |c| epq1.add(key_of(c.object)))],
    );
    let epq2 = epq.clone();
    let endpoint_slices = Informer::start(
        tasks,
        Api::<EndpointSlice>::all(client.clone()),
        vec![Box::new(move |c| {
            // A slice of ours changed behind our back (or went): its service is looked at again.
            let labels = c.object.metadata.labels.as_ref();
            if labels.and_then(|l| l.get(endpointslice::MANAGED_BY)).map(String::as_str)
                == Some(endpointslice::CONTROLLER)
                && let Some(service) = labels.and_then(|l| l.get(endpointslice::SERVICE_NAME))
            {
                epq2.add(format!("{}/{service}", c.object.metadata.namespace.as_deref().unwrap_or_default()));
            }
        })],
    );

    // Pod changes count off expectations and wake their ReplicaSet, the collector when
    // owners are involved, and the services that select them (before or after).
    let expectations = Arc::new(expectations::Expectations::default());
    let (rsq1, rcq1, gcq1, exp) = (rsq.clone(), rcq.clone(), gcq.clone(), expectations.clone());
    let (epq3, services1) = (epq.clone(), services.clone());
    let pods = Informer::start_trimmed(
        tasks,
        Api::<Pod>::all(client.clone()),
        trim_pod,
        vec![Box::new(move |c| {
            let owner = controller_of(c.object).and_then(|o| Some((replicaset::Kind::of_owner(&o.kind)?, o)));
            if let Some((kind, owner)) = owner {
                let key = format!("{}/{}", c.object.metadata.namespace.as_deref().unwrap_or_default(), owner.name);
                let expected = kind.expectation_key(&key);
                if c.old.is_none() && !c.deleted {
                    exp.observed_add(&expected);
                }
                let newly_deleting = c.object.metadata.deletion_timestamp.is_some()
                    && c.old.is_some_and(|o| o.metadata.deletion_timestamp.is_none());
                if c.deleted || newly_deleting {
                    exp.observed_delete(&expected, &key_of(c.object));
                }
                match kind {
                    replicaset::Kind::ReplicaSet => rsq1.add(key),
                    replicaset::Kind::ReplicationController => rcq1.add(key),
                }
            } else if !c.deleted {
                // An orphan may be adopted by a ReplicaSet whose selector matches.
                rsq1.add(format!("adopt:{}", key_of(c.object)));
            }
            gc_interest(&gcq1, &c.object.metadata, c.old.is_none() || c.deleted);
            let namespace = c.object.metadata.namespace.as_deref().unwrap_or_default();
            for svc in services1.in_namespace(namespace) {
                if endpointslice::selects(&svc, c.object) || c.old.is_some_and(|o| endpointslice::selects(&svc, o)) {
                    epq3.add(key_of(svc.as_ref()));
                }
            }
        })],
    );
    let (dq1, rsq2, gcq2) = (dq.clone(), rsq.clone(), gcq.clone());
    let replica_sets = Informer::start(
        tasks,
        Api::<ReplicaSet>::all(client.clone()),
        vec![Box::new(move |c| {
            rsq2.add(key_of(c.object));
            if let Some(owner) = controller_of(c.object).filter(|o| o.kind == "Deployment") {
                dq1.add(format!("{}/{}", c.object.metadata.namespace.as_deref().unwrap_or_default(), owner.name));
            }
            gc_interest(&gcq2, &c.object.metadata, c.old.is_none() || c.deleted);
            if c.deleted
                && let Some(uid) = &c.object.metadata.uid
            {
                gcq2.add(uid.clone());
            }
        })],
    );
    let (rcq2, gcq4) = (rcq.clone(), gcq.clone());
    let replication_controllers = Informer::start(
        tasks,
        Api::<ReplicationController>::all(client.clone()),
        vec![Box::new(move |c| {
            rcq2.add(key_of(c.object));
            gc_interest(&gcq4, &c.object.metadata, c.old.is_none() || c.deleted);
            if c.deleted
                && let Some(uid) = &c.object.metadata.uid
            {
                gcq4.add(uid.clone());
            }
        })],
    );
    let (dq2, gcq3) = (dq.clone(), gcq.clone());
    let deployments = Informer::start(
        tasks,
        Api::<Deployment>::all(client.clone()),
        vec![Box::new(move |c| {
            dq2.add(key_of(c.object));
            gc_interest(&gcq3, &c.object.metadata, false);
            if c.deleted
                && let Some(uid) = &c.object.metadata.uid
            {
                gcq3.add(uid.clone());
            }
        })],
    );
    let cidrs = match &config.cluster_cidr {
        Some((cidr, bits)) => match nodeipam::CidrSet::parse(cidr, *bits) {
            Ok(set) => Some(set),
            Err(e) => {
                tracing::error!(error = %e, "node IPAM is off: the cluster CIDR is not usable");
                None
            }
        },
        None => None,
    };
    let ipamq = queues.node_ipam.clone();
    let ipam_on = cidrs.is_some();
    let nodes = Informer::start(
        tasks,
        Api::<Node>::all(client.clone()),
        vec![Box::new(move |c| {
            if ipam_on && (c.deleted || nodeipam::pod_cidr(c.object).is_none()) {
                ipamq.add(key_of(c.object));
            }
        })],
    );
    let leases = Informer::start(tasks, Api::<Lease>::namespaced(client.clone(), "kube-node-lease"), vec![]);
    let saq1 = saq.clone();
    let namespaces = Informer::start(
        tasks,
        Api::<Namespace>::all(client.clone()),
        vec![Box::new(move |c| {
            if !c.deleted && serviceaccount::wants_default(c.object) {
                saq1.add(key_of(c.object));
            }
        })],
    );
    let saq2 = saq.clone();
    let service_accounts = Informer::start(
        tasks,
        Api::<ServiceAccount>::all(client.clone()),
        vec![Box::new(move |c| {
            if c.deleted && c.object.metadata.name.as_deref() == Some(serviceaccount::DEFAULT) {
                saq2.add(c.object.metadata.namespace.clone().unwrap_or_default());
            }
        })],
    );
    pods.wait_synced().await;
    replica_sets.wait_synced().await;
    replication_controllers.wait_synced().await;
    deployments.wait_synced().await;
    nodes.wait_synced().await;
    leases.wait_synced().await;
    namespaces.wait_synced().await;
    service_accounts.wait_synced().await;
    services.wait_synced().await;
    endpoint_slices.wait_synced().await;

    let ctx = Arc::new(Context {
        client,
        config,
        pods,
        replica_sets,
        replication_controllers,
        deployments,
        nodes,
        leases,
        namespaces,
        service_accounts,
        services,
        endpoint_slices,
        cidrs,
        expectations,
        metrics,
        queues,
    });
    let c = ctx.clone();
    rsq.run(tasks, 8, move |key| replicaset::reconcile(c.clone(), key));
    let c = ctx.clone();
    rcq.run(tasks, 4, move |key| replicaset::reconcile_rc(c.clone(), key));
    let c = ctx.clone();
    dq.run(tasks, 4, move |key| deployment::reconcile(c.clone(), key));
    let c = ctx.clone();
    gcq.run(tasks, 4, move |uid| gc::reconcile(c.clone(), uid));
    let c = ctx.clone();
    saq.run(tasks, 2, move |ns| serviceaccount::reconcile(c.clone(), ns));
    let c = ctx.clone();
    epq.run(tasks, 4, move |key| endpointslice::reconcile(c.clone(), key));
    if let Some(cidrs) = &ctx.cidrs {
        // The ranges in use are known before any is handed out.
        for node in ctx.nodes.list() {
            if let Some(cidr) = nodeipam::pod_cidr(&node) {
                cidrs.occupy(cidr, node.metadata.name.as_deref().unwrap_or_default());
            }
        }
        for node in ctx.nodes.list() {
            if nodeipam::pod_cidr(&node).is_none() {
                ctx.queues.node_ipam.add(key_of(node.as_ref()));
            }
        }
        let c = ctx.clone();
        ctx.queues.node_ipam.run(tasks, 1, move |name| nodeipam::reconcile(c.clone(), name));
    }
    clusterrole::start(ctx.client.clone(), tasks, ctx.metrics.clone());
    certificates::start(ctx.client.clone(), tasks, ctx.metrics.clone(), ctx.config.signing.clone());
    bootstraptoken::start(ctx.client.clone(), tasks, ctx.metrics.clone());
    tasks.spawn(nodelifecycle::run(ctx.clone()));
    tasks.spawn(gc::resync(ctx.clone()));
    ctx
}

/// Success, or one of the API error codes that mean "already done" (404 gone, 409 changed).
pub fn tolerate<T>(result: Result<T, kube::Error>, codes: &[u16]) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if codes.contains(&s.code) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What the controllers read of a pod: its metadata, node, tolerations, hostname and
/// subdomain, container ports, phase, conditions and IPs. The rest of the containers,
/// volumes and container statuses are dropped from the cache (at
/// 10,000 pods they were most of the controller-manager's memory); pods are only ever
/// created from templates, patched or deleted here, never written back from the cache.
fn trim_pod(pod: &mut Pod) {
    if let Some(spec) = &mut pod.spec {
        // Of the containers, only the ports: named target ports resolve to them.
        let containers = std::mem::take(&mut spec.containers)
            .into_iter()
            .map(|c| k8s_openapi::api::core::v1::Container { name: c.name, ports: c.ports, ..Default::default() })
            .collect();
        *spec = k8s_openapi::api::core::v1::PodSpec {
            node_name: spec.node_name.take(),
            tolerations: spec.tolerations.take(),
            hostname: spec.hostname.take(),
            subdomain: spec.subdomain.take(),
            containers,
            ..Default::default()
        };
    }
    if let Some(status) = &mut pod.status {
        *status = k8s_openapi::api::core::v1::PodStatus {
            phase: status.phase.take(),
            conditions: status.conditions.take(),
            reason: status.reason.take(),
            pod_ip: status.pod_ip.take(),
            pod_ips: status.pod_ips.take(),
            ..Default::default()
        };
    }
}

/// Queues what the garbage collector should look at: the owners of an object that appeared
/// or went (`arrived_or_left`), and the object itself while a finalizer of the collector's
/// (`orphan`, `foregroundDeletion`) holds its deletion.
fn gc_interest(
    gc: &Arc<WorkQueue>,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    arrived_or_left: bool,
) {
    if arrived_or_left {
        for o in meta.owner_references.iter().flatten() {
            gc.add(o.uid.clone());
        }
    }
    let ours = meta.finalizers.iter().flatten().any(|f| f == "orphan" || f == "foregroundDeletion");
    if meta.deletion_timestamp.is_some()
        && ours
        && let Some(uid) = &meta.uid
    {
        gc.add(uid.clone());
    }
}

/// Runs the controllers; with `election`, only once this replica holds the lease, and
/// returns an error when the lease is lost (the process should exit, as upstream's does).
/// When `shutdown` resolves it stops the controllers and releases the lease.
pub async fn run(
    client: kube::Client,
    config: Config,
    election: Option<leader::Config>,
    metrics: Arc<metrics::Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let tasks = Tasks::default();
    tokio::pin!(shutdown);
    let Some(election) = election else {
        metrics.leader.set(1);
        start(client, config, metrics, &tasks).await;
        shutdown.await;
        return Ok(());
    };
    let mut elector = leader::Elector::new(client.clone(), election);
    tokio::select! {
        _ = elector.acquire() => {}
        _ = &mut shutdown => return Ok(()),
    }
    metrics.leader.set(1);
    start(client, config, metrics.clone(), &tasks).await;
    let result = tokio::select! {
        lost = elector.hold() => Err(lost.into()),
        _ = &mut shutdown => Ok(()),
    };
    metrics.leader.set(0);
    drop(tasks);
    if result.is_ok() {
        // Stopped, not lost: hand the lease to a standby now.
        elector.release().await;
    }
    result
}
