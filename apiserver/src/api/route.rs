//! Routing: a `/api` or `/apis` request's path and query become a [`Target`] and a verb,
//! discovery requests are answered, and the verb handler runs; every request is counted in
//! the metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, Request, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::{App, Params, Target, delete, discovery, read, review, subresource, table, watch, write};
use crate::authn::UserInfo;
use crate::authz::{Attributes, admission};
use crate::decode::MAX_BODY;
use crate::metrics::RequestInfo;
use crate::registry::{Registry, Sub};
use crate::status::{ApiError, ApiResult};

/// Parses a resource URL. `segments` follow `/api/v1` or `/apis/{g}/{v}`.
fn parse_target(registry: &Registry, group: &str, version: &str, segments: &[&str]) -> ApiResult<Option<Target>> {
    let namespaced_form = segments.len() >= 3
        && segments[0] == "namespaces"
        && registry.find(group, version, segments[2]).is_some_and(|r| r.namespaced);
    let (namespace, rest) =
        if namespaced_form { (Some(segments[1].to_owned()), &segments[2..]) } else { (None, segments) };
    let Some(resource) = rest.first().and_then(|r| registry.find(group, version, r)) else {
        return Ok(None);
    };
    let name = rest.get(1).map(|s| (*s).to_owned());
    let sub = match rest.get(2) {
        None => None,
        Some(s) => match resource.subresources.iter().find(|sub| sub.name() == *s) {
            Some(sub) => Some(*sub),
            None => return Ok(None),
        },
    };
    if rest.len() > 3 || name.as_deref() == Some("") {
        return Ok(None);
    }
    if namespace.is_some() && !resource.namespaced {
        return Ok(None);
    }
    Ok(Some(Target { resource, namespace, name, sub }))
}

/// Whether the request asks for a watch (`watch=true`, or the legacy `/watch/` prefix,
/// which the router turns into the parameter).
fn watching(params: &Params) -> bool {
    params.get("watch").is_some_and(|w| crate::query::truthy(w))
}

fn verb_of(method: &Method, target: &Target, params: &Params) -> &'static str {
    let watching = watching(params);
    match (method, target.name.is_some()) {
        (&Method::GET, false) if watching => "WATCH",
        (&Method::GET, false) => "LIST",
        (&Method::GET, true) => "GET",
        (&Method::POST, _) => "CREATE",
        (&Method::PUT, _) => "UPDATE",
        (&Method::PATCH, _) => "PATCH",
        (&Method::DELETE, false) => "DELETECOLLECTION",
        (&Method::DELETE, true) => "DELETE",
        _ => "UNKNOWN",
    }
}

/// What `apiserver_request_total` says of a request, with upstream's verbs
/// (`InstrumentRouteFunc` gets the route's HTTP verb: POST for create, PUT for update;
/// `cleanVerb` turns PATCH with an apply body into APPLY) and scope.
fn request_info(method: &Method, headers: &HeaderMap, target: &Target, verb: &str, dry_run: bool) -> RequestInfo {
    let reported = match verb {
        "CREATE" => "POST",
        "UPDATE" => "PUT",
        "PATCH" if content_type(headers).starts_with("application/apply-patch") => "APPLY",
        "PATCH" => "PATCH",
        "LIST" => "LIST",
        "WATCH" => "WATCH",
        "GET" => "GET",
        "DELETE" => "DELETE",
        "DELETECOLLECTION" => "DELETECOLLECTION",
        _ if method == Method::POST => "POST",
        _ => "UNKNOWN",
    };
    // CleanScope: a named object, or a create, is "resource".
    let scope = if target.name.is_some() || verb == "CREATE" {
        "resource"
    } else if target.namespace.is_some() {
        "namespace"
    } else {
        "cluster"
    };
    RequestInfo {
        verb: reported,
        dry_run,
        group: target.resource.group.to_string(),
        version: target.resource.version.to_string(),
        resource: target.resource.resource.to_string(),
        subresource: target.sub.map(Sub::name).unwrap_or_default().to_owned(),
        scope,
    }
}

async fn read_body(body: Body, audit: Option<&crate::audit::Context>) -> ApiResult<Bytes> {
    let bytes = axum::body::to_bytes(body, MAX_BODY + 1).await.map_err(|_| ApiError::body_too_large(MAX_BODY))?;
    if let Some(audit) = audit {
        audit.request_body(&bytes);
    }
    Ok(bytes)
}

