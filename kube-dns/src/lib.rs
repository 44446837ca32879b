//! The cluster DNS server: Services and EndpointSlices from a watch, the names of
//! [`zone`] answered from an in-memory snapshot (no API call per query), everything else
//! forwarded to the upstream resolvers. Served over UDP and TCP with `hickory-server`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt;
use hickory_proto::op::{Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_server::ServerFuture;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use parking_lot::RwLock;

pub mod zone;

/// The labels of a response count: where it came from and its code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ResponseLabels {
    /// `zone` (the cluster's names) or `forward`.
    pub source: String,
    /// The response code (`NOERROR`, `NXDOMAIN`, `SERVFAIL`, ...).
    pub rcode: String,
}

/// The server's metrics, named after CoreDNS's.
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    /// `coredns_dns_responses_total`.
    pub responses:
        prometheus_client::metrics::family::Family<ResponseLabels, prometheus_client::metrics::counter::Counter>,
    /// `coredns_dns_request_duration_seconds`.
    pub duration: prometheus_client::metrics::histogram::Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let responses = prometheus_client::metrics::family::Family::default();
        let duration = prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.00025, 2.0, 16),
        );
        // The client library adds `_total` to a counter's name.
        registry.register("coredns_dns_responses", "Responses sent, by source and response code", responses.clone());
        registry.register("coredns_dns_request_duration_seconds", "Time to answer a query", duration.clone());
        Metrics { registry, responses, duration }
    }
}

impl Metrics {
    /// The Prometheus text format.
    pub fn encode(&self) -> String {
        component_base::encode_metrics(&self.registry)
    }

    fn observe(&self, source: &str, code: ResponseCode, started: std::time::Instant) {
        let rcode = match code {
            ResponseCode::NoError => "NOERROR".to_owned(),
            ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
            ResponseCode::ServFail => "SERVFAIL".to_owned(),
            ResponseCode::FormErr => "FORMERR".to_owned(),
            ResponseCode::NotImp => "NOTIMP".to_owned(),
            ResponseCode::Refused => "REFUSED".to_owned(),
            other => u16::from(other).to_string(),
        };
        let labels = ResponseLabels { source: source.to_owned(), rcode };
        self.responses.get_or_create(&labels).inc();
        self.duration.observe(started.elapsed().as_secs_f64());
    }
}

use zone::{Endpoint, Outcome, Zone};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster domain (`--cluster-domain`, `cluster.local`).
    pub domain: String,
    /// Where to listen, UDP and TCP.
    pub listen: SocketAddr,
    /// Resolvers for names outside the cluster.
    pub upstream: Vec<SocketAddr>,
}

/// The zone from the watched objects: every service, with the endpoints its slices list.
pub fn zone_of(domain: &str, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Zone {
    let mut endpoints: BTreeMap<(String, String), Vec<Endpoint>> = BTreeMap::new();
    for slice in slices.iter().filter(|s| s.address_type == "IPv4") {
        let Some(svc) = slice.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")) else {
            continue;
        };
        let key = (slice.metadata.namespace.clone().unwrap_or_default(), svc.clone());
        for e in &slice.endpoints {
            let Some(ip) = e.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else { continue };
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            endpoints.entry(key.clone()).or_default().push(Endpoint { ip, hostname: e.hostname.clone(), ready });
        }
    }
    let mut zone = Zone::new(domain);
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        let key = (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
        let publish = spec.publish_not_ready_addresses.unwrap_or(false);
        let mut eps = endpoints.remove(&key).unwrap_or_default();
        if publish {
            for e in &mut eps {
                e.ready = true;
            }
        }
        eps.sort();
        let external = (spec.type_.as_deref() == Some("ExternalName")).then(|| spec.external_name.clone()).flatten();
        zone.services.insert(
            key,
            zone::Service {
                cluster_ip: spec.cluster_ip.as_deref().and_then(|ip| ip.parse().ok()),
                external_name: external,
                ports: spec
                    .ports
                    .iter()
                    .flatten()
                    .filter_map(|p| {
                        let name = p.name.clone().filter(|n| !n.is_empty())?;
                        let proto = p.protocol.as_deref().unwrap_or("TCP").to_lowercase();
                        Some((name, proto, u16::try_from(p.port).ok()?))
                    })
                    .collect(),
                endpoints: eps,
            },
        );
    }
    zone
}

/// The upstream resolvers of a resolv.conf, without the local stub of systemd-resolved
/// (127.0.0.53: asking it could loop back here), as `ip:53`.
pub fn upstream_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .filter(|ip| *ip != std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 53)))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Answers queries from the current zone, forwarding what is not the cluster's.
#[derive(Clone)]
pub struct Handler {
    zone: Arc<RwLock<Arc<Zone>>>,
    upstream: Arc<Vec<SocketAddr>>,
    metrics: Arc<Metrics>,
}

impl Handler {
    /// A handler over a zone kept current by someone else.
    pub fn new(zone: Arc<RwLock<Arc<Zone>>>, upstream: Vec<SocketAddr>, metrics: Arc<Metrics>) -> Handler {
        Handler { zone, upstream: Arc::new(upstream), metrics }
    }

