//! What security costs, in one run on this machine:
//! - pod creates/s and p50/p99 latency through an apiserver serving plain HTTP with
//!   authorization off (`--insecure-serving`), beside the same through one serving TLS,
//!   clients presenting certificates, and `Node,RBAC` deciding every request for a user
//!   who is not in `system:masters` (the bootstrap policy loaded, plus `--noise` more
//!   namespaces each with a role and a binding), in alternating rounds; the goal is 85%
//!   of the plain rate;
//! - `SubjectAccessReview`s per second through the API, and decisions per second of the
//!   RBAC index itself, with the same policy.
//!
//! Run with `cargo run --release -p e2e --bin bench-security`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use e2e::{Process, percentile};
use parking_lot::Mutex;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// Pods created per round and mode.
    #[arg(long, default_value_t = 5_000)]
    pods: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Alternating rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Namespaces with a role and a binding each, beside the bootstrap policy.
    #[arg(long, default_value_t = 500)]
    noise: usize,
    /// SubjectAccessReviews sent through the API.
    #[arg(long, default_value_t = 20_000)]
    reviews: usize,
    /// Run the secure apiserver without ServiceAccount keys, so that, like the plain one,
    /// it does not mount credentials in every pod: the comparison is then of TLS, client
    /// certificates and authorization alone.
    #[arg(long)]
    without_service_accounts: bool,
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    })
}

/// `total` POSTs of `make(i)` to `url` from `concurrency` tasks sharing `http`: per
/// second, and the sorted latencies.
async fn post_many(
    http: &reqwest::Client,
    url: &str,
    total: usize,
    concurrency: usize,
    make: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> Result<(f64, Vec<Duration>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let make = Arc::new(make);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, next, latencies, make, url) =
            (http.clone(), next.clone(), latencies.clone(), make.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = serde_json::to_vec(&make(i))?;
                let t = Instant::now();
                let r = http.post(&url).header("content-type", "application/json").body(body).send().await?;
                let status = r.status();
                r.bytes().await?;
                anyhow::ensure!(status.as_u16() == 201, "POST {url} answered {status}");
                latencies.lock().push(t.elapsed());
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let mut lat = latencies.lock().clone();
    lat.sort();
    Ok((rate, lat))
}

struct Server {
    _process: Process,
    url: String,
    /// A client as the benchmark's user.
    user: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn plain() -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let args = vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()];
    let (process, url) = e2e::apiserver_process(&args, &dir.path().join("apiserver.log")).await?;
    let user = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    Ok(Server { _process: process, url, user, _dir: dir })
}

