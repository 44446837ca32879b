//! Component tests of Services' cluster IPs and node ports: the apiserver in-process,
//! driven by kube-rs, once on the embedded store and once on etcd.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::Ipv4Addr;

use e2e::{Backend, in_process};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::IPAddress;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

e2e::both_backends!(cluster_ips_and_node_ports_are_claimed_once_and_given_back, a_full_service_range_is_a_clear_422);

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}))
        .unwrap()
}

fn web(name: &str) -> Service {
    service(name, json!({"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}))
}

fn ip_of(s: &Service) -> String {
    s.spec.as_ref().and_then(|s| s.cluster_ip.clone()).unwrap_or_default()
}

fn node_ports(s: &Service) -> Vec<i32> {
    s.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default().iter().filter_map(|p| p.node_port).collect()
}

fn status_of(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn in_service_range(ip: &str) -> bool {
    let ip: Ipv4Addr = ip.parse().unwrap();
    u32::from(ip) >> 20 == u32::from(Ipv4Addr::new(10, 96, 0, 0)) >> 20
}

async fn cluster_ips_and_node_ports_are_claimed_once_and_given_back(backend: Backend, test: &str) {
    let Some(c) = in_process(backend, test, |_| {}).await else { return };
    let services: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let addresses: Api<IPAddress> = Api::all(c.client.clone());
    let pp = PostParams::default();

    // A ClusterIP service gets an address of the range, recorded as an IPAddress.
    let a = services.create(&pp, &web("a")).await.expect("create");
    let ip = ip_of(&a);
    assert!(in_service_range(&ip), "{ip}");
    let spec = a.spec.clone().unwrap();
    assert_eq!(spec.cluster_ips, Some(vec![ip.clone()]));
    assert_eq!(spec.ip_families, Some(vec!["IPv4".to_owned()]));
    let record = addresses.get(&ip).await.expect("IPAddress");
    let parent = record.spec.map(|s| s.parent_ref).unwrap();
    assert_eq!(
        (parent.resource.as_str(), parent.namespace.as_deref(), parent.name.as_str()),
        ("services", Some("default"), "a")
    );

    // Asking for a taken or a foreign address is a 422 in upstream's words.
    let mut taken = web("b");
    taken.spec.as_mut().unwrap().cluster_ip = Some(ip.clone());
    let (code, message) = status_of(services.create(&pp, &taken).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(
        message.contains(&format!(
            "spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
        )),
        "{message}"
    );
    let mut foreign = web("b");
    foreign.spec.as_mut().unwrap().cluster_ip = Some("10.0.0.1".into());
    let (code, message) = status_of(services.create(&pp, &foreign).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(
        message
            .contains("the provided IP (10.0.0.1) is not in the valid range. The range of valid IPs is 10.96.0.0/12"),
        "{message}"
    );
    let mut wanted = web("dns");
    wanted.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.10".into());
    assert_eq!(ip_of(&services.create(&pp, &wanted).await.expect("a requested address")), "10.96.0.10");

    // NodePort: one port per service port, from the range, never shared.
    let np = service(
        "np",
        json!({"type": "NodePort", "selector": {"app": "np"},
        "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}),
    );
    let np = services.create(&pp, &np).await.expect("create");
    let ports = node_ports(&np);
    assert_eq!(ports.len(), 2);
    assert!(ports.iter().all(|p| (30000..=32767).contains(p)) && ports[0] != ports[1], "{ports:?}");
    let clash = service("clash", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": ports[0]}]}));
    let (code, message) = status_of(services.create(&pp, &clash).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(
        message.contains(&format!(
            "spec.ports[0].nodePort: Invalid value: {}: provided port is already allocated",
            ports[0]
        )),
        "{message}"
    );
    assert!(addresses.get_opt(&ip_of(&np)).await.unwrap().is_some());
    let refused = service("refused", json!({"ports": [{"port": 80, "nodePort": 30001}]}));
    let (code, message) = status_of(services.create(&pp, &refused).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(
        message.contains("spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"),
        "{message}"
    );

    // A failed create gives back what it took: the clash's address is free again.
    let before: HashSet<String> =
        addresses.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|a| a.metadata.name).collect();
    assert_eq!(before.len(), 3, "{before:?}");

    // Headless and ExternalName services hold no address.
    let headless =
        services.create(&pp, &service("h", json!({"clusterIP": "None", "selector": {"app": "h"}}))).await.unwrap();
    assert_eq!(ip_of(&headless), "None");
    assert_eq!(headless.spec.unwrap().cluster_ips, Some(vec!["None".to_owned()]));
    let external = services
        .create(&pp, &service("x", json!({"type": "ExternalName", "externalName": "example.com"})))
        .await
        .unwrap();
    assert_eq!(ip_of(&external), "");

    // Concurrent creates never share an address.
    let creates = (0..40).map(|i| {
        let services = services.clone();
        async move { ip_of(&services.create(&PostParams::default(), &web(&format!("c{i}"))).await.expect("create")) }
    });
    let ips: HashSet<String> = futures::future::join_all(creates).await.into_iter().collect();
    assert_eq!(ips.len(), 40);

    // A dry run answers with an address and claims nothing.
    let dry = PostParams { dry_run: true, ..Default::default() };
    let shown = ip_of(&services.create(&dry, &web("dry")).await.expect("dry run"));
    assert!(in_service_range(&shown));
    assert!(addresses.get_opt(&shown).await.unwrap().is_none(), "a dry run stored {shown}");

    // Deleting a service gives its address and ports back.
    services.delete("a", &DeleteParams::default()).await.expect("delete");
    assert!(addresses.get_opt(&ip).await.unwrap().is_none());
    let mut again = web("again");
    again.spec.as_mut().unwrap().cluster_ip = Some(ip.clone());
    assert_eq!(ip_of(&services.create(&pp, &again).await.expect("the freed address")), ip);
    services.delete("np", &DeleteParams::default()).await.expect("delete");
    let reuse = service("reuse", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": ports[0]}]}));
    assert_eq!(node_ports(&services.create(&pp, &reuse).await.expect("the freed port")), vec![ports[0]]);

    // Changing the type claims node ports, and changing it back gives them back.
    let patch = |t: &str| Patch::Merge(json!({"spec": {"type": t}}));
    let grown = services.patch("again", &PatchParams::default(), &patch("NodePort")).await.expect("to NodePort");
    let port = node_ports(&grown);
    assert_eq!(port.len(), 1);
    assert_eq!(ip_of(&grown), ip, "the address stays");
    let shrunk = services.patch("again", &PatchParams::default(), &patch("ClusterIP")).await.expect("to ClusterIP");
    assert!(node_ports(&shrunk).is_empty());
    let takes_it = service("takes-it", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": port[0]}]}));
    services.create(&pp, &takes_it).await.expect("the port given back");

    // A status write keeps everything.
    let status = json!({"status": {"loadBalancer": {}}});
    let same = services.patch_status("again", &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
    assert_eq!(ip_of(&same), ip);
}

async fn a_full_service_range_is_a_clear_422(backend: Backend, test: &str) {
    let Some(c) = in_process(backend, test, |config| {
        config.ranges.service_ips = (Ipv4Addr::new(10, 100, 0, 0), 29);
    })
    .await
    else {
        return;
    };
    let services: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let pp = PostParams::default();
    let mut ips = HashSet::new();
    for i in 0..6 {
        ips.insert(ip_of(&services.create(&pp, &web(&format!("s{i}"))).await.expect("create")));
    }
    let expected: HashSet<String> = (1..=6).map(|i| format!("10.100.0.{i}")).collect();
    assert_eq!(ips, expected, "every usable address of the /29, and no other");
    let (code, message) = status_of(services.create(&pp, &web("one-too-many")).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(
        message.contains("failed to allocate a service IP: range is full: every address of 10.100.0.0/29 is allocated"),
        "{message}"
    );
    services.delete("s3", &DeleteParams::default()).await.expect("delete");
    assert!(ip_of(&services.create(&pp, &web("fits")).await.expect("a freed address")).starts_with("10.100.0."));
}
