//! Protobuf request bodies, as `kubectl create namespace|configmap|secret|service|deployment`
//! and `kubectl auth whoami|can-i` and `kubectl create token` send them (`application/vnd.kubernetes.protobuf`): the `k8s\0` envelope holding a
//! `runtime.Unknown`, and the object's own message decoded into JSON by a table of
//! Kubernetes' field numbers. A field that is not in the table is an error that names it,
//! never silently dropped; answers stay JSON (which the clients' Accept allows).

use base64::Engine;
use serde_json::{Map, Value, json};

/// How a field's value is encoded and rendered.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Bytes,
    I32,
    I64,
    Bool,
    Msg(&'static Schema),
    /// `map<string, string>`.
    MapStr,
    /// `map<string, bytes>` (rendered base64).
    MapBytes,
    /// `map<string, Quantity>`.
    MapQuantity,
    Time,
    IntOrString,
    /// `FieldsV1`: a message whose one field holds JSON, rendered as that JSON.
    FieldsV1,
}

struct Field {
    tag: u64,
    json: &'static str,
    kind: Kind,
    repeated: bool,
    /// Go writes non-pointer fields even when they hold their zero value; only pointer
    /// fields (`replicas`, `immutable`, ...) mean something when zero.
    presence: bool,
}

/// One message type: its name (for errors) and its fields.
pub struct Schema {
    name: &'static str,
    fields: &'static [Field],
}

const fn f(tag: u64, json: &'static str, kind: Kind) -> Field {
    Field { tag, json, kind, repeated: false, presence: false }
}

/// A pointer field in Go: present even when zero.
const fn p(tag: u64, json: &'static str, kind: Kind) -> Field {
    Field { tag, json, kind, repeated: false, presence: true }
}

const fn r(tag: u64, json: &'static str, kind: Kind) -> Field {
    Field { tag, json, kind, repeated: true, presence: false }
}

