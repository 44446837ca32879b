//! Component tests of CustomResourceDefinitions: the apiserver in-process, driven by kube-rs
//! (the dynamic API and a runtime watcher, as operators use it) and raw HTTP where a client
//! hides the wire, once on the embedded store and once on etcd.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::{Backend, InProcess, in_process};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};

e2e::both_backends!(
    custom_resources_are_served_validated_pruned_and_defaulted,
    custom_resource_subresources_versions_and_tables,
    deleting_a_definition_deletes_its_objects_and_stops_serving,
    definitions_that_are_not_structural_or_clash_are_refused,
);

const GROUP: &str = "stable.example.com";

fn crontab_crd(plural: &str, kind: &str) -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}")},
        "spec": {
            "group": GROUP, "scope": "Namespaced",
            "names": {"plural": plural, "kind": kind, "shortNames": ["ct"], "categories": ["all"]},
            "versions": [
                {
                    "name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "required": ["cronSpec"], "properties": {
                            "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                            "image": {"type": "string", "maxLength": 64},
                            "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                            "policy": {"type": "string", "enum": ["Allow", "Forbid"], "default": "Allow"},
                        }},
                        "status": {"type": "object", "properties": {
                            "replicas": {"type": "integer"}, "selector": {"type": "string"},
                        }},
                    }}},
                    "subresources": {"status": {}, "scale": {
                        "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector",
                    }},
                    "additionalPrinterColumns": [
                        {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                },
                {
                    "name": "v1beta1", "served": true, "storage": false,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                },
            ],
        },
    }))
    .unwrap()
}

/// Creates a CRD and waits for it to be Established; returns its v1 and v1beta1 resources.
async fn define(c: &InProcess, plural: &str, kind: &str) -> (ApiResource, ApiResource) {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    crds.create(&PostParams::default(), &crontab_crd(plural, kind)).await.expect("create crd");
    wait_for_condition(&crds, &format!("{plural}.{GROUP}"), "Established", "True").await;
    let gvk = |v: &str| GroupVersionKind::gvk(GROUP, v, kind);
    (ApiResource::from_gvk_with_plural(&gvk("v1"), plural), ApiResource::from_gvk_with_plural(&gvk("v1beta1"), plural))
}

async fn wait_for_condition(crds: &Api<CustomResourceDefinition>, name: &str, kind: &str, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let crd = crds.get(name).await.expect("get crd");
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        if conditions.iter().any(|c| c.type_ == kind && c.status == status) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never had {kind}={status}: {conditions:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn crontab(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "CronTab", "metadata": {"name": name}, "spec": spec,
    }))
    .unwrap()
}

