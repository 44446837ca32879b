//! Component tests: the apiserver in-process on a free port, driven by the kube-rs client
//! (and raw HTTP where a client hides the wire), once on the embedded store and once on etcd.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{Backend, InProcess, in_process};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

e2e::both_backends!(
    crud_of_pods_and_deployments,
    optimistic_concurrency,
    validation_errors_name_the_field,
    bad_input_is_rejected_and_nothing_changes,
    label_and_field_selectors,
    pagination_with_continue,
    kube_watcher_sees_every_change,
    watch_with_selectors_sees_objects_leave_and_enter,
    watch_from_a_too_old_version_gets_410_expired,
    streaming_list_ends_with_a_bookmark,
    status_and_scale_subresources,
    binding_assigns_a_node_once,
    graceful_pod_deletion,
    namespace_deletion_deletes_its_content,
    deletecollection_and_generate_name,
    events_served_in_both_groups,
    metrics_count_requests,
    hundreds_of_node_watchers_share_one_storage_watch,
    tables_for_kubectl_get,
    aggregated_discovery_in_one_round_trip,
    server_side_apply_tracks_owners_and_conflicts,
    exact_lists_dry_runs_and_delete_preconditions,
    creates_answer_with_upstreams_zero_values,
);

async fn cluster(backend: Backend, test: &str) -> Option<InProcess> {
    in_process(backend, test, |_| {}).await
}

fn pod(name: &str, labels: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
    }))
    .expect("pod")
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "web:1"}]}},
        },
    }))
    .expect("deployment")
}

fn status_of(err: kube::Error) -> (u16, String, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn crud_of_pods_and_deployments(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let created = pods.create(&PostParams::default(), &pod("web-1", json!({"app": "web"}))).await.expect("create");
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert!(meta.resource_version.as_deref().is_some_and(|rv| rv.parse::<i64>().is_ok()));
    let spec = created.spec.as_ref().expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"), "defaulted");
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(created.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Pending"));

    let got = pods.get("web-1").await.expect("get");
    assert_eq!(got.metadata.uid, meta.uid);
    let list = pods.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());

    let mut changed = got.clone();
    changed.metadata.labels.get_or_insert_default().insert("tier".into(), "front".into());
    let replaced = pods.replace("web-1", &PostParams::default(), &changed).await.expect("replace");
    assert_ne!(replaced.metadata.resource_version, got.metadata.resource_version);
    assert_eq!(replaced.metadata.creation_timestamp, got.metadata.creation_timestamp);

    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let d = deploys.create(&PostParams::default(), &deployment("web", 3)).await.expect("create deployment");
    assert_eq!(d.metadata.generation, Some(1));
    let spec = d.spec.as_ref().expect("spec");
    assert_eq!(spec.revision_history_limit, Some(10));
    assert_eq!(spec.strategy.as_ref().and_then(|s| s.type_.as_deref()), Some("RollingUpdate"));
    // Metadata-only changes keep the generation; spec changes bump it.
    let labelled = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .expect("label");
    assert_eq!(labelled.metadata.generation, Some(1));
    let scaled = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
        .await
        .expect("merge patch");
    assert_eq!(scaled.metadata.generation, Some(2));
    let json_patched = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "web:2"}]),
                )
                .expect("json patch"),
            ),
        )
        .await
        .expect("json patch");
    assert_eq!(json_patched.metadata.generation, Some(3));
    let strategic = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "s:1"}]}}}}),
            ),
        )
        .await
        .expect("strategic patch");
    let containers = &strategic.spec.expect("spec").template.spec.expect("pod spec").containers;
    assert_eq!(containers.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["c", "side"]);

    deploys.delete("web", &DeleteParams::default()).await.expect("delete");
    let (code, reason, message) = status_of(deploys.get("web").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert_eq!(message, "deployments.apps \"web\" not found");
}

async fn optimistic_concurrency(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}})).expect("cm");
    let first = cms.create(&PostParams::default(), &cm).await.expect("create");
    let (code, reason, _) = status_of(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let mut a = first.clone();
    a.data.get_or_insert_default().insert("a".into(), "2".into());
    cms.replace("cfg", &PostParams::default(), &a).await.expect("first writer wins");
    let mut b = first.clone();
    b.data.get_or_insert_default().insert("a".into(), "3".into());
    let (code, reason, message) = status_of(cms.replace("cfg", &PostParams::default(), &b).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(message.contains("the object has been modified"), "{message}");
    assert_eq!(cms.get("cfg").await.expect("get").data.expect("data")["a"], "2");

    // An update without a resourceVersion is unconditional.
    let mut c2 = first;
    c2.metadata.resource_version = None;
    c2.data.get_or_insert_default().insert("a".into(), "4".into());
    cms.replace("cfg", &PostParams::default(), &c2).await.expect("unconditional update");
}

async fn validation_errors_name_the_field(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let (code, reason, message) =
        status_of(pods.create(&PostParams::default(), &pod("Bad_Name", json!({}))).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(message.contains("metadata.name"), "{message}");

    let mut no_image = pod("no-image", json!({}));
    no_image.spec.as_mut().expect("spec").containers[0].image = None;
    let (code, _, message) = status_of(pods.create(&PostParams::default(), &no_image).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("spec.containers[0].image: Required value"), "{message}");

    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let mut mismatch = deployment("web", 1);
    mismatch.spec.as_mut().expect("spec").selector.match_labels =
        Some([("app".to_owned(), "other".to_owned())].into_iter().collect());
    let (code, _, message) = status_of(deploys.create(&PostParams::default(), &mismatch).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("`selector` does not match template `labels`"), "{message}");

    // The selector of a deployment is immutable.
    deploys.create(&PostParams::default(), &deployment("web", 1)).await.expect("create");
    let patch = json!({"spec": {"selector": {"matchLabels": {"app": "web", "v": "2"}}, "template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}});
    let (code, _, message) =
        status_of(deploys.patch("web", &PatchParams::default(), &Patch::Merge(patch)).await.unwrap_err());
    assert_eq!(code, 422);
    assert!(message.contains("field is immutable"), "{message}");

    // A pod's spec is immutable apart from images.
    pods.create(&PostParams::default(), &pod("p", json!({}))).await.expect("create pod");
    let (code, _, _) = status_of(
        pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"spec": {"restartPolicy": "Never"}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}})),
    )
    .await
    .expect("image change is allowed");

    // Unknown fields: rejected under Strict, dropped with a warning otherwise.
    let http = reqwest::Client::new();
    let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "strict"}, "spec": {"containers": [{"name": "c", "image": "b", "colour": "red"}]}});
    let r = http
        .post(format!("{}/api/v1/namespaces/default/pods?fieldValidation=Strict", c.url()))
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let status: Value = r.json().await.expect("status");
    assert!(
        status["message"].as_str().unwrap_or_default().contains("unknown field \"spec.containers[0].colour\""),
        "{status}"
    );
    let r = http.post(format!("{}/api/v1/namespaces/default/pods", c.url())).json(&body).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 201);
    assert!(r.headers().get("warning").is_some(), "a Warning header names the dropped field");
}