static OWNER_REFERENCE: Schema = Schema {
    name: "OwnerReference",
    fields: &[
        f(1, "kind", Kind::Str),
        f(3, "name", Kind::Str),
        f(4, "uid", Kind::Str),
        f(5, "apiVersion", Kind::Str),
        p(6, "controller", Kind::Bool),
        p(7, "blockOwnerDeletion", Kind::Bool),
    ],
};
static MANAGED_FIELDS_ENTRY: Schema = Schema {
    name: "ManagedFieldsEntry",
    fields: &[
        f(1, "manager", Kind::Str),
        f(2, "operation", Kind::Str),
        f(3, "apiVersion", Kind::Str),
        f(4, "time", Kind::Time),
        f(6, "fieldsType", Kind::Str),
        f(7, "fieldsV1", Kind::FieldsV1),
        f(8, "subresource", Kind::Str),
    ],
};
static OBJECT_META: Schema = Schema {
    name: "ObjectMeta",
    fields: &[
        f(1, "name", Kind::Str),
        f(2, "generateName", Kind::Str),
        f(3, "namespace", Kind::Str),
        f(4, "selfLink", Kind::Str),
        f(5, "uid", Kind::Str),
        f(6, "resourceVersion", Kind::Str),
        f(7, "generation", Kind::I64),
        f(8, "creationTimestamp", Kind::Time),
        f(9, "deletionTimestamp", Kind::Time),
        p(10, "deletionGracePeriodSeconds", Kind::I64),
        f(11, "labels", Kind::MapStr),
        f(12, "annotations", Kind::MapStr),
        r(13, "ownerReferences", Kind::Msg(&OWNER_REFERENCE)),
        r(14, "finalizers", Kind::Str),
        r(17, "managedFields", Kind::Msg(&MANAGED_FIELDS_ENTRY)),
    ],
};
static LABEL_SELECTOR_REQUIREMENT: Schema = Schema {
    name: "LabelSelectorRequirement",
    fields: &[f(1, "key", Kind::Str), f(2, "operator", Kind::Str), r(3, "values", Kind::Str)],
};
static LABEL_SELECTOR: Schema = Schema {
    name: "LabelSelector",
    fields: &[f(1, "matchLabels", Kind::MapStr), r(2, "matchExpressions", Kind::Msg(&LABEL_SELECTOR_REQUIREMENT))],
};
static EMPTY_STATUS: Schema = Schema { name: "status", fields: &[] };
static NAMESPACE_SPEC: Schema = Schema { name: "NamespaceSpec", fields: &[r(1, "finalizers", Kind::Str)] };
static NAMESPACE: Schema = Schema {
    name: "Namespace",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&NAMESPACE_SPEC)),
        f(3, "status", Kind::Msg(&EMPTY_STATUS)),
    ],
};
static CONFIG_MAP: Schema = Schema {
    name: "ConfigMap",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "data", Kind::MapStr),
        f(3, "binaryData", Kind::MapBytes),
        p(4, "immutable", Kind::Bool),
    ],
};
static SECRET: Schema = Schema {
    name: "Secret",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "data", Kind::MapBytes),
        f(3, "type", Kind::Str),
        f(4, "stringData", Kind::MapStr),
        p(5, "immutable", Kind::Bool),
    ],
};
static SERVICE_PORT: Schema = Schema {
    name: "ServicePort",
    fields: &[
        f(1, "name", Kind::Str),
        f(2, "protocol", Kind::Str),
        f(3, "port", Kind::I32),
        f(4, "targetPort", Kind::IntOrString),
        f(5, "nodePort", Kind::I32),
        f(6, "appProtocol", Kind::Str),
    ],
};
static SERVICE_SPEC: Schema = Schema {
    name: "ServiceSpec",
    fields: &[
        r(1, "ports", Kind::Msg(&SERVICE_PORT)),
        f(2, "selector", Kind::MapStr),
        f(3, "clusterIP", Kind::Str),
        f(4, "type", Kind::Str),
        r(5, "externalIPs", Kind::Str),
        f(7, "sessionAffinity", Kind::Str),
        f(10, "externalName", Kind::Str),
        f(11, "externalTrafficPolicy", Kind::Str),
        r(18, "clusterIPs", Kind::Str),
        f(22, "internalTrafficPolicy", Kind::Str),
    ],
};
static SERVICE: Schema = Schema {
    name: "Service",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&SERVICE_SPEC)),
        f(3, "status", Kind::Msg(&EMPTY_STATUS)),
    ],
};
static CONTAINER_PORT: Schema = Schema {
    name: "ContainerPort",
    fields: &[
        f(1, "name", Kind::Str),
        f(2, "hostPort", Kind::I32),
        f(3, "containerPort", Kind::I32),
        f(4, "protocol", Kind::Str),
        f(5, "hostIP", Kind::Str),
    ],
};
static ENV_VAR: Schema = Schema { name: "EnvVar", fields: &[f(1, "name", Kind::Str), f(2, "value", Kind::Str)] };
static RESOURCES: Schema = Schema {
    name: "ResourceRequirements",
    fields: &[f(1, "limits", Kind::MapQuantity), f(2, "requests", Kind::MapQuantity)],
};
static CONTAINER: Schema = Schema {
    name: "Container",
    fields: &[
        f(1, "name", Kind::Str),
        f(2, "image", Kind::Str),
        r(3, "command", Kind::Str),
        r(4, "args", Kind::Str),
        f(5, "workingDir", Kind::Str),
        r(6, "ports", Kind::Msg(&CONTAINER_PORT)),
        r(7, "env", Kind::Msg(&ENV_VAR)),
        f(8, "resources", Kind::Msg(&RESOURCES)),
        f(13, "terminationMessagePath", Kind::Str),
        f(14, "imagePullPolicy", Kind::Str),
        f(16, "stdin", Kind::Bool),
        f(17, "stdinOnce", Kind::Bool),
        f(18, "tty", Kind::Bool),
        f(20, "terminationMessagePolicy", Kind::Str),
    ],
};
static POD_SPEC: Schema = Schema {
    name: "PodSpec",
    fields: &[
        r(2, "containers", Kind::Msg(&CONTAINER)),
        f(3, "restartPolicy", Kind::Str),
        p(4, "terminationGracePeriodSeconds", Kind::I64),
        p(5, "activeDeadlineSeconds", Kind::I64),
        f(6, "dnsPolicy", Kind::Str),
        f(7, "nodeSelector", Kind::MapStr),
        f(8, "serviceAccountName", Kind::Str),
        f(10, "nodeName", Kind::Str),
        f(11, "hostNetwork", Kind::Bool),
        f(16, "hostname", Kind::Str),
        f(17, "subdomain", Kind::Str),
        f(19, "schedulerName", Kind::Str),
        r(20, "initContainers", Kind::Msg(&CONTAINER)),
        f(24, "priorityClassName", Kind::Str),
        p(25, "priority", Kind::I32),
        p(30, "enableServiceLinks", Kind::Bool),
    ],
};
static POD_TEMPLATE_SPEC: Schema = Schema {
    name: "PodTemplateSpec",
    fields: &[f(1, "metadata", Kind::Msg(&OBJECT_META)), f(2, "spec", Kind::Msg(&POD_SPEC))],
};
static ROLLING_UPDATE: Schema = Schema {
    name: "RollingUpdateDeployment",
    fields: &[f(1, "maxUnavailable", Kind::IntOrString), f(2, "maxSurge", Kind::IntOrString)],
};
static STRATEGY: Schema = Schema {
    name: "DeploymentStrategy",
    fields: &[f(1, "type", Kind::Str), f(2, "rollingUpdate", Kind::Msg(&ROLLING_UPDATE))],
};
static DEPLOYMENT_SPEC: Schema = Schema {
    name: "DeploymentSpec",
    fields: &[
        p(1, "replicas", Kind::I32),
        f(2, "selector", Kind::Msg(&LABEL_SELECTOR)),
        f(3, "template", Kind::Msg(&POD_TEMPLATE_SPEC)),
        f(4, "strategy", Kind::Msg(&STRATEGY)),
        f(5, "minReadySeconds", Kind::I32),
        p(6, "revisionHistoryLimit", Kind::I32),
        f(7, "paused", Kind::Bool),
        p(9, "progressDeadlineSeconds", Kind::I32),
    ],
};
static DEPLOYMENT: Schema = Schema {
    name: "Deployment",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&DEPLOYMENT_SPEC)),
        f(3, "status", Kind::Msg(&EMPTY_STATUS)),
    ],
};
static USER_INFO: Schema = Schema {
    name: "UserInfo",
    fields: &[f(1, "username", Kind::Str), f(2, "uid", Kind::Str), r(3, "groups", Kind::Str)],
};
static SELF_SUBJECT_REVIEW_STATUS: Schema =
    Schema { name: "SelfSubjectReviewStatus", fields: &[f(1, "userInfo", Kind::Msg(&USER_INFO))] };
