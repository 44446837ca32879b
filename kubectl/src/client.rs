//! The connection to the apiserver: kubeconfig loading as stock kubectl does it
//! (`--kubeconfig`, else `KUBECONFIG`, else `~/.kube/config`; `--context`, `--server`,
//! `-n`), raw requests by path, and errors printed in stock kubectl's words.

use std::path::PathBuf;

use futures::{AsyncBufReadExt, Stream, StreamExt};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

/// The flags every command takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Globals {
    /// Path to the kubeconfig file to use for CLI requests.
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The address and port of the Kubernetes API server.
    #[arg(long, short = 's', global = true)]
    pub server: Option<String>,
    /// If present, the namespace scope for this CLI request.
    #[arg(long, short = 'n', global = true)]
    pub namespace: Option<String>,
    /// Ignored, for compatibility with stock kubectl's scripts (no cache is kept).
    #[arg(long, global = true, hide = true)]
    pub cache_dir: Option<PathBuf>,
}

/// An error as kubectl prints it: `Error from server (NotFound): ...` or `error: ...`.
#[derive(Debug)]
pub enum Error {
    /// The apiserver answered with a `Status`.
    Api { code: u16, reason: String, message: String },
    /// Anything else: bad input, a file, the connection.
    Other(anyhow::Error),
    /// Nothing to print: the command said what it had to, and exits with this code (`auth
    /// can-i` answering no).
    Exit(i32),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Api { reason, message, .. } if reason.is_empty() => write!(f, "Error from server: {message}"),
            Error::Api { reason, message, .. } => write!(f, "Error from server ({reason}): {message}"),
            Error::Other(e) => write!(f, "error: {e:#}"),
            Error::Exit(_) => Ok(()),
        }
    }
}

impl std::error::Error for Error {}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Error {
        match e.downcast::<Error>() {
            Ok(inner) => inner,
            Err(e) => Error::Other(e),
        }
    }
}

impl Error {
    /// The HTTP status of an API error.
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Api { code, .. } => Some(*code),
            Error::Other(_) | Error::Exit(_) => None,
        }
    }

    fn from_kube(server: &str, e: kube::Error) -> Error {
        match e {
            kube::Error::Api(status) => {
                let reason = if status.reason.is_empty() { reason_of(status.code) } else { status.reason.clone() };
                Error::Api { code: status.code, reason, message: status.message.clone() }
            }
            kube::Error::HyperError(_) | kube::Error::Service(_) => {
                let host = server.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
                Error::Other(anyhow::anyhow!(
                    "The connection to the server {host} was refused - did you specify the right host or port?"
                ))
            }
            other => Error::Other(other.into()),
        }
    }
}

fn reason_of(code: u16) -> String {
    match code {
        400 => "BadRequest",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        500 => "InternalError",
        _ => "",
    }
    .to_owned()
}

/// Results of commands.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection and the namespace commands default to.
pub struct Ctx {
    /// The client.
    pub client: kube::Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// The server's URL.
    pub server: String,
    /// The kubeconfig files in use (for `config` commands).
    pub globals: Globals,
}

/// The kubeconfig as stock kubectl finds it, if there is one.
pub fn load_kubeconfig(globals: &Globals) -> anyhow::Result<Option<Kubeconfig>> {
    if let Some(path) = &globals.kubeconfig {
        let kc = Kubeconfig::read_from(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        return Ok(Some(kc));
    }
    match Kubeconfig::read() {
        Ok(kc) => Ok(Some(kc)),
        Err(_) if std::env::var_os("KUBECONFIG").is_none() => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading KUBECONFIG: {e}")),
    }
}

/// The path stock kubectl writes `config` changes to.
pub fn kubeconfig_path(globals: &Globals) -> PathBuf {
    if let Some(p) = &globals.kubeconfig {
        return p.clone();
    }
    if let Some(first) = std::env::var_os("KUBECONFIG").and_then(|v| std::env::split_paths(&v).next()) {
        return first;
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".kube").join("config")
}

impl Ctx {
    /// Connects as the flags and kubeconfig say.
    pub async fn new(globals: &Globals) -> Result<Ctx> {
        let kubeconfig = load_kubeconfig(globals)?;
        let mut config = match kubeconfig {
            Some(kc) => {
                let options = KubeConfigOptions { context: globals.context.clone(), ..Default::default() };
                kube::Config::from_custom_kubeconfig(kc, &options).await.map_err(|e| Error::Other(e.into()))?
            }
            // Stock kubectl's fallback when nothing is configured.
            None => kube::Config::new(
                "http://localhost:8080".parse().map_err(|e: http::uri::InvalidUri| Error::Other(e.into()))?,
            ),
        };
        if let Some(server) = &globals.server {
            config.cluster_url = server.parse().map_err(|e| Error::Other(anyhow::anyhow!("--server {server}: {e}")))?;
        }
        config.read_timeout = None;
        let namespace = globals.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| Error::Other(e.into()))?;
        Ok(Ctx { client, namespace, server, globals: globals.clone() })
    }

    fn request(
        method: http::Method,
        path: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Result<http::Request<Vec<u8>>> {
        let mut builder = http::Request::builder().method(method).uri(path);
        if let Some(ct) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        builder = builder.header(http::header::ACCEPT, accept.unwrap_or("application/json"));
        builder.body(body).map_err(|e| Error::Other(anyhow::anyhow!("building a request for {path}: {e}")))
    }

    /// Sends a request and returns the body as text.
    pub async fn text(
        &self,
        method: http::Method,
        path: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Result<String> {
        let req = Self::request(method, path, content_type, accept, body)?;
        self.client.request_text(req).await.map_err(|e| Error::from_kube(&self.server, e))
    }

    /// Sends a request and decodes the JSON answer.
    pub async fn json(
        &self,
        method: http::Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Value> {
        let text = self.text(method, path, content_type, None, body).await?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Other(anyhow::anyhow!("the server's answer to {path} is not JSON: {e}")))
    }

    /// GET as JSON.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.json(http::Method::GET, path, None, Vec::new()).await
    }

    /// POST a JSON object.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(http::Method::POST, path, Some("application/json"), body.to_string().into_bytes()).await
    }

    /// PUT a JSON object.
    pub async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.json(http::Method::PUT, path, Some("application/json"), body.to_string().into_bytes()).await
    }

    /// PATCH with the given patch content type.
    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Result<Value> {
        self.json(http::Method::PATCH, path, Some(content_type), body.to_string().into_bytes()).await
    }

    /// DELETE with options.
    pub async fn delete(&self, path: &str, options: &Value) -> Result<Value> {
        self.json(http::Method::DELETE, path, Some("application/json"), options.to_string().into_bytes()).await
    }

    /// A streamed response, line by line (watches, followed logs).
    pub async fn lines(
        &self,
        path: &str,
        accept: Option<&str>,
    ) -> Result<impl Stream<Item = std::io::Result<String>> + use<>> {
        let req = Self::request(http::Method::GET, path, None, accept, Vec::new())?;
        let reader = self.client.request_stream(req).await.map_err(|e| Error::from_kube(&self.server, e))?;
        Ok(reader.lines().boxed())
    }
}

/// Whether an error is the apiserver's 404.
pub fn is_not_found(e: &Error) -> bool {
    e.code() == Some(404)
}

/// Percent-encodes a query value.
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A `path?k=v&...` URL with the non-empty parameters.
pub fn with_query(path: &str, params: &[(&str, String)]) -> String {
    let query: Vec<String> =
        params.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| format!("{k}={}", query_escape(v))).collect();
    if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) }
}
