//! Crash safety: writes the apiserver acknowledged survive `kill -9` of the apiserver, on
//! the embedded store and on etcd.

use std::sync::Arc;
use std::time::Duration;

use e2e::{apiserver_process, etcd_endpoints};
use parking_lot::Mutex;
use serde_json::{Value, json};

async fn writes_survive_kill_9(args: Vec<String>, dir: &std::path::Path) {
    let (mut process, url) = apiserver_process(&args, &dir.join("first.log")).await.expect("apiserver");
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::new();
    let mut writers = Vec::new();
    for w in 0..16 {
        let (http, url, acked) = (http.clone(), url.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("cm-{w}-{i}");
                let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}});
                match http.post(format!("{url}/api/v1/namespaces/default/configmaps")).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 201 => acked.lock().push(name),
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    process.kill();
    for w in writers {
        let _ = w.await;
    }
    let acknowledged = acknowledged.lock().clone();
    assert!(acknowledged.len() > 50, "only {} writes before the kill", acknowledged.len());

    let (_process, url) = apiserver_process(&args, &dir.join("second.log")).await.expect("restart");
    let list: Value = http
        .get(format!("{url}/api/v1/namespaces/default/configmaps"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let stored: std::collections::HashSet<&str> =
        list["items"].as_array().expect("items").iter().filter_map(|i| i["metadata"]["name"].as_str()).collect();
    let lost: Vec<_> = acknowledged.iter().filter(|n| !stored.contains(n.as_str())).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        lost.len(),
        acknowledged.len(),
        &lost[..lost.len().min(5)]
    );
    // The store still takes writes.
    let r = http
        .post(format!("{url}/api/v1/namespaces/default/configmaps"))
        .json(&json!({"metadata": {"name": "after-restart"}}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_acknowledged_writes_through_kill_9() {
    let dir = tempfile::tempdir().expect("dir");
    let args = vec!["--data-dir".to_owned(), dir.path().join("data").display().to_string()];
    writes_survive_kill_9(args, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_backend_keeps_acknowledged_writes_through_kill_9() {
    let Some(endpoints) = etcd_endpoints("etcd_backend_keeps_acknowledged_writes_through_kill_9") else { return };
    let dir = tempfile::tempdir().expect("dir");
    let args = vec![
        "--etcd-servers".to_owned(),
        endpoints.join(","),
        "--etcd-prefix".to_owned(),
        format!("/crash-{}", uuid::Uuid::new_v4()),
    ];
    writes_survive_kill_9(args, dir.path()).await;
}
