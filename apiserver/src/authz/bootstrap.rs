//! Upstream's bootstrap policy, for what this server serves: the roles and bindings the
//! server creates at start and reconciles after (a missing one is made again; one that
//! keeps `rbac.authorization.kubernetes.io/autoupdate: "true"` gets back the rules and
//! subjects it lost). The aggregated roles `admin`, `edit` and `view` are filled from the
//! `system:aggregate-to-*` roles by the controller-manager, as upstream's.

use serde_json::{Value, json};

/// The annotation that lets the server put a bootstrap object back as it was.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn urls(paths: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": paths, "verbs": verbs})
}

fn meta(name: &str, labels: Value) -> Value {
    json!({"name": name, "labels": labels, "annotations": {AUTOUPDATE: "true"}})
}

fn cluster_role(name: &str, rules: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": meta(name, json!({"kubernetes.io/bootstrapping": "rbac-defaults"})), "rules": rules})
}

fn aggregate_to(name: &str, into: &[&str], rules: Vec<Value>) -> Value {
    let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    for i in into {
        labels[format!("rbac.authorization.k8s.io/aggregate-to-{i}")] = json!("true");
    }
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": meta(name, labels), "rules": rules})
}

fn aggregated(name: &str, label: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": meta(name, json!({"kubernetes.io/bootstrapping": "rbac-defaults"})),
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}, "rules": []})
}

fn binding(name: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": meta(name, json!({"kubernetes.io/bootstrapping": "rbac-defaults"})),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects})
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

fn service_account(namespace: &str, name: &str) -> Value {
    json!({"kind": "ServiceAccount", "namespace": namespace, "name": name})
}

const READ: &[&str] = &["get", "list", "watch"];

/// Upstream's signers, which the controller-manager signs for.
pub const KUBERNETES_SIGNERS: &[&str] = &[
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
    "kubernetes.io/legacy-unknown",
];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const ALL: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The cluster roles.
pub fn cluster_roles() -> Vec<Value> {
    vec![
        cluster_role("cluster-admin", vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])]),
        cluster_role(
            "system:discovery",
            vec![urls(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            vec![urls(&["/healthz", "/livez", "/readyz", "/version", "/version/"], &["get"])],
        ),
        cluster_role(
            "system:basic-user",
            vec![
                rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"], &["create"]),
                rule(&["authentication.k8s.io"], &["selfsubjectreviews"], &["create"]),
            ],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            vec![urls(&["/.well-known/openid-configuration", "/openid/v1/jwks"], &["get"])],
        ),
        cluster_role(
            "system:auth-delegator",
            vec![
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            ],
        ),
        cluster_role(
            "system:monitoring",
            vec![urls(
                &["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"],
                &["get"],
            )],
        ),
        aggregated("admin", "rbac.authorization.k8s.io/aggregate-to-admin"),
        aggregated("edit", "rbac.authorization.k8s.io/aggregate-to-edit"),
        aggregated("view", "rbac.authorization.k8s.io/aggregate-to-view"),
        aggregate_to(
            "system:aggregate-to-admin",
            &["admin"],
            vec![
                rule(&["rbac.authorization.k8s.io"], &["rolebindings", "roles"], ALL),
                rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
                rule(&[""], &["namespaces"], READ),
            ],
        ),
        aggregate_to(
            "system:aggregate-to-edit",
            &["admin", "edit"],
            vec![
                rule(
                    &[""],
                    &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
                    READ,
                ),
                rule(&[""], &["serviceaccounts"], &["impersonate"]),
                rule(&[""], &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
                rule(&[""], &["pods/eviction"], &["create"]),
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "endpoints",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                    WRITE,
                ),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                rule(
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                    WRITE,
                ),
                rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
                rule(&["batch"], &["cronjobs", "jobs"], WRITE),
                rule(&["discovery.k8s.io"], &["endpointslices"], WRITE),
                rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], WRITE),
                rule(&["policy"], &["poddisruptionbudgets"], WRITE),
            ],
        ),
        aggregate_to(
            "system:aggregate-to-view",
            &["admin", "edit", "view"],
            vec![
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                    READ,
                ),
                rule(
                    &[""],
                    &[
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                    READ,
                ),
                rule(&[""], &["namespaces"], READ),
                rule(&["discovery.k8s.io"], &["endpointslices"], READ),
                rule(
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                    READ,
                ),
                rule(&["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
                rule(&["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
                rule(&["events.k8s.io"], &["events"], READ),
                rule(&["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"], READ),
                rule(&["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
            ],
        ),
        cluster_role(
            "system:kube-scheduler",
            vec![
                rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create", "get", "update"]),
                rule(&[""], &["nodes"], READ),
                rule(&[""], &["pods"], &["delete", "get", "list", "watch"]),
                rule(&[""], &["bindings", "pods/binding"], &["create"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&["", "apps"], &["replicationcontrollers", "services", "replicasets", "statefulsets"], READ),
                rule(&[""], &["namespaces", "persistentvolumeclaims", "persistentvolumes"], READ),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
            ],
        ),
        // The controller-manager runs every controller under its own identity: the
        // garbage collector's reach (every kind, to follow owner references) and what the
        // others create.
        cluster_role(
            "system:kube-controller-manager",
            vec![
                rule(&["*"], &["*"], &["get", "list", "watch", "patch", "update", "delete"]),
                rule(
                    &["", "apps", "discovery.k8s.io", "coordination.k8s.io", "events.k8s.io"],
                    &[
                        "pods",
                        "replicasets",
                        "endpointslices",
                        "endpoints",
                        "events",
                        "serviceaccounts",
                        "configmaps",
                        "leases",
                    ],
                    &["create"],
                ),
                rule(&["rbac.authorization.k8s.io"], &["clusterroles"], &["escalate"]),
                rule(
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests/approval", "certificatesigningrequests/status"],
                    &["update"],
                ),
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["subjectaccessreviews"], &["create"]),
                rule(&[""], &["serviceaccounts/token"], &["create"]),
                // The certificate controllers approve node client requests and sign for
                // upstream's kubernetes.io signers.
                json!({"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["approve", "sign"],
                    "resourceNames": KUBERNETES_SIGNERS}),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"])],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"], &["create"])],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![rule(&["certificates.k8s.io"], &["certificatesigningrequests/selfnodeclient"], &["create"])],
        ),
        cluster_role(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            vec![json!({"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["approve"],
                "resourceNames": ["kubernetes.io/kube-apiserver-client-kubelet"]})],
        ),
        cluster_role(
            "system:certificates.k8s.io:kubelet-serving-approver",
            vec![json!({"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["approve"],
                "resourceNames": ["kubernetes.io/kubelet-serving"]})],
        ),
        cluster_role(
            "system:node-proxier",
            vec![
                rule(&[""], &["endpoints", "services"], &["list", "watch"]),
                rule(&[""], &["nodes"], READ),
                rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], &["list", "watch"]),
            ],
        ),
        cluster_role(
            "system:kube-dns",
            vec![
                rule(&[""], &["endpoints", "services"], &["list", "watch"]),
                rule(&["discovery.k8s.io"], &["endpointslices"], &["list", "watch"]),
            ],
        ),
        cluster_role(
            "system:node",
            vec![
                rule(&["authentication.k8s.io"], &["tokenreviews"], &["create"]),
                rule(&["authorization.k8s.io"], &["localsubjectaccessreviews", "subjectaccessreviews"], &["create"]),
                rule(&[""], &["services", "endpoints"], READ),
                rule(&[""], &["nodes"], &["create", "delete", "get", "list", "patch", "update", "watch"]),
                rule(&[""], &["nodes/status"], &["patch", "update"]),
                rule(&["", "events.k8s.io"], &["events"], &["create", "patch", "update"]),
                rule(&[""], &["pods"], READ),
                rule(&[""], &["pods"], &["create", "delete"]),
                rule(&[""], &["pods/status"], &["patch", "update"]),
                rule(&[""], &["pods/eviction"], &["create"]),
                rule(&[""], &["configmaps", "secrets", "persistentvolumeclaims"], &["get"]),
                rule(&["coordination.k8s.io"], &["leases"], &["create", "delete", "get", "patch", "update"]),
                rule(&["certificates.k8s.io"], &["certificatesigningrequests"], &["create", "get", "list", "watch"]),
            ],
        ),
    ]
}