static SELF_SUBJECT_REVIEW: Schema = Schema {
    name: "SelfSubjectReview",
    fields: &[f(1, "metadata", Kind::Msg(&OBJECT_META)), f(2, "status", Kind::Msg(&SELF_SUBJECT_REVIEW_STATUS))],
};
static RESOURCE_ATTRIBUTES: Schema = Schema {
    name: "ResourceAttributes",
    fields: &[
        f(1, "namespace", Kind::Str),
        f(2, "verb", Kind::Str),
        f(3, "group", Kind::Str),
        f(4, "version", Kind::Str),
        f(5, "resource", Kind::Str),
        f(6, "subresource", Kind::Str),
        f(7, "name", Kind::Str),
    ],
};
static NON_RESOURCE_ATTRIBUTES: Schema =
    Schema { name: "NonResourceAttributes", fields: &[f(1, "path", Kind::Str), f(2, "verb", Kind::Str)] };
static ACCESS_REVIEW_STATUS: Schema = Schema {
    name: "SubjectAccessReviewStatus",
    fields: &[
        f(1, "allowed", Kind::Bool),
        f(2, "reason", Kind::Str),
        f(3, "evaluationError", Kind::Str),
        f(4, "denied", Kind::Bool),
    ],
};
static SELF_ACCESS_REVIEW_SPEC: Schema = Schema {
    name: "SelfSubjectAccessReviewSpec",
    fields: &[
        f(1, "resourceAttributes", Kind::Msg(&RESOURCE_ATTRIBUTES)),
        f(2, "nonResourceAttributes", Kind::Msg(&NON_RESOURCE_ATTRIBUTES)),
    ],
};
static SELF_SUBJECT_ACCESS_REVIEW: Schema = Schema {
    name: "SelfSubjectAccessReview",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&SELF_ACCESS_REVIEW_SPEC)),
        f(3, "status", Kind::Msg(&ACCESS_REVIEW_STATUS)),
    ],
};
static RULES_REVIEW_SPEC: Schema =
    Schema { name: "SelfSubjectRulesReviewSpec", fields: &[f(1, "namespace", Kind::Str)] };
