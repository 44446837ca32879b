//! What the patch targets share: an input split into a live object and a body.

use serde_json::Value;

/// A pod that has most of the lists the patch formats treat specially.
pub fn live_pod() -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "finalizers": ["a", "b"], "ownerReferences": [{"uid": "u1", "name": "rs", "kind": "ReplicaSet", "apiVersion": "apps/v1"}]},
        "spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}], "env": [{"name": "X", "value": "1"}],
             "volumeMounts": [{"name": "v", "mountPath": "/v"}]},
            {"name": "b", "image": "b:1", "args": ["x", "y"]}],
            "volumes": [{"name": "v", "emptyDir": {}}], "tolerations": [{"key": "k", "operator": "Exists"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    })
}

/// The live object: the pod, or the first half of the input when it is JSON.
pub fn split(data: &[u8]) -> (Value, &[u8]) {
    if let Some(cut) = data.iter().position(|b| *b == 0)
        && let Ok(live) = serde_json::from_slice::<Value>(&data[..cut])
    {
        return (live, &data[cut + 1..]);
    }
    (live_pod(), data)
}