async fn bad_input_is_rejected_and_nothing_changes(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let http = reqwest::Client::new();
    let pods_url = format!("{}/api/v1/namespaces/default/pods", c.url());
    let post = |body: Vec<u8>, ct: &'static str| {
        let http = http.clone();
        let url = pods_url.clone();
        async move {
            let r = http.post(url).header("content-type", ct).body(body).send().await.expect("post");
            let code = r.status().as_u16();
            let status: Value = r.json().await.expect("a Status body");
            assert_eq!(status["kind"], "Status");
            (code, status["message"].as_str().unwrap_or_default().to_owned())
        }
    };
    let (code, msg) = post(b"{\"apiVersion\": \"v1\", \"kind\": ".to_vec(), "application/json").await;
    assert_eq!(code, 400);
    assert!(msg.contains("not valid JSON"), "{msg}");
    let (code, msg) = post(b"metadata: [unclosed\n".to_vec(), "application/yaml").await;
    assert_eq!(code, 400);
    assert!(msg.contains("not valid YAML"), "{msg}");
    let (code, msg) =
        post(br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"}}"#.to_vec(), "application/json")
            .await;
    assert_eq!(code, 400);
    assert!(msg.contains("does not match the expected"), "{msg}");
    let (code, _) = post(vec![b' '; 3 * 1024 * 1024 + 10], "application/json").await;
    assert_eq!(code, 413);
    let (code, _) = post(br#"{"spec": {"containers": 7}}"#.to_vec(), "application/json").await;
    assert_eq!(code, 400);
    let r = http.get(format!("{}/api/v1/namespaces/default/widgets", c.url())).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 404);
    let r = http.get(format!("{pods_url}?labelSelector=a%20in%20(")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 400);
    let r = http.get(format!("{pods_url}?fieldSelector=spec.colour%3Dred")).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .post(format!("{}/api/v1/namespaces/nowhere/pods", c.url()))
        .json(&pod("x", json!({})))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 404);
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    assert!(pods.list(&ListParams::default()).await.expect("list").items.is_empty(), "nothing was stored");
}