    /// Asks the upstream resolvers (in turn, 2 s each) and returns their answer.
    async fn forward(&self, name: &Name, qtype: RecordType, recursion: bool) -> Option<Message> {
        let mut query = Message::new();
        query.set_id(rand_id()).set_message_type(MessageType::Query).set_op_code(OpCode::Query);
        query.set_recursion_desired(recursion);
        query.add_query(Query::query(name.clone(), qtype));
        let bytes = query.to_vec().ok()?;
        for server in self.upstream.iter() {
            let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
            let Ok(socket) = tokio::net::UdpSocket::bind(bind).await else { continue };
            // Connected: only the server's answers arrive, and a server that is not there
            // (an ICMP port unreachable) is an error at once, not a time-out.
            if socket.connect(server).await.is_err() || socket.send(&bytes).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; 4096];
            let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf)).await else {
                continue;
            };
            if let Ok(answer) = Message::from_vec(&buf[..n])
                && answer.id() == query.id()
            {
                return Some(answer);
            }
        }
        None
    }
}

/// A query id an off-path attacker cannot guess (with the random source port, what keeps
/// forged answers out).
fn rand_id() -> u16 {
    rand::random()
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let started = std::time::Instant::now();
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let Ok(info) = request.request_info() else {
            header.set_response_code(ResponseCode::FormErr);
            return send(&mut response, builder.build_no_records(header)).await;
        };
        if request.header().op_code() != OpCode::Query || request.header().message_type() != MessageType::Query {
            header.set_response_code(ResponseCode::NotImp);
            return send(&mut response, builder.build_no_records(header)).await;
        }
        let qname = info.query.name().to_string();
        let qtype = info.query.query_type();
        let outcome = self.zone.read().answer(&qname, qtype);
        match outcome {
            Outcome::Answer { code, answers, soa } => {
                self.metrics.observe("zone", code, started);
                header.set_authoritative(true);
                header.set_response_code(code);
                let soa: Vec<Record> = soa.into_iter().map(|r| *r).collect();
                let reply = builder.build(header, answers.iter(), std::iter::empty(), soa.iter(), std::iter::empty());
                send(&mut response, reply).await
            }
            Outcome::Forward => {
                let name: Name = info.query.name().into();
                match self.forward(&name, qtype, request.header().recursion_desired()).await {
                    Some(answer) => {
                        self.metrics.observe("forward", answer.response_code(), started);
                        header.set_response_code(answer.response_code());
                        let reply = builder.build(
                            header,
                            answer.answers().iter(),
                            answer.name_servers().iter(),
                            std::iter::empty(),
                            answer.additionals().iter(),
                        );
                        send(&mut response, reply).await
                    }
                    None => {
                        self.metrics.observe("forward", ResponseCode::ServFail, started);
                        header.set_response_code(ResponseCode::ServFail);
                        send(&mut response, builder.build_no_records(header)).await
                    }
                }
            }
        }
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "sending a DNS answer failed");
            let mut header = Header::new();
            header.set_response_code(ResponseCode::ServFail);
            header.into()
        }
    }
}

/// Watches Services and EndpointSlices and keeps `zone` current, forever.
pub async fn keep_zone(client: kube::Client, domain: String, zone: Arc<RwLock<Arc<Zone>>>) -> anyhow::Result<()> {
    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel::<()>();
    let t = tx.clone();
    tokio::spawn(
        reflector(services_writer, watcher(Api::<Service>::all(client.clone()), watcher::Config::default()))
            .default_backoff()
            .for_each(move |_| {
                let _ = t.send(());
                async {}
            }),
    );
    tokio::spawn(
        reflector(slices_writer, watcher(Api::<EndpointSlice>::all(client), watcher::Config::default()))
            .default_backoff()
            .for_each(move |_| {
                let _ = tx.send(());
                async {}
            }),
    );
    services.wait_until_ready().await.context("watching services")?;
    slices.wait_until_ready().await.context("watching endpoint slices")?;
    loop {
        // One rebuild for a burst of changes.
        while changed.try_recv().is_ok() {}
        *zone.write() = Arc::new(zone_of(&domain, &services.state(), &slices.state()));
        if changed.recv().await.is_none() {
            anyhow::bail!("the watches ended");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Serves DNS on `config.listen` (UDP and TCP) from the cluster behind `client`, until the
/// watches end.
pub async fn serve(client: kube::Client, config: Config, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let zone = Arc::new(RwLock::new(Arc::new(Zone::new(&config.domain))));
    let keeper = tokio::spawn(keep_zone(client, config.domain.clone(), zone.clone()));
    let mut server = ServerFuture::new(Handler::new(zone, config.upstream.clone(), metrics));
    let udp =
        tokio::net::UdpSocket::bind(config.listen).await.with_context(|| format!("binding UDP {}", config.listen))?;
    let tcp =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding TCP {}", config.listen))?;
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5));
    tracing::info!(listen = %config.listen, domain = %config.domain, upstream = ?config.upstream, "cluster DNS serving");
    tokio::select! {
        r = server.block_until_done() => r.context("the DNS server stopped"),
        r = keeper => r.context("the zone keeper panicked")?,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_systemd_stub_is_never_an_upstream() {
        let conf = "# generated\nnameserver 127.0.0.53\noptions edns0\nnameserver 192.0.2.53\nsearch example\n";
        assert_eq!(upstream_from_resolv_conf(conf), vec!["192.0.2.53:53".parse::<SocketAddr>().unwrap()]);
    }
}
