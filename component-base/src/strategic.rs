//! The list semantics of the built-in types that strategic merge patch and server-side
//! apply need (upstream reads them from `patchMergeKey`/`listType` tags in the Go types):
//! which lists merge item by item, and by which key. Shared by the apiserver, which
//! applies patches, and kubectl, which computes them.

/// The merge key of a list field, by the dotted path of the map that holds it
/// (`spec.template.spec` for `containers`, `spec.template.spec.containers` for `ports`).
pub fn merge_key(path: &str, field: &str) -> Option<&'static str> {
    Some(match field {
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => "name",
        "ports" if path.ends_with("containers") || path.ends_with("initContainers") => "containerPort",
        "ports" => "port",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ownerReferences" => "uid",
        "conditions" => "type",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Lists of primitives upstream merges as sets instead of replacing.
pub fn merges_primitives(field: &str) -> bool {
    field == "finalizers"
}