async fn label_and_field_selectors(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    for (name, labels) in [
        ("a", json!({"app": "web", "env": "prod"})),
        ("b", json!({"app": "web", "env": "dev"})),
        ("c", json!({"app": "db"})),
    ] {
        pods.create(&PostParams::default(), &pod(name, labels)).await.expect("create");
    }
    let names = |list: kube::core::ObjectList<Pod>| {
        let mut n: Vec<String> = list.items.into_iter().filter_map(|p| p.metadata.name).collect();
        n.sort();
        n
    };
    for (selector, expected) in [
        ("app=web", vec!["a", "b"]),
        ("app!=web", vec!["c"]),
        ("env in (prod,staging)", vec!["a"]),
        ("env notin (prod)", vec!["b", "c"]),
        ("env", vec!["a", "b"]),
        ("!env", vec!["c"]),
        ("app=web,env=dev", vec!["b"]),
    ] {
        // A consistent list (no resourceVersion) reads storage and sees every create.
        let lp = ListParams::default().labels(selector);
        assert_eq!(names(pods.list(&lp).await.expect("list")), expected, "{selector}");
        // resourceVersion=0 is served by the watch cache, which may trail by a moment.
        let cached = ListParams::default().labels(selector).match_any();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = names(pods.list(&cached).await.expect("list"));
            if got == expected {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{selector} from the cache: {got:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    pods.patch("a", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running"}})))
        .await
        .expect("patch");
    let http = reqwest::Client::new();
    http.post(format!("{}/api/v1/namespaces/default/pods/b/binding", c.url()))
        .json(&json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "b"}, "target": {"kind": "Node", "name": "n1"}}))
        .send()
        .await
        .expect("bind");
    for (selector, expected) in [
        ("metadata.name=c", vec!["c"]),
        ("metadata.name!=c", vec!["a", "b"]),
        ("spec.nodeName=n1", vec!["b"]),
        ("spec.nodeName=", vec!["a", "c"]),
        ("status.phase=Pending", vec!["a", "b", "c"]),
        ("spec.schedulerName=default-scheduler,metadata.namespace=default", vec!["a", "b", "c"]),
    ] {
        assert_eq!(
            names(pods.list(&ListParams::default().fields(selector)).await.expect("list")),
            expected,
            "{selector}"
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let cached = names(pods.list(&ListParams::default().fields(selector).match_any()).await.expect("list"));
            if cached == expected {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{selector} from the cache: {cached:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The main resource cannot write status: the phase stayed Pending above.
    let all = Api::<Pod>::all(c.client.clone()).list(&ListParams::default()).await.expect("all namespaces");
    assert_eq!(all.items.len(), 3);
}

async fn pagination_with_continue(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    for i in 0..25 {
        let cm: ConfigMap = serde_json::from_value(
            json!({"metadata": {"name": format!("cm-{i:02}"), "labels": {"even": (i % 2 == 0).to_string()}}}),
        )
        .expect("cm");
        cms.create(&PostParams::default(), &cm).await.expect("create");
    }
    for (selector, expected) in [("", 25), ("even=true", 13)] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut lp = ListParams::default().limit(4).labels(selector);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            let page = cms.list(&lp).await.expect("page");
            pages += 1;
            assert!(page.items.len() <= 4);
            // Objects created after the first page are not seen: pages are one snapshot.
            if pages == 1 {
                let late: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": format!("late{selector}").replace(['=', ' '], "")}}),
                )
                .expect("cm");
                // It must land, or the check below proves nothing about snapshots.
                cms.create(&PostParams::default(), &late).await.expect("the create after the first page");
            }
            seen.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
            match page.metadata.continue_ {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        assert_eq!(seen.len(), expected, "{selector}: {seen:?}");
        let mut sorted = seen.clone();
        sorted.sort();
        assert_eq!(seen, sorted, "pages come in key order");
    }
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/api/v1/namespaces/default/configmaps?limit=2&continue=garbage", c.url()))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 400);
}

async fn kube_watcher_sees_every_change(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("before", json!({}))).await.expect("create");
    let stream = watcher(pods.clone(), watcher::Config::default()).boxed();
    let writer = pods.clone();
    // The writes start once the watcher has its initial state (no guessing with a sleep).
    let (listed, initial_done) = tokio::sync::oneshot::channel::<()>();
    let mut listed = Some(listed);
    tokio::spawn(async move {
        initial_done.await.expect("the watcher listed");
        writer.create(&PostParams::default(), &pod("after", json!({}))).await.expect("create");
        writer
            .patch("after", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})))
            .await
            .expect("patch");
        writer.delete("before", &DeleteParams::default()).await.expect("delete");
    });
    let mut seen = Vec::new();
    let mut stream = stream;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.len() < 4 {
        let ev = tokio::time::timeout_at(deadline, stream.try_next()).await.expect("events in time").expect("watch ok");
        match ev {
            Some(watcher::Event::InitApply(p)) => seen.push(format!("init {}", p.metadata.name.unwrap_or_default())),
            Some(watcher::Event::Apply(p)) => seen.push(format!(
                "apply {} {}",
                p.metadata.name.unwrap_or_default(),
                p.metadata.labels.unwrap_or_default().len()
            )),
            Some(watcher::Event::Delete(p)) => seen.push(format!("delete {}", p.metadata.name.unwrap_or_default())),
            Some(watcher::Event::InitDone) => {
                if let Some(tx) = listed.take() {
                    let _ = tx.send(());
                }
            }
            _ => {}
        }
    }
    assert_eq!(seen, vec!["init before", "apply after 0", "apply after 1", "delete before"]);
}

async fn watch_with_selectors_sees_objects_leave_and_enter(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let created = pods.create(&PostParams::default(), &pod("p", json!({"app": "web"}))).await.expect("create");
    let rv = created.metadata.resource_version.expect("rv");
    let mut stream = pods.watch(&WatchParams::default().labels("app=web"), &rv).await.expect("watch").boxed();
    pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})))
        .await
        .expect("relabel");
    pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"n": "1"}}})))
        .await
        .expect("invisible");
    pods.patch("p", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})))
        .await
        .expect("back");
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open");
        match ev {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            _ => {}
        }
    }
    assert_eq!(kinds, vec!["DELETED", "ADDED"]);

    // A kubelet-style watch on one node sees only its pods.
    let mut node = pods.watch(&WatchParams::default().fields("spec.nodeName=n2"), "0").await.expect("watch").boxed();
    pods.create(&PostParams::default(), &pod("elsewhere", json!({}))).await.expect("create");
    reqwest::Client::new()
        .post(format!("{}/api/v1/namespaces/default/pods/p/binding", c.url()))
        .json(&json!({"target": {"kind": "Node", "name": "n2"}, "metadata": {"name": "p"}}))
        .send()
        .await
        .expect("bind");
    let ev = tokio::time::timeout(Duration::from_secs(5), node.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open");
    match ev {
        WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some("p")),
        other => panic!("expected the bound pod to be ADDED, got {other:?}"),
    }
}

async fn watch_from_a_too_old_version_gets_410_expired(backend: Backend, test: &str) {
    let Some(c) = in_process(backend, test, |cfg| cfg.watch_cache_size = 5).await else { return };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let first = cms
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "a"}})).expect("cm"))
        .await
        .expect("create");
    for i in 0..10 {
        cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"i": i.to_string()}})))
            .await
            .expect("patch");
    }
    let rv = first.metadata.resource_version.expect("rv");
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}", c.url()))
        .send()
        .await
        .expect("watch");
    assert_eq!(r.status().as_u16(), 200, "the error comes as an event, not as the HTTP status");
    let text = r.text().await.expect("body");
    let event: Value = serde_json::from_str(text.lines().next().expect("one line")).expect("json");
    assert_eq!(event["type"], "ERROR");
    assert_eq!(event["object"]["code"], 410);
    assert_eq!(event["object"]["reason"], "Expired");
    assert!(event["object"]["message"].as_str().is_some_and(|m| m.contains("too old resource version")));
}