/// The cluster role bindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", vec![group("system:masters")]),
        binding("system:discovery", "system:discovery", vec![group("system:authenticated")]),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            vec![group("system:authenticated"), group("system:unauthenticated")],
        ),
        binding("system:basic-user", "system:basic-user", vec![group("system:authenticated")]),
        binding("system:monitoring", "system:monitoring", vec![group("system:monitoring")]),
        binding(
            "system:service-account-issuer-discovery",
            "system:service-account-issuer-discovery",
            vec![group("system:serviceaccounts")],
        ),
        binding("system:kube-scheduler", "system:kube-scheduler", vec![user("system:kube-scheduler")]),
        binding(
            "system:kube-controller-manager",
            "system:kube-controller-manager",
            vec![user("system:kube-controller-manager")],
        ),
        binding("system:node-proxier", "system:node-proxier", vec![user("system:kube-proxy")]),
        binding(
            "system:kube-dns",
            "system:kube-dns",
            vec![user("system:kube-dns"), service_account("kube-system", "kube-dns")],
        ),
    ]
}

/// `desired`'s list under `key` merged into `current`'s: what is missing is added, nothing
/// the cluster's admins added is taken away (upstream's reconcile without `--remove-extra`).
pub fn reconciled(current: &Value, desired: &Value, key: &str) -> Option<Value> {
    if current.pointer(&format!("/metadata/annotations/{}", AUTOUPDATE.replace('/', "~1"))).and_then(Value::as_str)
        == Some("false")
    {
        return None;
    }
    let have = current.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let want = desired.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let missing: Vec<Value> = want.into_iter().filter(|w| !have.contains(w)).collect();
    if missing.is_empty() {
        return None;
    }
    let mut next = current.clone();
    let mut list = have;
    list.extend(missing);
    next[key] = Value::Array(list);
    Some(next)
}