/// A TLS apiserver with RBAC, the bootstrap policy and `noise` more namespaces' roles and
/// bindings; its user `bench` may write pods in `default` through a Role.
async fn secure(noise: usize, service_accounts: bool) -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = e2e::free_port();
    let url = format!("https://127.0.0.1:{port}");
    let pki = e2e::pki::Pki::create(dir.path(), &url, &[])?;
    let mut args = vec![
        "--port".to_owned(),
        port.to_string(),
        "--data-dir".to_owned(),
        dir.path().join("data").display().to_string(),
    ];
    let mut flags = pki.apiserver_args().into_iter();
    while let Some(flag) = flags.next() {
        if !service_accounts && flag.starts_with("--service-account-") {
            flags.next();
            continue;
        }
        args.push(flag);
    }
    let process = Process::spawn("kube-apiserver", &args, &dir.path().join("apiserver.log"))?;
    e2e::wait_healthy(&url, Duration::from_secs(30)).await?;
    let admin = e2e::pki::http_client(&url)?;
    let post = |path: String, body: Value| {
        let admin = admin.clone();
        let url = url.clone();
        async move {
            let r = admin.post(format!("{url}{path}")).json(&body).send().await?;
            anyhow::ensure!(r.status().is_success() || r.status().as_u16() == 409, "POST {path}: {}", r.status());
            Ok::<_, anyhow::Error>(())
        }
    };
    let role = |ns: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "pod-writer", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "delete"]}]})
    };
    let binding = |ns: &str, user: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "pod-writers", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-writer"},
            "subjects": [{"kind": "User", "name": user}, {"kind": "Group", "name": format!("team-{ns}")}]})
    };
    for i in 0..noise {
        let ns = format!("team-{i}");
        post("/api/v1/namespaces".into(), json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
            .await?;
        post(format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles"), role(&ns)).await?;
        post(
            format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
            binding(&ns, &format!("user-{i}")),
        )
        .await?;
    }
    post("/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles".into(), role("default")).await?;
    post("/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings".into(), binding("default", "bench"))
        .await?;
    let issued = component_base::pki::Ca::load(&pki.cert_dir)?
        .issue(&component_base::pki::Request::client("bench", &["bench-group"]))?;
    let user = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes())?)
        .identity(reqwest::Identity::from_pem(format!("{}{}", issued.cert_pem, issued.key_pem).as_bytes())?)
        .build()?;
    // The binding reaches the authorizer through the watch.
    let probe = format!("{url}/api/v1/namespaces/default/pods?limit=1");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !user.get(&probe).send().await?.status().is_success() {
        anyhow::ensure!(Instant::now() < deadline, "the benchmark's binding never took effect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server { _process: process, url, user, _dir: dir })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Decisions per second of the RBAC index alone, with the bootstrap policy and `noise`
/// namespaces' roles and bindings, for a user whose grant is found last.
fn index_decisions(noise: usize) -> f64 {
    use apiserver::authz::Attributes;
    use apiserver::authz::bootstrap;
    use apiserver::authz::rbac::Rbac;
    let mut roles = Vec::new();
    let mut bindings = Vec::new();
    for i in 0..=noise {
        let ns = format!("team-{i}");
        roles.push(json!({"metadata": {"name": "pod-writer", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list"]}]}));
        bindings.push(json!({"metadata": {"name": "pod-writers", "namespace": ns},
            "roleRef": {"kind": "Role", "name": "pod-writer"}, "subjects": [{"kind": "User", "name": format!("user-{i}")}]}));
    }
    let rbac = Rbac::with_objects(&roles, &bindings, &bootstrap::cluster_roles(), &bootstrap::cluster_role_bindings());
    let user = apiserver::authn::UserInfo {
        username: format!("user-{noise}"),
        groups: vec!["system:authenticated".into(), "devs".into()],
        ..Default::default()
    };
    let allowed = Attributes::resource("create", "", "pods", "", &format!("team-{noise}"), "");
    let denied = Attributes::resource("delete", "apps", "deployments", "", "team-0", "web");
    let n = 1_000_000;
    let started = Instant::now();
    let mut yes = 0;
    for i in 0..n {
        let a = if i % 2 == 0 { &allowed } else { &denied };
        if matches!(rbac.authorize(&user, a), apiserver::authz::Decision::Allow(_)) {
            yes += 1;
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    assert_eq!(yes, n / 2, "half the decisions allow");
    rate
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "# pod creates: {} per round, {} clients, embedded store; plain HTTP without authorization beside TLS + client certificates + Node,RBAC ({} extra namespaces of roles and bindings){}",
        args.pods,
        args.concurrency,
        args.noise,
        if args.without_service_accounts {
            ", no ServiceAccount admission"
        } else {
            ", ServiceAccount credentials mounted in every pod"
        }
    );
    let (mut plain_rates, mut secure_rates) = (Vec::new(), Vec::new());
    let (mut plain_lat, mut secure_lat) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let p = plain().await?;
        let (rate_p, lat_p) = post_many(
            &p.user,
            &format!("{}/api/v1/namespaces/default/pods", p.url),
            args.pods,
            args.concurrency,
            |i| pod(&format!("p-{i}")),
        )
        .await?;
        drop(p);
        let s = secure(args.noise, !args.without_service_accounts).await.context("the secure apiserver")?;
        let (rate_s, lat_s) = post_many(
            &s.user,
            &format!("{}/api/v1/namespaces/default/pods", s.url),
            args.pods,
            args.concurrency,
            |i| pod(&format!("s-{i}")),
        )
        .await?;
        println!(
            "  round {round}: plain {rate_p:.0} creates/s (p99 {}), secure {rate_s:.0} creates/s (p99 {})",
            ms(percentile(&lat_p, 0.99)?),
            ms(percentile(&lat_s, 0.99)?)
        );
        plain_rates.push(rate_p);
        secure_rates.push(rate_s);
        plain_lat.extend(lat_p);
        secure_lat.extend(lat_s);
        if round == args.rounds {
            let reviews = args.reviews;
            let review = |i: usize| {
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                    "spec": {"user": format!("user-{}", i % 500), "groups": ["system:authenticated"],
                        "resourceAttributes": {"namespace": format!("team-{}", i % 500), "verb": "create", "resource": "pods"}}})
            };
            let admin = e2e::pki::http_client(&s.url)?;
            let (sar, sar_lat) = post_many(
                &admin,
                &format!("{}/apis/authorization.k8s.io/v1/subjectaccessreviews", s.url),
                reviews,
                args.concurrency,
                review,
            )
            .await?;
            println!(
                "SubjectAccessReviews through the API: {sar:.0}/s (p99 {}), {} clients",
                ms(percentile(&sar_lat, 0.99)?),
                args.concurrency
            );
        }
    }
    plain_lat.sort();
    secure_lat.sort();
    let (p, s) = (median(&mut plain_rates), median(&mut secure_rates));
    println!(
        "pod creates/s, median of {}: plain {p:.0} (p50 {}, p99 {}), secure {s:.0} (p50 {}, p99 {}): {:.1}% of plain (goal: at least 85%)",
        args.rounds,
        ms(percentile(&plain_lat, 0.5)?),
        ms(percentile(&plain_lat, 0.99)?),
        ms(percentile(&secure_lat, 0.5)?),
        ms(percentile(&secure_lat, 0.99)?),
        s / p * 100.0
    );
    println!(
        "RBAC index decisions: {:.0}/s on one core (bootstrap policy and {} namespaces)",
        index_decisions(args.noise),
        args.noise
    );
    Ok(())
}