static RULES_REVIEW_STATUS: Schema = Schema {
    name: "SubjectRulesReviewStatus",
    fields: &[f(3, "incomplete", Kind::Bool), f(4, "evaluationError", Kind::Str)],
};
static SELF_SUBJECT_RULES_REVIEW: Schema = Schema {
    name: "SelfSubjectRulesReview",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&RULES_REVIEW_SPEC)),
        f(3, "status", Kind::Msg(&RULES_REVIEW_STATUS)),
    ],
};
static BOUND_OBJECT_REFERENCE: Schema = Schema {
    name: "BoundObjectReference",
    fields: &[f(1, "kind", Kind::Str), f(2, "apiVersion", Kind::Str), f(3, "name", Kind::Str), f(4, "uid", Kind::Str)],
};
static TOKEN_REQUEST_SPEC: Schema = Schema {
    name: "TokenRequestSpec",
    fields: &[
        r(1, "audiences", Kind::Str),
        f(3, "boundObjectRef", Kind::Msg(&BOUND_OBJECT_REFERENCE)),
        p(4, "expirationSeconds", Kind::I64),
    ],
};
static TOKEN_REQUEST_STATUS: Schema =
    Schema { name: "TokenRequestStatus", fields: &[f(1, "token", Kind::Str), f(2, "expirationTimestamp", Kind::Time)] };
static TOKEN_REQUEST: Schema = Schema {
    name: "TokenRequest",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&TOKEN_REQUEST_SPEC)),
        f(3, "status", Kind::Msg(&TOKEN_REQUEST_STATUS)),
    ],
};
static CSR_SPEC: Schema = Schema {
    name: "CertificateSigningRequestSpec",
    fields: &[
        f(1, "request", Kind::Bytes),
        f(2, "username", Kind::Str),
        f(3, "uid", Kind::Str),
        r(4, "groups", Kind::Str),
        r(5, "usages", Kind::Str),
        f(7, "signerName", Kind::Str),
        p(8, "expirationSeconds", Kind::I32),
    ],
};
static CSR_CONDITION: Schema = Schema {
    name: "CertificateSigningRequestCondition",
    fields: &[
        f(1, "type", Kind::Str),
        f(2, "reason", Kind::Str),
        f(3, "message", Kind::Str),
        f(4, "lastUpdateTime", Kind::Time),
        f(5, "lastTransitionTime", Kind::Time),
        f(6, "status", Kind::Str),
    ],
};
static CSR_STATUS: Schema = Schema {
    name: "CertificateSigningRequestStatus",
    fields: &[r(1, "conditions", Kind::Msg(&CSR_CONDITION)), f(2, "certificate", Kind::Bytes)],
};
static CSR: Schema = Schema {
    name: "CertificateSigningRequest",
    fields: &[
        f(1, "metadata", Kind::Msg(&OBJECT_META)),
        f(2, "spec", Kind::Msg(&CSR_SPEC)),
        f(3, "status", Kind::Msg(&CSR_STATUS)),
    ],
};
static TYPE_META: Schema =
    Schema { name: "TypeMeta", fields: &[f(1, "apiVersion", Kind::Str), f(2, "kind", Kind::Str)] };
static UNKNOWN: Schema = Schema {
    name: "runtime.Unknown",
    fields: &[
        f(1, "typeMeta", Kind::Msg(&TYPE_META)),
        f(2, "raw", Kind::Bytes),
        f(3, "contentEncoding", Kind::Str),
        f(4, "contentType", Kind::Str),
    ],
};