async fn streaming_list_ends_with_a_bookmark(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    for name in ["a", "b"] {
        cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).expect("cm"))
            .await
            .expect("create");
    }
    let r = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&resourceVersion=&timeoutSeconds=1",
            c.url()
        ))
        .send()
        .await
        .expect("watch");
    let text = r.text().await.expect("body");
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(events.len(), 3, "{text}");
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[1]["type"], "ADDED");
    assert_eq!(events[2]["type"], "BOOKMARK");
    assert_eq!(events[2]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"], "true");
    assert_eq!(events[2]["object"]["kind"], "ConfigMap");
    assert!(events[2]["object"]["metadata"]["resourceVersion"].as_str().is_some_and(|rv| !rv.is_empty()));
}

async fn status_and_scale_subresources(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    deploys.create(&PostParams::default(), &deployment("web", 2)).await.expect("create");
    // /status changes status only.
    let d = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 2, "readyReplicas": 1}, "spec": {"replicas": 9}})),
        )
        .await
        .expect("status");
    assert_eq!(d.status.as_ref().and_then(|s| s.ready_replicas), Some(1));
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(2), "spec untouched by /status");
    assert_eq!(d.metadata.generation, Some(1));
    // The main resource ignores status.
    let d = deploys
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"readyReplicas": 7}})))
        .await
        .expect("patch");
    assert_eq!(d.status.as_ref().and_then(|s| s.ready_replicas), Some(1));

    let scale = deploys.get_scale("web").await.expect("scale");
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(scale.status.as_ref().and_then(|s| s.selector.as_deref()), Some("app=web"));
    let scaled = deploys
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
        .await
        .expect("patch scale");
    assert_eq!(scaled.spec.as_ref().and_then(|s| s.replicas), Some(5));
    let d = deploys.get("web").await.expect("get");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(5));
    assert_eq!(d.metadata.generation, Some(2));
    let mut put = scaled.clone();
    put.spec.as_mut().expect("spec").replicas = Some(1);
    deploys.replace_scale("web", &PostParams::default(), &put).await.expect("put scale");
    assert_eq!(deploys.get("web").await.expect("get").spec.and_then(|s| s.replicas), Some(1));
    let (code, _, _) = status_of(
        deploys
            .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": -1}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 422);
}

async fn binding_assigns_a_node_once(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p", json!({}))).await.expect("create");
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/namespaces/default/pods/p/binding", c.url());
    let binding = |node: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let r = http.post(&url).json(&binding("n1")).send().await.expect("bind");
    assert_eq!(r.status().as_u16(), 201);
    let p = pods.get("p").await.expect("get");
    assert_eq!(p.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("n1"));
    let conditions = p.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(conditions.iter().any(|c| c.type_ == "PodScheduled" && c.status == "True"));
    let r = http.post(&url).json(&binding("n2")).send().await.expect("bind again");
    assert_eq!(r.status().as_u16(), 409);
    let body: Value = r.json().await.expect("status");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("already assigned to node \"n1\"")), "{body}");
}