fn status_of(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn custom_resources_are_served_validated_pruned_and_defaulted(backend: Backend, test: &str) {
    let Some(c) = in_process(backend, test, |_| {}).await else { return };
    let (v1, _) = define(&c, "crontabs", "CronTab").await;
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "default", &v1);

    // A watcher started before the first object sees it arrive.
    let mut events = watcher(api.clone(), watcher::Config::default()).applied_objects().boxed();

    // Unknown fields are pruned (with a warning, as fieldValidation=Warn does); defaults fill.
    let created = api
        .create(&PostParams::default(), &crontab("a", json!({"cronSpec": "* * * * */5", "extra": 1})))
        .await
        .expect("create");
    assert_eq!(created.data["spec"], json!({"cronSpec": "* * * * */5", "replicas": 1, "policy": "Allow"}));
    assert_eq!(created.metadata.generation, Some(1));
    let seen = tokio::time::timeout(Duration::from_secs(10), events.try_next()).await.expect("watch").expect("event");
    assert_eq!(seen.and_then(|o| o.metadata.name).as_deref(), Some("a"));

    // A violation is a 422 naming each field in upstream's words.
    let bad = crontab("b", json!({"cronSpec": "never", "replicas": 0, "policy": "Maybe", "image": 5}));
    let (code, message) = status_of(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(code, 422);
    for needle in [
        "CronTab \"b\" is invalid",
        "spec.cronSpec: Invalid value: \"never\": spec.cronSpec in body should match",
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        "spec.policy: Unsupported value: \"Maybe\": supported values: \"Allow\", \"Forbid\"",
        "spec.image: Invalid value: \"integer\": spec.image in body must be of type string: \"integer\"",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    let (code, message) = status_of(api.create(&PostParams::default(), &crontab("c", json!({}))).await.unwrap_err());
    assert_eq!((code, message.as_str()), (422, "CronTab \"c\" is invalid: spec.cronSpec: Required value"));

    // Updates are validated too, and patches of every kind but strategic merge apply.
    let (code, _) = status_of(
        api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 11}}))).await.unwrap_err(),
    );
    assert_eq!(code, 422);
    let patched = api
        .patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}})))
        .await
        .expect("merge patch");
    assert_eq!((patched.data["spec"]["replicas"].as_i64(), patched.metadata.generation), (Some(2), Some(2)));
    let json_patch: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/spec/image", "value": "cron:2"}])).unwrap();
    let patched = api.patch("a", &PatchParams::default(), &Patch::Json::<()>(json_patch)).await.expect("json patch");
    assert_eq!(patched.data["spec"]["image"], "cron:2");
    let applied = api
        .patch(
            "d",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({"apiVersion": format!("{GROUP}/v1"), "kind": "CronTab", "metadata": {"name": "d"},
                "spec": {"cronSpec": "0 * * * *"}})),
        )
        .await
        .expect("server-side apply");
    assert_eq!(applied.data["spec"]["replicas"], 1);
    let (code, message) = status_of(
        api.patch("a", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"replicas": 3}}))).await.unwrap_err(),
    );
    assert_eq!(code, 415, "{message}");
    assert!(message.contains("accepted media types include: application/json-patch+json"), "{message}");

    // Served in discovery and OpenAPI without a restart.
    let http = reqwest::Client::new();
    let list: Value = http.get(format!("{}/apis/{GROUP}/v1", c.url())).send().await.unwrap().json().await.unwrap();
    let resource = list["resources"].as_array().unwrap().iter().find(|r| r["name"] == "crontabs").cloned().unwrap();
    assert_eq!(resource["shortNames"], json!(["ct"]));
    assert_eq!(resource["categories"], json!(["all"]));
    assert_eq!(resource["singularName"], "crontab");
    let openapi: Value =
        http.get(format!("{}/openapi/v3/apis/{GROUP}/v1", c.url())).send().await.unwrap().json().await.unwrap();
    let schema = &openapi["components"]["schemas"]["com.example.stable.v1.CronTab"];
    assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], "CronTab");
    assert_eq!(schema["properties"]["spec"]["properties"]["replicas"]["maximum"], 10.0);
    assert!(schema["properties"]["metadata"]["$ref"].as_str().is_some_and(|r| r.ends_with("ObjectMeta")));
}