/// The kinds whose protobuf bodies are understood.
fn schema_of(api_version: &str, kind: &str) -> Option<&'static Schema> {
    match (api_version, kind) {
        ("v1", "Namespace") => Some(&NAMESPACE),
        ("v1", "ConfigMap") => Some(&CONFIG_MAP),
        ("v1", "Secret") => Some(&SECRET),
        ("v1", "Service") => Some(&SERVICE),
        ("apps/v1", "Deployment") => Some(&DEPLOYMENT),
        ("certificates.k8s.io/v1", "CertificateSigningRequest") => Some(&CSR),
        ("authentication.k8s.io/v1", "SelfSubjectReview") => Some(&SELF_SUBJECT_REVIEW),
        ("authentication.k8s.io/v1", "TokenRequest") => Some(&TOKEN_REQUEST),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => Some(&SELF_SUBJECT_ACCESS_REVIEW),
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => Some(&SELF_SUBJECT_RULES_REVIEW),
        _ => None,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.at).ok_or("truncated varint")?;
            self.at += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 64 bits".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
        let end =
            self.at.checked_add(len).filter(|e| *e <= self.buf.len()).ok_or("truncated length-delimited field")?;
        let out = &self.buf[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn skip(&mut self, wire: u64) -> Result<(), String> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            _ => Err(format!("unsupported wire type {wire}")),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), String> {
        if self.at + n > self.buf.len() {
            return Err("truncated fixed-width field".into());
        }
        self.at += n;
        Ok(())
    }
}

fn text(bytes: &[u8], at: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{at}: not UTF-8"))
}

/// Walks the fields of a small message, handing each tag and wire type to `f` with the
/// reader at its value; `f` answers whether it consumed the value (if not, it is skipped).
fn each_field<'a>(
    bytes: &'a [u8],
    mut f: impl FnMut(u64, u64, &mut Reader<'a>) -> Result<bool, String>,
) -> Result<(), String> {
    let mut r = Reader { buf: bytes, at: 0 };
    while r.at < bytes.len() {
        let head = r.varint()?;
        let (tag, wire) = (head >> 3, head & 7);
        if !f(tag, wire, &mut r)? {
            r.skip(wire)?;
        }
    }
    Ok(())
}

