//! Events for what a component does (`SuccessfulCreate`, `ScalingReplicaSet`,
//! `NodeNotReady`, a kubelet's container events, ...), written in the background so a
//! reconcile never waits on them.

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};

/// Writes events as one component.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    host: Option<String>,
}

impl Recorder {
    /// A recorder for `component` (`replicaset-controller`, ...).
    pub fn new(client: kube::Client, component: &str) -> Recorder {
        Recorder { client, component: component.to_owned(), host: None }
    }

    /// The same, naming the node it runs on in `source.host` (as a kubelet's events do).
    pub fn on_host(mut self, host: &str) -> Recorder {
        self.host = Some(host.to_owned());
        self
    }

    /// Records a `Normal` (or `Warning`) event about `obj`.
    pub fn record<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, message: String) {
        let namespace = obj.namespace().unwrap_or_else(|| "default".to_owned());
        let name = obj.name_any();
        let now = jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: obj.object_ref(&()),
            reason: Some(reason.to_owned()),
            message: Some(message),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some(self.component.clone()),
                host: self.host.clone(),
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: self.host.clone(),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            count: Some(1),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        tokio::spawn(async move {
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "recording an event failed");
            }
        });
    }
}