async fn graceful_pod_deletion(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("unbound", json!({}))).await.expect("create");
    pods.delete("unbound", &DeleteParams::default()).await.expect("delete");
    assert_eq!(status_of(pods.get("unbound").await.unwrap_err()).0, 404, "an unbound pod goes at once");

    pods.create(&PostParams::default(), &pod("bound", json!({}))).await.expect("create");
    reqwest::Client::new()
        .post(format!("{}/api/v1/namespaces/default/pods/bound/binding", c.url()))
        .json(&json!({"metadata": {"name": "bound"}, "target": {"kind": "Node", "name": "n1"}}))
        .send()
        .await
        .expect("bind");
    pods.delete("bound", &DeleteParams::default()).await.expect("delete");
    let p = pods.get("bound").await.expect("still there until the kubelet confirms");
    assert!(p.metadata.deletion_timestamp.is_some());
    assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    // The kubelet confirms with a zero grace period.
    pods.delete("bound", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await.expect("confirm");
    assert_eq!(status_of(pods.get("bound").await.unwrap_err()).0, 404);

    // Finalizers hold an object until they are removed.
    let mut held = pod("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    pods.create(&PostParams::default(), &held).await.expect("create");
    pods.delete("held", &DeleteParams::default()).await.expect("delete");
    assert!(pods.get("held").await.expect("held").metadata.deletion_timestamp.is_some());
    pods.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("release");
    assert_eq!(status_of(pods.get("held").await.unwrap_err()).0, 404);
}

async fn namespace_deletion_deletes_its_content(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let namespaces: Api<Namespace> = Api::all(c.client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns");
    let created = namespaces.create(&PostParams::default(), &ns).await.expect("create");
    assert_eq!(created.status.and_then(|s| s.phase).as_deref(), Some("Active"));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "team");
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "team");
    pods.create(&PostParams::default(), &pod("p", json!({}))).await.expect("pod");
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "c"}})).expect("cm"))
        .await
        .expect("cm");
    namespaces.delete("team", &DeleteParams::default()).await.expect("delete");
    let (code, _, message) = status_of(pods.create(&PostParams::default(), &pod("q", json!({}))).await.unwrap_err());
    assert!(code == 403 || code == 404, "no new content in a terminating namespace: {code} {message}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match namespaces.get("team").await {
            Err(kube::Error::Api(s)) if s.code == 404 => break,
            Ok(ns) => assert_eq!(ns.status.and_then(|s| s.phase).as_deref(), Some("Terminating")),
            Err(e) => panic!("{e}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "namespace was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(Api::<Pod>::all(c.client.clone()).list(&ListParams::default()).await.expect("list").items.is_empty());
    assert!(Api::<ConfigMap>::all(c.client.clone()).list(&ListParams::default()).await.expect("list").items.is_empty());
}

async fn deletecollection_and_generate_name(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    for i in 0..4 {
        let mut p = pod("", json!({"batch": if i < 3 { "x" } else { "y" }}));
        p.metadata.name = None;
        p.metadata.generate_name = Some("job-".into());
        let created = pods.create(&PostParams::default(), &p).await.expect("create");
        let name = created.metadata.name.expect("name");
        assert!(name.starts_with("job-") && name.len() == 9, "{name}");
    }
    pods.delete_collection(&DeleteParams::default(), &ListParams::default().labels("batch=x"))
        .await
        .expect("deletecollection");
    let left = pods.list(&ListParams::default()).await.expect("list");
    assert_eq!(left.items.len(), 1);
    assert_eq!(left.items[0].metadata.labels.as_ref().and_then(|l| l.get("batch")).map(String::as_str), Some("y"));
}

async fn events_served_in_both_groups(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let http = reqwest::Client::new();
    let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default"}, "reason": "Started", "message": "started", "type": "Normal"});
    let r = http.post(format!("{}/api/v1/namespaces/default/events", c.url())).json(&core).send().await.expect("post");
    assert_eq!(r.status().as_u16(), 201);
    let v1: Value = http
        .get(format!("{}/apis/events.k8s.io/v1/namespaces/default/events/e1", c.url()))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
    assert_eq!(v1["regarding"]["name"], "web");
    assert_eq!(v1["note"], "started");
    let list: Value = http
        .get(format!("{}/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dweb", c.url()))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
}

async fn metrics_count_requests(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p", json!({}))).await.expect("create");
    let _ = pods.get("missing").await;
    let _ = pods.patch("p", &PatchParams::apply("m"), &Patch::Apply(pod("p", json!({"a": "b"})))).await;
    // Upstream's names and full label sets (k8s.io/apiserver/pkg/endpoints/metrics:
    // InstrumentRouteFunc reports the route's HTTP verb, cleanVerb turns an apply PATCH into
    // APPLY, CleanScope calls a create "resource"; k8s.io/apiserver/pkg/storage/etcd3/metrics:
    // etcd_request_duration_seconds by operation and type), which dashboards select on.
    let needles = [
        r#"apiserver_request_total{verb="POST",dry_run="",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver",code="201"} 1"#,
        r#"apiserver_request_total{verb="GET",dry_run="",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver",code="404"} 1"#,
        r#"apiserver_request_total{verb="APPLY",dry_run="",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver",code="200"} 1"#,
        r#"verb="POST",dry_run="",group="",version="v1",resource="pods",subresource="",scope="resource",component="apiserver"} "#,
        "apiserver_request_duration_seconds_bucket{le=",
        r#"apiserver_storage_objects{resource="pods"} 1"#,
        r#"etcd_request_duration_seconds_count{operation="create",type="pods"}"#,
    ];
    // apiserver_storage_objects is refreshed every 5 s: poll rather than sleep.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = reqwest::get(format!("{}/metrics", c.url())).await.expect("metrics").text().await.expect("text");
        if needles.iter().all(|n| text.contains(n)) || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for needle in needles {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    for path in ["/healthz", "/livez", "/readyz", "/version"] {
        assert!(reqwest::get(format!("{}{path}", c.url())).await.expect("get").status().is_success(), "{path}");
    }
}

fn storage_watches(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("etcd_request_duration_seconds_count{operation=\"watch\",type=\"pods\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn hundreds_of_node_watchers_share_one_storage_watch(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let metrics =
        || async { reqwest::get(format!("{}/metrics", c.url())).await.expect("metrics").text().await.expect("text") };
    let before = storage_watches(&metrics().await);
    assert!(before > 0, "the caches opened their storage watches");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let mut watches = Vec::new();
    for n in 0..200 {
        let w =
            pods.watch(&WatchParams::default().fields(&format!("spec.nodeName=node-{n}")), "0").await.expect("watch");
        watches.push(w.boxed());
    }
    let http = reqwest::Client::new();
    for n in [7, 123] {
        let name = format!("on-{n}");
        pods.create(&PostParams::default(), &pod(&name, json!({}))).await.expect("create");
        http.post(format!("{}/api/v1/namespaces/default/pods/{name}/binding", c.url()))
            .json(&json!({"metadata": {"name": name}, "target": {"kind": "Node", "name": format!("node-{n}")}}))
            .send()
            .await
            .expect("bind");
    }
    for n in [7, 123] {
        let ev = tokio::time::timeout(Duration::from_secs(5), watches[n].try_next())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open");
        match ev {
            WatchEvent::Added(p) => assert_eq!(p.metadata.name.as_deref(), Some(format!("on-{n}").as_str())),
            other => panic!("node-{n} expected its pod, got {other:?}"),
        }
    }
    let quiet = tokio::time::timeout(Duration::from_millis(300), watches[8].try_next()).await;
    assert!(quiet.is_err(), "node-8 sees nothing of the other nodes' pods");
    let text = metrics().await;
    assert_eq!(storage_watches(&text), before, "client watches do not open storage watches");
    assert!(text.contains(r#"apiserver_registered_watchers{resource="pods"} 200"#), "{text}");
}

async fn tables_for_kubectl_get(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web", json!({"app": "web"}))).await.expect("create");
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    deploys.create(&PostParams::default(), &deployment("api", 3)).await.expect("create");
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        async move {
            http.get(path).header("accept", accept).send().await.expect("get").json::<Value>().await.expect("json")
        }
    };
    let table = get(format!("{}/api/v1/namespaces/default/pods", c.url())).await;
    assert_eq!((table["kind"].as_str(), table["apiVersion"].as_str()), (Some("Table"), Some("meta.k8s.io/v1")));
    let names: Vec<&str> =
        table["columnDefinitions"].as_array().expect("columns").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(&names[..5], &["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(table["columnDefinitions"][5]["priority"], 1, "IP is a -o wide column");
    let row = &table["rows"][0];
    assert_eq!(row["cells"][0], "web");
    assert_eq!(row["cells"][1], "0/1");
    assert_eq!(row["cells"][2], "Pending");
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["metadata"]["name"], "web");
    assert!(table["metadata"]["resourceVersion"].as_str().is_some());

    let one = get(format!("{}/apis/apps/v1/namespaces/default/deployments/api", c.url())).await;
    assert_eq!(one["rows"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["rows"][0]["cells"][1], "0/3", "READY of a deployment");
    let full = get(format!("{}/api/v1/namespaces/default/pods?includeObject=Object", c.url())).await;
    assert_eq!(full["rows"][0]["object"]["kind"], "Pod");

    // A kind added as one registry file (docs/registry.md): served, printed with its columns.
    let template = json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "tpl"},
        "template": {"metadata": {"labels": {"tier": "web"}}, "spec": {"containers": [{"name": "c", "image": "web:1"}]}}});
    let r = http.post(format!("{}/api/v1/namespaces/default/podtemplates", c.url())).json(&template).send().await;
    assert_eq!(r.expect("create").status().as_u16(), 201);
    let templates = get(format!("{}/api/v1/namespaces/default/podtemplates", c.url())).await;
    let names: Vec<&str> =
        templates["columnDefinitions"].as_array().expect("columns").iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["Name", "Containers", "Images", "Pod Labels"]);
    assert_eq!(templates["rows"][0]["cells"], json!(["tpl", "c", "web:1", "tier=web"]));

    // A watch sends one-row tables, the columns only with the first event.
    let r = http
        .get(format!("{}/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=1", c.url()))
        .header("accept", accept)
        .send()
        .await
        .expect("watch");
    pods.create(&PostParams::default(), &pod("second", json!({}))).await.expect("create");
    let text = r.text().await.expect("body");
    let events: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert!(events.len() >= 2, "{text}");
    assert_eq!(events[0]["object"]["kind"], "Table");
    assert!(!events[0]["object"]["columnDefinitions"].as_array().expect("defs").is_empty());
    assert!(events[1]["object"]["columnDefinitions"].as_array().expect("defs").is_empty());
    assert_eq!(events[1]["object"]["rows"].as_array().map(Vec::len), Some(1));
}

async fn aggregated_discovery_in_one_round_trip(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let http = reqwest::Client::new();
    let r = http.get(format!("{}/apis", c.url())).header("accept", accept).send().await.expect("get");
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(ct.contains("as=APIGroupDiscoveryList") && ct.contains("v=v2"), "{ct}");
    let list: Value = r.json().await.expect("json");
    assert_eq!(list["kind"], "APIGroupDiscoveryList");
    let apps =
        list["items"].as_array().expect("items").iter().find(|g| g["metadata"]["name"] == "apps").expect("apps group");
    let deployments = apps["versions"][0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["resource"] == "deployments")
        .expect("deployments");
    assert_eq!(deployments["scope"], "Namespaced");
    assert_eq!(deployments["shortNames"][0], "deploy");
    let scale = deployments["subresources"]
        .as_array()
        .expect("subresources")
        .iter()
        .find(|s| s["subresource"] == "scale")
        .expect("scale");
    assert_eq!(scale["responseKind"]["kind"], "Scale");
    assert_eq!(scale["responseKind"]["group"], "autoscaling");
    let core: Value = http
        .get(format!("{}/api", c.url()))
        .header("accept", accept)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(core["items"][0]["metadata"]["name"], "");
    assert!(
        core["items"][0]["versions"][0]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .any(|r| r["resource"] == "pods")
    );
    // Plain JSON clients still get the legacy documents.
    let legacy: Value = http.get(format!("{}/apis", c.url())).send().await.expect("get").json().await.expect("json");
    assert_eq!(legacy["kind"], "APIGroupList");
}

async fn server_side_apply_tracks_owners_and_conflicts(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let alice = PatchParams::apply("alice");
    let config = |image: &str, replicas: i64| {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"team": "a"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}},
            },
        })
    };
    // Apply creates, with alice owning exactly what she applied.
    let created = deploys.patch("web", &alice, &Patch::Apply(config("web:1", 3))).await.expect("apply creates");
    assert_eq!(created.metadata.generation, Some(1));
    let managed = created.metadata.managed_fields.clone().unwrap_or_default();
    assert_eq!(managed.len(), 1);
    assert_eq!((managed[0].manager.as_deref(), managed[0].operation.as_deref()), (Some("alice"), Some("Apply")));
    let fields = serde_json::to_value(&managed[0].fields_v1).unwrap();
    assert_eq!(fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"]["f:image"], json!({}));
    assert!(fields["f:spec"].get("f:revisionHistoryLimit").is_none(), "defaults are nobody's: {fields}");

    // Bob changing the image alice owns is a conflict, named in upstream's words: an Apply
    // manager by name alone (printManager, apiserver fieldmanager/internal/conflict.go).
    let bob = PatchParams::apply("bob");
    let (code, reason, message) =
        status_of(deploys.patch("web", &bob, &Patch::Apply(config("web:2", 3))).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        message,
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.template.spec.containers[name=\"c\"].image"
    );
    assert_eq!(
        deploys.get("web").await.unwrap().spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(),
        Some("web:1")
    );
    // Forced, bob takes the image over; alice keeps the rest.
    let image_only = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "web:2"}]}}},
    });
    let forced = deploys.patch("web", &bob.clone().force(), &Patch::Apply(image_only)).await.expect("force");
    assert_eq!(forced.spec.unwrap().template.spec.unwrap().containers[0].image.as_deref(), Some("web:2"));

    // A plain update by a named manager takes the fields it changes.
    let scaler = PatchParams { field_manager: Some("scaler".into()), ..Default::default() };
    deploys.patch("web", &scaler, &Patch::Merge(json!({"spec": {"replicas": 7}}))).await.expect("merge");
    let (code, _, message) =
        status_of(deploys.patch("web", &alice, &Patch::Apply(config("web:1", 3))).await.unwrap_err());
    assert_eq!(code, 409);
    // Two managers now own what alice would change: bob the image, the scaler the replicas.
    // getConflictMessage: managers sorted, each "conflicts with M:" then "- .path" lines; an
    // Update manager carries its API version and the time of its change.
    assert!(message.starts_with("Apply failed with 2 conflicts: conflicts with \"bob\":\n- .spec.template.spec.containers[name=\"c\"].image\nconflicts with \"scaler\" using apps/v1 at "), "{message}");
    assert!(message.ends_with(":\n- .spec.replicas"), "{message}");

    // Alice no longer applying her label removes it; the replicas the scaler owns stay.
    let mut smaller = config("web:2", 3);
    smaller["metadata"].as_object_mut().unwrap().remove("labels");
    smaller["spec"].as_object_mut().unwrap().remove("replicas");
    let applied = deploys.patch("web", &alice, &Patch::Apply(smaller)).await.expect("apply without the label");
    assert!(!applied.metadata.labels.unwrap_or_default().contains_key("team"));
    assert_eq!(applied.spec.unwrap().replicas, Some(7));

    // Bad applies: no manager, a stale resourceVersion, an unknown field under Strict.
    let raw = reqwest::Client::new();
    let url = format!("{}/apis/apps/v1/namespaces/default/deployments/web", c.url());
    let no_manager = raw
        .patch(&url)
        .header("Content-Type", "application/apply-patch+yaml")
        .body("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(no_manager.status().as_u16(), 422);
    let mut stale = config("web:2", 3);
    stale["metadata"]["resourceVersion"] = json!("1");
    let (code, _, _) = status_of(deploys.patch("web", &bob, &Patch::Apply(stale)).await.unwrap_err());
    assert_eq!(code, 409);
    let mut unknown = config("web:2", 3);
    unknown["spec"]["colour"] = json!("red");
    let strict =
        PatchParams { field_validation: Some(kube::api::ValidationDirective::Strict), ..PatchParams::apply("bob") };
    let (code, _, message) = status_of(deploys.patch("web", &strict, &Patch::Apply(unknown)).await.unwrap_err());
    assert_eq!(code, 400);
    assert!(message.contains("unknown field \"spec.colour\""), "{message}");
    assert_eq!(deploys.get("web").await.unwrap().spec.unwrap().replicas, Some(7), "nothing changed");
}