/// Decodes a map entry (key 1, value 2) into its key and raw value bytes.
fn map_entry(bytes: &[u8]) -> Result<(String, Vec<u8>), String> {
    let (mut key, mut value) = (String::new(), Vec::new());
    each_field(bytes, |tag, wire, r| {
        match (tag, wire) {
            (1, 2) => key = text(r.bytes()?, "map key")?,
            (2, 2) => value = r.bytes()?.to_vec(),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok((key, value))
}

fn decode_message(bytes: &[u8], schema: &Schema, path: &str) -> Result<Value, String> {
    let mut out = Map::new();
    let mut r = Reader { buf: bytes, at: 0 };
    while r.at < bytes.len() {
        let head = r.varint()?;
        let (tag, wire) = (head >> 3, head & 7);
        let Some(field) = schema.fields.iter().find(|f| f.tag == tag) else {
            // Go writes every non-pointer field; a zero one says nothing and can go.
            let start = r.at;
            r.skip(wire)?;
            let raw = &bytes[start..r.at];
            let zero = match wire {
                0 => raw.iter().all(|b| *b == 0),
                2 => raw.first() == Some(&0),
                _ => false,
            };
            if zero {
                continue;
            }
            return Err(format!(
                "{path}: field number {tag} of {} is not supported in protobuf bodies; {SEND_JSON} (kubectl create -f or apply -f)",
                schema.name
            ));
        };
        let at = format!("{path}.{}", field.json);
        let value = match (field.kind, wire) {
            (Kind::Str, 2) => json!(text(r.bytes()?, &at)?),
            (Kind::Bytes, 2) => json!(base64::engine::general_purpose::STANDARD.encode(r.bytes()?)),
            (Kind::I32, 0) => json!(r.varint()? as i64 as i32),
            (Kind::I64, 0) => json!(r.varint()? as i64),
            (Kind::Bool, 0) => json!(r.varint()? != 0),
            (Kind::Msg(inner), 2) => decode_message(r.bytes()?, inner, &at)?,
            (Kind::MapStr | Kind::MapBytes | Kind::MapQuantity, 2) => {
                let (k, v) = map_entry(r.bytes()?)?;
                let v = match field.kind {
                    Kind::MapBytes => json!(base64::engine::general_purpose::STANDARD.encode(v)),
                    Kind::MapQuantity => quantity(&v, &at)?,
                    _ => json!(text(&v, &at)?),
                };
                let map = out.entry(field.json.to_owned()).or_insert_with(|| json!({}));
                if let Some(m) = map.as_object_mut() {
                    m.insert(k, v);
                }
                continue;
            }
            (Kind::Time, 2) => time(r.bytes()?, &at)?,
            (Kind::IntOrString, 2) => int_or_string(r.bytes()?, &at)?,
            (Kind::FieldsV1, 2) => fields_v1(r.bytes()?, &at)?,
            (_, w) => return Err(format!("{at}: unexpected wire type {w}")),
        };
        let is_zero = value.is_null()
            || matches!(&value, Value::String(s) if s.is_empty())
            || value == json!(0)
            || value == json!(false);
        if is_zero && !field.presence && !field.repeated {
            continue;
        }
        if field.repeated {
            let list = out.entry(field.json.to_owned()).or_insert_with(|| json!([]));
            if let Some(l) = list.as_array_mut() {
                l.push(value);
            }
        } else {
            out.insert(field.json.to_owned(), value);
        }
    }
    Ok(Value::Object(out))
}

fn fields_v1(bytes: &[u8], at: &str) -> Result<Value, String> {
    let mut raw = Value::Null;
    each_field(bytes, |tag, wire, r| {
        if (tag, wire) != (1, 2) {
            return Ok(false);
        }
        raw = serde_json::from_slice(r.bytes()?).map_err(|e| format!("{at}: not JSON: {e}"))?;
        Ok(true)
    })?;
    Ok(raw)
}

fn time(bytes: &[u8], at: &str) -> Result<Value, String> {
    let mut seconds = 0i64;
    each_field(bytes, |tag, wire, r| {
        if (tag, wire) != (1, 0) {
            return Ok(false);
        }
        seconds = r.varint()? as i64;
        Ok(true)
    })?;
    // Go's zero Time (0001-01-01, a template's creationTimestamp) is null in JSON.
    const GO_ZERO_TIME: i64 = -62_135_596_800;
    if seconds == 0 || seconds == GO_ZERO_TIME {
        return Ok(Value::Null);
    }
    let t = jiff::Timestamp::from_second(seconds).map_err(|e| format!("{at}: {e}"))?;
    Ok(json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn quantity(bytes: &[u8], at: &str) -> Result<Value, String> {
    let mut s = String::new();
    each_field(bytes, |tag, wire, r| {
        if (tag, wire) != (1, 2) {
            return Ok(false);
        }
        s = text(r.bytes()?, at)?;
        Ok(true)
    })?;
    Ok(json!(s))
}

fn int_or_string(bytes: &[u8], at: &str) -> Result<Value, String> {
    let (mut kind, mut int, mut s) = (0u64, 0i64, String::new());
    each_field(bytes, |tag, wire, r| {
        match (tag, wire) {
            (1, 0) => kind = r.varint()?,
            (2, 0) => int = r.varint()? as i64 as i32 as i64,
            (3, 2) => s = text(r.bytes()?, at)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(if kind == 1 { json!(s) } else { json!(int) })
}

/// What every "cannot decode this kind or field" error says, and no malformed-body error does.
pub const SEND_JSON: &str = "send the object as JSON";

/// Decodes a `k8s\0`-framed protobuf body into the JSON object it stands for.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body.strip_prefix(b"k8s\0").ok_or("a protobuf body must start with the k8s\\0 magic")?;
    let unknown = decode_message(rest, &UNKNOWN, "body")?;
    let api_version = unknown.pointer("/typeMeta/apiVersion").and_then(Value::as_str).unwrap_or_default().to_owned();
    let kind = unknown.pointer("/typeMeta/kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    let raw = unknown.get("raw").and_then(Value::as_str).unwrap_or_default();
    let raw = base64::engine::general_purpose::STANDARD.decode(raw).map_err(|e| e.to_string())?;
    let schema = schema_of(&api_version, &kind)
        .ok_or_else(|| format!("protobuf bodies of {api_version} {kind} are not supported; {SEND_JSON}"))?;
    let mut obj = decode_message(&raw, schema, &kind)?;
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), json!(api_version));
        o.insert("kind".into(), json!(kind));
        // Empty status messages carry nothing a write may set.
        if o.get("status").is_some_and(|s| s.as_object().is_some_and(serde_json::Map::is_empty)) {
            o.remove("status");
        }
    }
    Ok(obj)
}

/// Writing protobuf: what the OpenAPI v2 document is encoded with, and the tests' bodies.
pub mod write {
    /// A base-128 varint.
    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// A field's key: its number and wire type.
    pub fn field(tag: u64, wire: u64, out: &mut Vec<u8>) {
        varint((tag << 3) | wire, out);
    }

    /// A length-delimited field (a string, bytes, or a message).
    pub fn bytes(tag: u64, data: &[u8], out: &mut Vec<u8>) {
        field(tag, 2, out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use super::write::{bytes, field, varint};
    use super::*;

    fn map(tag: u64, k: &str, v: &[u8], out: &mut Vec<u8>) {
        let mut entry = Vec::new();
        bytes(1, k.as_bytes(), &mut entry);
        bytes(2, v, &mut entry);
        bytes(tag, &entry, out);
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut tm = Vec::new();
        bytes(1, api_version.as_bytes(), &mut tm);
        bytes(2, kind.as_bytes(), &mut tm);
        let mut unknown = Vec::new();
        bytes(1, &tm, &mut unknown);
        bytes(2, raw, &mut unknown);
        let mut out = b"k8s\0".to_vec();
        out.extend(unknown);
        out
    }

    #[test]
    fn decodes_a_deployment_like_kubectl_create_deployment() {
        let mut meta = Vec::new();
        bytes(1, b"web", &mut meta);
        map(11, "app", b"web", &mut meta);
        let mut container = Vec::new();
        bytes(1, b"nginx", &mut container);
        bytes(2, b"nginx:1", &mut container);
        let mut port = Vec::new();
        field(3, 0, &mut port);
        varint(80, &mut port);
        bytes(6, &port, &mut container);
        let mut pod_spec = Vec::new();
        bytes(2, &container, &mut pod_spec);
        let mut template = Vec::new();
        bytes(1, &meta, &mut template);
        bytes(2, &pod_spec, &mut template);
        let mut selector = Vec::new();
        map(1, "app", b"web", &mut selector);
        let mut spec = Vec::new();
        field(1, 0, &mut spec);
        varint(3, &mut spec);
        bytes(2, &selector, &mut spec);
        bytes(3, &template, &mut spec);
        bytes(4, &[], &mut spec);
        let mut d = Vec::new();
        bytes(1, &meta, &mut d);
        bytes(2, &spec, &mut d);
        bytes(3, &[], &mut d);
        let obj = decode(&envelope("apps/v1", "Deployment", &d)).unwrap();
        assert_eq!(obj["kind"], "Deployment");
        assert_eq!(obj["metadata"]["labels"]["app"], "web");
        assert_eq!(obj["spec"]["replicas"], 3);
        assert_eq!(obj["spec"]["selector"]["matchLabels"]["app"], "web");
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1");
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"], 80);
        assert!(obj.get("status").is_none());
    }

    #[test]
    fn secrets_are_base64_and_unknown_fields_are_named() {
        let mut meta = Vec::new();
        bytes(1, b"s", &mut meta);
        let mut secret = Vec::new();
        bytes(1, &meta, &mut secret);
        map(2, "user", b"admin", &mut secret);
        bytes(3, b"Opaque", &mut secret);
        let obj = decode(&envelope("v1", "Secret", &secret)).unwrap();
        assert_eq!(obj["data"]["user"], "YWRtaW4=");
        assert_eq!(obj["type"], "Opaque");
        let mut odd = Vec::new();
        bytes(1, &meta, &mut odd);
        bytes(9, b"x", &mut odd);
        let err = decode(&envelope("v1", "ConfigMap", &odd)).unwrap_err();
        assert!(err.contains("field number 9 of ConfigMap"), "{err}");
        assert!(decode(&envelope("v1", "Pod", &[])).unwrap_err().contains("not supported"));
        assert!(decode(b"nope").is_err());
        assert!(decode(&envelope("v1", "ConfigMap", &[0x0a, 0x05, 0x01])).is_err(), "truncated");
    }
}