/// The entry point for every `/api` and `/apis` request.
pub async fn dispatch(State(app): State<Arc<App>>, request: Request<Body>) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().trim_end_matches('/').to_owned();
    let params: Params = Query::<Params>::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
    // Each segment is percent-decoded once, after splitting, as upstream does: `%2F` in a
    // name stays inside that segment.
    let decoded: Vec<String> = match path.split('/').filter(|s| !s.is_empty()).map(percent_decode).collect() {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let user = parts.extensions.get::<UserInfo>().cloned().unwrap_or_else(UserInfo::anonymous);
    let audit = parts.extensions.get::<crate::audit::Context>().cloned();
    let discovery = match segments.as_slice() {
        ["api"] | ["apis"] | ["api", "v1"] | ["apis", _] => true,
        ["apis", group, version] => app.registry.serves(group, version),
        _ => false,
    };
    if discovery {
        let attributes = Attributes::path(&parts.method.as_str().to_ascii_lowercase(), &path);
        if let Err(e) = app.authorizer.check(&user, &attributes, audit.as_ref()) {
            return e.into_response();
        }
    }

    let (group, version, rest) = match segments.as_slice() {
        ["api"] => return discovery::api_versions(&app.registry, &parts.headers),
        ["apis"] => return discovery::api_groups(&app.registry, &parts.headers),
        ["api", "v1"] => return discovery::resource_list(&app.registry, "", "v1"),
        ["apis", group, version] if app.registry.serves(group, version) => {
            return discovery::resource_list(&app.registry, group, version);
        }
        ["apis", group] => return discovery::group(&app.registry, group).unwrap_or_else(|e| e.into_response()),
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return ApiError::no_route(&path).into_response(),
    };
    // The legacy `/watch/` prefix means `?watch=true`.
    let (rest, mut params) = match rest {
        ["watch", rest @ ..] => {
            let mut p = params;
            p.insert("watch".into(), "true".into());
            (rest, p)
        }
        _ => (rest, params),
    };
    let mut target = match parse_target(&app.registry, group, version, rest) {
        Ok(Some(t)) => t,
        Ok(None) => return ApiError::no_route(&path).into_response(),
        Err(e) => return e.into_response(),
    };
    if watching(&params) && parts.method == Method::GET && target.sub.is_none() {
        // A watch of one object (`.../pods/web?watch=true`, or the legacy `/watch/` form)
        // is upstream's watch of the collection narrowed to that name.
        if let Some(name) = target.name.take() {
            let by_name = format!("metadata.name={name}");
            let selector = match params.get("fieldSelector").filter(|s| !s.is_empty()) {
                Some(s) => format!("{s},{by_name}"),
                None => by_name,
            };
            params.insert("fieldSelector".into(), selector);
        }
    }
    let verb = verb_of(&parts.method, &target, &params);
    let attributes = attributes_of(&target, &params, verb);
    if let Err(e) = app.authorizer.check(&user, &attributes, audit.as_ref()) {
        return e.with_details(&attributes.name, &attributes.api_group, &attributes.resource).into_response();
    }
    if verb == "DELETE"
        && let Err(e) = node_may_delete(&app, &user, &target).await
    {
        return e.into_response();
    }
    let dry_run = params.get("dryRun").is_some_and(|d| d == "All");
    if verb == "WATCH" {
        params.remove("watch");
    }
    let response = if target.resource.strategy.reviews() {
        let user = parts.extensions.get::<UserInfo>().cloned().unwrap_or_else(UserInfo::anonymous);
        match (verb, read_body(body, audit.as_ref()).await) {
            ("CREATE", Ok(body)) => review::create(&app, &target, &user, &content_type(&parts.headers), &body),
            ("CREATE", Err(e)) => Err(e),
            _ => Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource")),
        }
        .unwrap_or_else(|e| e.into_response())
    } else {
        let admit = admission::for_write(
            &app.authorizer,
            &user,
            admission::Target {
                group: attributes.api_group.clone(),
                resource: attributes.resource.clone(),
                subresource: attributes.subresource.clone(),
                namespace: attributes.namespace.clone(),
                name: attributes.name.clone(),
            },
        );
        let creates = verb == "CREATE" && target.sub.is_none();
        let mutate: Option<write::Mutate> = match (&*target.resource.group, &*target.resource.resource) {
            ("", "pods") if creates => app.tokens.clone().filter(|t| t.issues()).map(|tokens| -> write::Mutate {
                Arc::new(move |pod: &mut serde_json::Value| tokens.mount_credentials(pod))
            }),
            ("certificates.k8s.io", "certificatesigningrequests") if creates => {
                let user = user.clone();
                Some(Arc::new(move |csr: &mut serde_json::Value| {
                    crate::registry::certificatesigningrequest::set_requester(csr, &user)
                }))
            }
            _ => None,
        };
        let call = Call { method: &parts.method, headers: &parts.headers, verb, admit, mutate, audit: audit.clone() };
        handle(&app, call, target.clone(), params, body).await.unwrap_or_else(|e| e.into_response())
    };
    let info = request_info(&parts.method, &parts.headers, &target, verb, dry_run);
    app.metrics.observe_request(&info, response.status().as_u16(), started.elapsed());
    response
}

/// What a resource request asks, in the authorizer's terms. A list or watch narrowed to
/// one name by `metadata.name` (as a watch of one object is) names that object, as
/// upstream's request info does.
fn attributes_of(target: &Target, params: &Params, verb: &str) -> Attributes {
    let mut name = target.name.clone().unwrap_or_default();
    if name.is_empty()
        && matches!(verb, "LIST" | "WATCH")
        && let Some(selector) = params.get("fieldSelector")
    {
        let names: Vec<&str> = selector
            .split(',')
            .filter_map(|term| term.strip_prefix("metadata.name==").or_else(|| term.strip_prefix("metadata.name=")))
            .collect();
        if let [one] = names.as_slice() {
            name = (*one).to_owned();
        }
    }
    Attributes::resource(
        &verb.to_ascii_lowercase(),
        &target.resource.group,
        &target.resource.resource,
        target.sub.map(Sub::name).unwrap_or_default(),
        target.namespace.as_deref().unwrap_or_default(),
        &name,
    )
}