fn config_map(name: &str, data: Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": data})).expect("cm")
}

async fn exact_lists_dry_runs_and_delete_preconditions(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let first = cms.create(&PostParams::default(), &config_map("a", json!({"v": "1"}))).await.expect("create");
    let rv1 = first.metadata.resource_version.clone().expect("rv");
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))).await.expect("patch");
    cms.create(&PostParams::default(), &config_map("b", json!({}))).await.expect("create b");

    // resourceVersionMatch=Exact reads the past; NotOlderThan (and no match) the present.
    let exact =
        cms.list(&ListParams::default().at(&rv1).matching(kube::api::VersionMatch::Exact)).await.expect("exact list");
    assert_eq!(exact.metadata.resource_version.as_deref(), Some(rv1.as_str()), "the list is at the version asked");
    let names: Vec<_> = exact.items.iter().map(|c| (c.metadata.name.clone().unwrap(), c.data.clone())).collect();
    assert_eq!(names.len(), 1, "b did not exist yet: {names:?}");
    assert_eq!(names[0].1.as_ref().and_then(|d| d.get("v")).map(String::as_str), Some("1"));
    let now = cms
        .list(&ListParams::default().at(&rv1).matching(kube::api::VersionMatch::NotOlderThan))
        .await
        .expect("not older than");
    assert_eq!(now.items.len(), 2);
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/namespaces/default/configmaps", c.url());
    for (query, why) in [
        ("resourceVersionMatch=Exact", "resourceVersionMatch is forbidden unless resourceVersion is provided"),
        ("resourceVersion=1&resourceVersionMatch=Newest", "invalid resourceVersionMatch"),
    ] {
        let r = http.get(format!("{url}?{query}")).send().await.expect("list");
        assert_eq!(r.status().as_u16(), 400, "{query}");
        assert!(r.text().await.unwrap().contains(why), "{query}");
    }

    // dryRun=All answers as the real write would, and stores nothing.
    let dry = PostParams { dry_run: true, ..Default::default() };
    let would = cms.create(&dry, &config_map("c", json!({"k": "v"}))).await.expect("dry-run create");
    assert_eq!(would.metadata.name.as_deref(), Some("c"));
    assert!(would.metadata.creation_timestamp.is_some(), "defaulted like a real create");
    assert!(cms.get_opt("c").await.unwrap().is_none(), "a dry-run create stores nothing");
    let before = cms.get("a").await.unwrap();
    let patched = cms
        .patch("a", &PatchParams { dry_run: true, ..Default::default() }, &Patch::Merge(json!({"data": {"v": "dry"}})))
        .await
        .expect("dry-run patch");
    assert_eq!(patched.data.as_ref().and_then(|d| d.get("v")).map(String::as_str), Some("dry"));
    let mut replaced = before.clone();
    replaced.data = Some([("v".to_owned(), "replaced".to_owned())].into());
    cms.replace("a", &dry, &replaced).await.expect("dry-run update");
    cms.delete("a", &DeleteParams { dry_run: true, ..Default::default() }).await.expect("dry-run delete");
    let after = cms.get("a").await.unwrap();
    assert_eq!(after.metadata.resource_version, before.metadata.resource_version, "nothing was written");
    assert_eq!(after.data, before.data);
    // An unknown value is refused, not ignored (upstream's ValidateDryRun).
    let r = http.post(format!("{url}?dryRun=Some")).json(&config_map("d", json!({}))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["message"],
        r#"CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Some"}: supported values: "All""#
    );
    assert_eq!(
        body["details"],
        json!({"group": "meta.k8s.io", "kind": "CreateOptions", "causes": [
        {"reason": "FieldValueNotSupported", "message": r#"Unsupported value: []string{"Some"}: supported values: "All""#, "field": "dryRun"}]})
    );
    assert!(cms.get_opt("d").await.unwrap().is_none());
    // The same in a DeleteOptions body, and the object stays.
    let r = http
        .delete(format!("{url}/a"))
        .json(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All", "Some"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["message"],
        r#"DeleteOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"All", "Some"}: supported values: "All""#
    );
    assert!(cms.get_opt("a").await.unwrap().is_some());

    // Delete preconditions: a wrong uid or resourceVersion is a 409 in upstream's words
    // (apiserver/pkg/storage Preconditions.Check) and the object stays.
    let rv = after.metadata.resource_version.clone().unwrap();
    let uid = after.metadata.uid.clone().unwrap();
    let wrong_uid = DeleteParams::default().preconditions(kube::api::Preconditions {
        uid: Some("00000000-0000-0000-0000-000000000000".into()),
        resource_version: None,
    });
    let (code, reason, message) = status_of(cms.delete("a", &wrong_uid).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        message,
        format!(
            "Operation cannot be fulfilled on configmaps \"a\": Precondition failed: UID in precondition: \
             00000000-0000-0000-0000-000000000000, UID in object meta: {uid}"
        )
    );
    let wrong_rv = DeleteParams::default()
        .preconditions(kube::api::Preconditions { uid: None, resource_version: Some("1".into()) });
    let (code, _, message) = status_of(cms.delete("a", &wrong_rv).await.unwrap_err());
    assert_eq!(code, 409);
    assert_eq!(
        message,
        format!(
            "Operation cannot be fulfilled on configmaps \"a\": Precondition failed: ResourceVersion in \
             precondition: 1, ResourceVersion in object meta: {rv}"
        )
    );
    assert!(cms.get_opt("a").await.unwrap().is_some(), "a failed precondition deletes nothing");
    let right =
        DeleteParams::default().preconditions(kube::api::Preconditions { uid: Some(uid), resource_version: Some(rv) });
    cms.delete("a", &right).await.expect("matching preconditions delete");
    assert!(cms.get_opt("a").await.unwrap().is_none());
}

/// Compaction is global to an etcd shared by concurrent tests, so this one runs on the
/// embedded store only, compacting every 200 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_at_a_compacted_revision_are_410_as_upstream() {
    let c = in_process(Backend::Embedded, "compacted_lists", |cfg| {
        cfg.compaction_interval = Duration::from_millis(200);
    })
    .await
    .expect("embedded");
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    for name in ["a", "b", "c"] {
        cms.create(&PostParams::default(), &config_map(name, json!({}))).await.expect("create");
    }
    let first = cms.list(&ListParams::default().limit(1)).await.expect("first page");
    let token = first.metadata.continue_.clone().expect("a continue token");
    let old_rv = first.metadata.resource_version.clone().expect("rv");
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/namespaces/default/configmaps", c.url());
    // Writes move the revision on; compaction then passes the token's revision.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let expired: Value = loop {
        cms.patch("c", &PatchParams::default(), &Patch::Merge(json!({"data": {"t": "x"}}))).await.expect("patch");
        let r = http.get(format!("{url}?limit=1&continue={token}")).send().await.expect("list");
        if r.status().as_u16() == 410 {
            break r.json().await.expect("status");
        }
        assert_eq!(r.status().as_u16(), 200);
        assert!(tokio::time::Instant::now() < deadline, "the token's revision was never compacted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // storage/etcd3 interpretListError + handleCompactedErrorForPaging.
    assert_eq!(expired["reason"], "Expired");
    assert!(expired["message"].as_str().unwrap().starts_with(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list \
         without the continue parameter, or use the continue token in this response"
    ));
    let fresh = expired["metadata"]["continue"].as_str().expect("a token that goes on at the latest revision");
    let rest: Value = http.get(format!("{url}?continue={fresh}")).send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> =
        rest["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["b", "c"], "the remainder, after the first page's key");
    assert_eq!(rest["items"][1]["data"]["t"], "x", "read at the latest revision");

    let r = http.get(format!("{url}?resourceVersion={old_rv}&resourceVersionMatch=Exact")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 410);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "The resourceVersion for the provided list is too old.");
    assert!(body["metadata"].as_object().unwrap().is_empty());
}

async fn creates_answer_with_upstreams_zero_values(backend: Backend, test: &str) {
    let Some(c) = cluster(backend, test).await else { return };
    let http = reqwest::Client::new();
    let template = json!({"metadata": {"labels": {"app": "z"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    // What upstream's Go types encode for a new object's status (fields without
    // omitempty, empty structs); a status the client sends is not taken.
    let cases = [
        (
            "/api/v1/namespaces/default/services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "z"},
            "spec": {"ports": [{"port": 80}]}, "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}}),
            json!({"loadBalancer": {}}),
        ),
        (
            "/apis/apps/v1/namespaces/default/deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "z"}, "spec": {"selector": {"matchLabels": {"app": "z"}}, "template": template},
            "status": {"replicas": 7}}),
            json!({}),
        ),
        (
            "/apis/apps/v1/namespaces/default/replicasets",
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "z"}, "spec": {"selector": {"matchLabels": {"app": "z"}}, "template": template}}),
            json!({"replicas": 0}),
        ),
        (
            "/api/v1/namespaces/default/replicationcontrollers",
            json!({"apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "z"}, "spec": {"template": template}}),
            json!({"replicas": 0}),
        ),
    ];
    for (path, body, status) in cases {
        let r = http.post(format!("{}{path}", c.url())).json(&body).send().await.expect("create");
        assert_eq!(r.status().as_u16(), 201, "{path}");
        let created: Value = r.json().await.expect("json");
        assert_eq!(created["status"], status, "{path}: the create's answer");
        let read: Value = http.get(format!("{}{path}/z", c.url())).send().await.unwrap().json().await.unwrap();
        assert_eq!(read["status"], status, "{path}: stored so");
    }
}
