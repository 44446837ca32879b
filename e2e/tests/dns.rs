//! The cluster DNS server against a real apiserver (in-process), queried over UDP and TCP
//! on loopback; names outside the cluster go to a fake upstream resolver the test runs on
//! loopback too.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use e2e::{Backend, in_process};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, PostParams};
use serde_json::json;

/// Asks `server` over UDP; the response code and each answer's data as text.
async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> (ResponseCode, Vec<String>) {
    let mut query = Message::new();
    query.set_id(4242).set_message_type(MessageType::Query).set_op_code(OpCode::Query).set_recursion_desired(true);
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&query.to_vec().unwrap(), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buf)).await.expect("an answer").unwrap();
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.id(), 4242);
    (answer.response_code(), answer.answers().iter().map(|r| r.data().to_string()).collect())
}

/// The same over TCP (two length bytes before each message).
async fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> (ResponseCode, Vec<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut query = Message::new();
    query.set_id(7).set_message_type(MessageType::Query).set_op_code(OpCode::Query);
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let bytes = query.to_vec().unwrap();
    let mut stream = tokio::net::TcpStream::connect(server).await.unwrap();
    stream.write_all(&(bytes.len() as u16).to_be_bytes()).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.unwrap();
    let answer = Message::from_vec(&body).unwrap();
    (answer.response_code(), answer.answers().iter().map(|r| r.data().to_string()).collect())
}

/// A resolver that answers every A question with 192.0.2.1.
async fn fake_upstream() -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
            let mut reply = Message::new();
            reply.set_id(query.id()).set_message_type(MessageType::Response).set_op_code(OpCode::Query);
            for q in query.queries() {
                reply.add_query(q.clone());
                reply.add_answer(Record::from_rdata(q.name().clone(), 60, RData::A(A("192.0.2.1".parse().unwrap()))));
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
        }
    });
    addr
}

async fn eventually_answers(server: SocketAddr, name: &str, want: Vec<String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, got) = ask(server, name, RecordType::A).await;
        if got == want {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name}: {got:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_resolve_and_other_names_are_forwarded() {
    let c = in_process(Backend::Embedded, "dns", |_| {}).await.unwrap();
    let services: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let pp = PostParams::default();
    let web: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}}))
    .unwrap();
    let web_ip = services.create(&pp, &web).await.unwrap().spec.unwrap().cluster_ip.unwrap();
    let db: Service = serde_json::from_value(json!({"metadata": {"name": "db"},
        "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}}))
    .unwrap();
    services.create(&pp, &db).await.unwrap();
    let slice: EndpointSlice = serde_json::from_value(json!({
    "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
    "addressType": "IPv4", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
    "endpoints": [
        {"addresses": ["10.244.1.2"], "hostname": "db-0", "conditions": {"ready": true}},
        {"addresses": ["10.244.2.2"], "conditions": {"ready": true}},
        {"addresses": ["10.244.3.2"], "conditions": {"ready": false}},
    ]}))
    .unwrap();
    slices.create(&pp, &slice).await.unwrap();
    let ext: Service = serde_json::from_value(json!({"metadata": {"name": "search"},
        "spec": {"type": "ExternalName", "externalName": "search.example.com"}}))
    .unwrap();
    services.create(&pp, &ext).await.unwrap();

    let listen: SocketAddr = format!("127.0.0.1:{}", e2e::free_port()).parse().unwrap();
    let config = kube_dns::Config { domain: "cluster.local".into(), listen, upstream: vec![fake_upstream().await] };
    let client = c.client.clone();
    let metrics = std::sync::Arc::new(kube_dns::Metrics::default());
    let m = metrics.clone();
    let server = tokio::spawn(async move { kube_dns::serve(client, config, m).await });
    // Serving once it accepts a TCP connection (a UDP query sent before it binds is lost).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(listen).await.is_err() {
        assert!(!server.is_finished(), "kube-dns stopped: {:?}", server.await);
        assert!(tokio::time::Instant::now() < deadline, "kube-dns did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    eventually_answers(listen, "web.default.svc.cluster.local.", vec![web_ip.clone()]).await;
    // A headless service answers with its ready endpoints; a named one has its own name.
    assert_eq!(
        ask(listen, "db.default.svc.cluster.local.", RecordType::A).await,
        (ResponseCode::NoError, vec!["10.244.1.2".into(), "10.244.2.2".into()])
    );
    assert_eq!(ask(listen, "db-0.db.default.svc.cluster.local.", RecordType::A).await.1, vec!["10.244.1.2"]);
    assert_eq!(
        ask(listen, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await.1,
        vec!["0 100 80 web.default.svc.cluster.local."]
    );
    let reverse = format!("{}.in-addr.arpa.", web_ip.split('.').rev().collect::<Vec<_>>().join("."));
    assert_eq!(ask(listen, &reverse, RecordType::PTR).await.1, vec!["web.default.svc.cluster.local."]);
    assert_eq!(ask(listen, "search.default.svc.cluster.local.", RecordType::A).await.1, vec!["search.example.com."]);
    // NXDOMAIN for what does not exist, NODATA for what exists without the type asked.
    assert_eq!(ask(listen, "nope.default.svc.cluster.local.", RecordType::A).await, (ResponseCode::NXDomain, vec![]));
    assert_eq!(ask(listen, "web.default.svc.cluster.local.", RecordType::AAAA).await, (ResponseCode::NoError, vec![]));
    // Other names go upstream; TCP works as UDP does.
    assert_eq!(ask(listen, "example.com.", RecordType::A).await.1, vec!["192.0.2.1"]);
    assert_eq!(ask_tcp(listen, "web.default.svc.cluster.local.", RecordType::A).await.1, vec![web_ip]);

    // The names follow the API: a new service resolves without a restart.
    let late: Service = serde_json::from_value(json!({"metadata": {"name": "late"},
        "spec": {"clusterIP": "10.96.0.77", "ports": [{"port": 80}]}}))
    .unwrap();
    services.create(&pp, &late).await.unwrap();
    eventually_answers(listen, "late.default.svc.cluster.local.", vec!["10.96.0.77".into()]).await;

    // Every answer is counted, by where it came from and its code.
    let text = metrics.encode();
    assert!(text.contains(r#"coredns_dns_responses_total{source="zone",rcode="NXDOMAIN"}"#), "{text}");
    assert!(text.contains(r#"coredns_dns_responses_total{source="forward",rcode="NOERROR"} 1"#), "{text}");
    assert!(text.contains("coredns_dns_request_duration_seconds_count"), "{text}");
}