/// NodeRestriction for deletes: a node deletes only its own Node and pods bound to it.
async fn node_may_delete(app: &App, user: &UserInfo, target: &Target) -> ApiResult<()> {
    if crate::authz::node::node_name(user).is_none()
        || !target.resource.group.is_empty()
        || !matches!(&*target.resource.resource, "pods" | "nodes")
    {
        return Ok(());
    }
    match super::storage::get_current(app, target).await {
        Ok((obj, _)) => admission::node_may_delete(user, &target.resource.resource, &obj),
        Err(_) => Ok(()),
    }
}

/// Decodes `%XX` escapes in one path segment.
fn percent_decode(segment: &str) -> ApiResult<String> {
    if !segment.contains('%') {
        return Ok(segment.to_owned());
    }
    let bad = || ApiError::bad_request(format!("the URL path segment {segment:?} has a malformed percent-encoding"));
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn content_type(headers: &HeaderMap) -> String {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// How a request asks: its method and headers, the verb they make, and the admission its
/// writes go through.
struct Call<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
    verb: &'static str,
    admit: Option<write::Admit>,
    mutate: Option<write::Mutate>,
    audit: Option<crate::audit::Context>,
}

async fn handle(app: &Arc<App>, call: Call<'_>, target: Target, params: Params, body: Body) -> ApiResult<Response> {
    let Call { method, headers, verb, admit, mutate, audit } = call;
    let ct = content_type(headers);
    // `kubectl get` asks for a Table; `includeObject` says what each row carries.
    let table =
        table::wanted(headers).then(|| params.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into()));
    let table = table.as_deref();
    match (verb, target.sub) {
        ("WATCH", None) => watch::watch(app, &target, &params, table).await,
        ("LIST", None) => read::list(app, &target, &params, table).await,
        ("GET", None | Some(Sub::Status | Sub::Approval)) => read::get(app, &target, table).await,
        ("GET", Some(Sub::Scale)) => subresource::get_scale(app, &target).await,
        ("GET", Some(Sub::Log)) => subresource::logs(app, &target, &params).await,
        ("CREATE", None) if target.name.is_none() => {
            let writer = write::Writer::of(&params, headers)?.with_admission(admit, mutate.clone());
            write::create(app, &target, &params, &writer, &ct, &read_body(body, audit.as_ref()).await?).await
        }
        ("CREATE", Some(Sub::Binding)) => {
            subresource::bind(app, &target, &ct, &read_body(body, audit.as_ref()).await?).await
        }
        ("CREATE", Some(Sub::Token)) => {
            super::token::create(app, &target, &ct, &read_body(body, audit.as_ref()).await?).await
        }
        ("UPDATE", None | Some(Sub::Status)) => {
            let writer = write::Writer::of(&params, headers)?.with_admission(admit, mutate.clone());
            write::update(app, &target, &params, &writer, &ct, &read_body(body, audit.as_ref()).await?).await
        }
        ("PATCH", None | Some(Sub::Status)) => {
            let writer = write::Writer::of(&params, headers)?.with_admission(admit, mutate.clone());
            write::patch(app, &target, &params, &writer, &ct, &read_body(body, audit.as_ref()).await?).await
        }
        ("UPDATE" | "PATCH", Some(Sub::Approval)) => {
            let writer = write::Writer::of(&params, headers)?.with_admission(admit, mutate.clone());
            subresource::update_approval(
                app,
                &target,
                &writer,
                (&ct, verb == "PATCH"),
                &read_body(body, audit.as_ref()).await?,
            )
            .await
        }
        ("UPDATE", Some(Sub::Scale)) => {
            subresource::update_scale(app, &target, &ct, &read_body(body, audit.as_ref()).await?).await
        }
        ("PATCH", Some(Sub::Scale)) => {
            subresource::patch_scale(app, &target, &ct, &read_body(body, audit.as_ref()).await?).await
        }
        ("DELETE", None) => delete::delete(app, &target, &params, &ct, &read_body(body, audit.as_ref()).await?).await,
        ("DELETECOLLECTION", None)
            if (target.resource.namespaced && target.namespace.is_none())
                || !target.resource.deletes_as_collection() =>
        {
            // Upstream serves no such route: a cluster-wide delete of a namespaced kind
            // would empty every namespace at once, and namespaces go one by one.
            Err(ApiError::method_not_allowed("the server does not allow this method on the requested resource"))
        }
        ("DELETECOLLECTION", None) => {
            delete::delete_collection(app, &target, &params, &ct, &read_body(body, audit.as_ref()).await?).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "{} is not supported on {}{}",
            method,
            target.resource.qualified(),
            target.sub.map(|s| format!("/{}", s.name())).unwrap_or_default()
        ))),
    }
}