async fn custom_resource_subresources_versions_and_tables(backend: Backend, test: &str) {
    let Some(c) = in_process(backend, test, |_| {}).await else { return };
    let (v1, v1beta1) = define(&c, "crontabs", "CronTab").await;
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "default", &v1);

    // A status sent on create is dropped; /status writes only the status.
    let mut obj = crontab("a", json!({"cronSpec": "* * * * *"}));
    obj.data["status"] = json!({"replicas": 9});
    let created = api.create(&PostParams::default(), &obj).await.expect("create");
    assert!(created.data.get("status").is_none(), "{:?}", created.data);
    let status = json!({"status": {"replicas": 1, "selector": "app=cron"}});
    let updated = api.patch_status("a", &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
    assert_eq!(updated.data["status"]["replicas"], 1);
    assert_eq!(updated.metadata.generation, Some(1), "a status write is not a new generation");
    let spec_and_status = json!({"spec": {"replicas": 2}, "status": {"replicas": 7}});
    let updated = api.patch("a", &PatchParams::default(), &Patch::Merge(&spec_and_status)).await.expect("patch");
    assert_eq!(
        (updated.data["spec"]["replicas"].as_i64(), updated.data["status"]["replicas"].as_i64()),
        (Some(2), Some(1))
    );

    // The scale subresource reads and writes the CRD's paths (what `kubectl scale` and
    // autoscalers use).
    let scale = api.get_scale("a").await.expect("scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(scale.status.as_ref().map(|s| s.replicas), Some(1));
    assert_eq!(scale.status.and_then(|s| s.selector).as_deref(), Some("app=cron"));
    api.patch_scale("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}})))
        .await
        .expect("scale");
    assert_eq!(api.get("a").await.unwrap().data["spec"]["replicas"], 4);

    // Every served version reads and writes the same objects, each in its own apiVersion.
    let beta: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "default", &v1beta1);
    let read = beta.get("a").await.expect("v1beta1 get");
    assert_eq!(read.types.as_ref().map(|t| t.api_version.as_str()), Some("stable.example.com/v1beta1"));
    let mut via_beta = crontab("b", json!({"cronSpec": "1 * * * *"}));
    via_beta.types.as_mut().unwrap().api_version = format!("{GROUP}/v1beta1");
    beta.create(&PostParams::default(), &via_beta).await.expect("v1beta1 create");
    let names: Vec<String> =
        api.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|o| o.metadata.name).collect();
    assert_eq!(names, vec!["a", "b"]);
    assert_eq!(api.get("b").await.unwrap().types.unwrap().api_version, "stable.example.com/v1");

    // Tables carry the CRD's printer columns.
    let table: Value = reqwest::Client::new()
        .get(format!("{}/apis/{GROUP}/v1/namespaces/default/crontabs", c.url()))
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let columns: Vec<&str> =
        table["columnDefinitions"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(columns, vec!["Name", "Spec", "Replicas", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "a");
    assert_eq!(table["rows"][0]["cells"][1], "* * * * *");
    assert_eq!(table["rows"][0]["cells"][2], 4);
    assert!(table["rows"][0]["cells"][3].as_str().is_some_and(|age| age.ends_with('s')), "{table}");
}

async fn deleting_a_definition_deletes_its_objects_and_stops_serving(backend: Backend, test: &str) {
    let Some(c) = in_process(backend, test, |_| {}).await else { return };
    let (v1, _) = define(&c, "crontabs", "CronTab").await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    for ns in ["default", "kube-public"] {
        let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), ns, &v1);
        for name in ["a", "b"] {
            api.create(&PostParams::default(), &crontab(name, json!({"cronSpec": "* * * * *"}))).await.expect("create");
        }
    }
    // An object with a finalizer of its own holds the definition until it is released.
    let held: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "default", &v1);
    held.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})))
        .await
        .expect("finalizer");

    let name = format!("crontabs.{GROUP}");
    crds.delete(&name, &DeleteParams::default()).await.expect("delete crd");
    wait_for_condition(&crds, &name, "Terminating", "True").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held.list(&ListParams::default()).await.expect("list").items.len() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "objects were not deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left = held.get("a").await.expect("the held object is still there");
    assert!(left.metadata.deletion_timestamp.is_some());
    assert!(crds.get_opt(&name).await.expect("get").is_some(), "the definition waits for its objects");
    held.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("release");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while crds.get_opt(&name).await.expect("get").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the definition was not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = status_of(held.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(code, 404, "no longer served");
    let groups: Value = reqwest::get(format!("{}/apis", c.url())).await.unwrap().json().await.unwrap();
    assert!(!groups.to_string().contains(GROUP), "{groups}");

    // Defined again, it starts empty.
    let (v1, _) = define(&c, "crontabs", "CronTab").await;
    let api: Api<DynamicObject> = Api::all_with(c.client.clone(), &v1);
    assert!(api.list(&ListParams::default()).await.expect("list").items.is_empty());
}

async fn definitions_that_are_not_structural_or_clash_are_refused(backend: Backend, test: &str) {
    let Some(c) = in_process(backend, test, |_| {}).await else { return };
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    let mut bad = serde_json::to_value(crontab_crd("crontabs", "CronTab")).unwrap();
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("type");
    bad["spec"]["versions"][1]["storage"] = json!(true);
    bad["metadata"]["name"] = json!("wrong.example.com");
    let bad: CustomResourceDefinition = serde_json::from_value(bad).unwrap();
    let (code, message) = status_of(crds.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(code, 422);
    for needle in [
        "metadata.name: Invalid value: \"wrong.example.com\": must be spec.names.plural+\".\"+spec.group",
        "spec.versions: Invalid value: [\"v1\",\"v1beta1\"]: must have exactly one version marked as storage version",
        "spec.versions[0].schema.openAPIV3Schema.properties[spec].type: Required value: must not be empty for specified object fields",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }

    // A second definition claiming a kind already taken in its group is not served.
    define(&c, "crontabs", "CronTab").await;
    let mut clash = crontab_crd("crontabz", "CronTab");
    clash.spec.names.short_names = None;
    crds.create(&PostParams::default(), &clash).await.expect("create");
    wait_for_condition(&crds, &format!("crontabz.{GROUP}"), "NamesAccepted", "False").await;
    let crd = crds.get(&format!("crontabz.{GROUP}")).await.unwrap();
    let established = crd.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Established").unwrap();
    assert_eq!(established.status, "False");
    let (code, _) = status_of(
        Api::<DynamicObject>::all_with(
            c.client.clone(),
            &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, "v1", "CronTab"), "crontabz"),
        )
        .list(&ListParams::default())
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 404);
}
