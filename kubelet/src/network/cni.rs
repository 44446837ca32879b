//! The Container Network Interface, as upstream's runtimes call it: a network
//! configuration list (`*.conflist`, CNI 1.0) whose plugins run in order for `ADD` (each
//! given the previous one's result) and in reverse for `DEL`, each plugin an executable
//! found on `CNI_PATH` that reads its configuration on stdin and the call's parameters from
//! `CNI_*` environment variables, and answers with a result (or an error) in JSON.
//!
//! The pure parts (which configuration, what each plugin is given, what the result says)
//! are functions of their inputs; [`Cni::exec`] alone runs a process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

/// What can go wrong calling a plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No configuration to use.
    #[error(
        "network not ready: no CNI configuration in {0} (the kubelet writes one once the controller-manager gives the node a spec.podCIDR)"
    )]
    NoConfig(PathBuf),
    /// A configuration that cannot be used.
    #[error("CNI configuration {path}: {message}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A plugin failed, in its own words.
    #[error("CNI plugin {plugin} {command}: {message}")]
    Plugin {
        /// The plugin's type.
        plugin: String,
        /// ADD, DEL or CHECK.
        command: &'static str,
        /// Its message (code, msg, details).
        message: String,
    },
}

/// A network configuration list.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    /// The file it came from.
    pub path: PathBuf,
    /// `name`.
    pub name: String,
    /// `cniVersion`.
    pub cni_version: String,
    /// `plugins`, each a JSON object with at least `type`.
    pub plugins: Vec<Value>,
}

impl ConfList {
    /// Parses a `.conflist`, or a single-plugin `.conf`/`.json` (wrapped into a list, as
    /// libcni does).
    pub fn parse(path: &Path, text: &str) -> Result<ConfList, Error> {
        let bad = |message: String| Error::BadConfig { path: path.to_path_buf(), message };
        let doc: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let name = doc["name"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| bad("no \"name\"".into()))?;
        let cni_version = doc["cniVersion"].as_str().unwrap_or("0.4.0").to_owned();
        let plugins = match doc.get("plugins") {
            Some(Value::Array(list)) => list.clone(),
            Some(_) => return Err(bad("\"plugins\" is not a list".into())),
            None if doc.get("type").is_some() => vec![doc.clone()],
            None => return Err(bad("neither \"plugins\" nor \"type\"".into())),
        };
        if plugins.is_empty() {
            return Err(bad("\"plugins\" is empty".into()));
        }
        if let Some(i) = plugins.iter().position(|p| p["type"].as_str().is_none_or(|t| t.is_empty() || t.contains('/')))
        {
            return Err(bad(format!("plugin {i} has no valid \"type\"")));
        }
        Ok(ConfList { path: path.to_path_buf(), name: name.to_owned(), cni_version, plugins })
    }

    /// The configuration to use from `dir`: the first `*.conflist`, `*.conf` or `*.json`
    /// by name, as upstream's runtimes choose. `None` when there is none.
    pub fn load_dir(dir: &Path) -> Result<Option<ConfList>, Error> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Ok(None) };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| ["conflist", "conf", "json"].contains(&e))
            })
            .collect();
        files.sort();
        let Some(path) = files.into_iter().next() else { return Ok(None) };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::BadConfig { path: path.clone(), message: e.to_string() })?;
        ConfList::parse(&path, &text).map(Some)
    }

    /// What plugin `i` reads on stdin: its own object with the list's `name` and
    /// `cniVersion`, the previous result (`prevResult`, for chained plugins and for DEL),
    /// and the runtime's values for the capabilities it declares (`runtimeConfig`).
    pub fn plugin_stdin(&self, i: usize, prev_result: Option<&Value>, capabilities: &Value) -> Value {
        let mut conf = self.plugins[i].clone();
        conf["name"] = json!(self.name);
        conf["cniVersion"] = json!(self.cni_version);
        if let Some(prev) = prev_result {
            conf["prevResult"] = prev.clone();
        }
        let declared = conf.get("capabilities").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut runtime = serde_json::Map::new();
        for (cap, on) in declared {
            if on == json!(true)
                && let Some(v) = capabilities.get(&cap)
            {
                runtime.insert(cap, v.clone());
            }
        }
        if !runtime.is_empty() {
            conf["runtimeConfig"] = Value::Object(runtime);
        }
        conf
    }

    fn plugin_type(&self, i: usize) -> String {
        self.plugins[i]["type"].as_str().unwrap_or_default().to_owned()
    }
}

/// One attachment of a container to a network: what `CNI_*` says.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`.
    pub netns: PathBuf,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` (`K8S_POD_NAMESPACE` and friends).
    pub args: Vec<(String, String)>,
    /// Values for the plugins' capabilities (`portMappings`).
    pub capabilities: Value,
}

/// The first IPv4 address of a CNI result (without its prefix length).
pub fn first_ipv4(result: &Value) -> Option<String> {
    result["ips"].as_array()?.iter().filter_map(|ip| ip["address"].as_str()).find_map(|a| {
        let addr = a.split('/').next()?;
        addr.parse::<std::net::Ipv4Addr>().ok().map(|ip| ip.to_string())
    })
}

/// The plugins' directories.
#[derive(Debug, Clone)]
pub struct Cni {
    /// `CNI_PATH`, searched in order.
    pub bin_dirs: Vec<PathBuf>,
    /// How long one plugin call may take.
    pub timeout: Duration,
}

impl Cni {
    fn find(&self, plugin: &str) -> Option<PathBuf> {
        self.bin_dirs.iter().map(|d| d.join(plugin)).find(|p| p.is_file())
    }

    /// `ADD`: every plugin in order; the last one's result.
    pub async fn add(&self, list: &ConfList, att: &Attachment) -> Result<Value, Error> {
        let mut prev: Option<Value> = None;
        for i in 0..list.plugins.len() {
            let stdin = list.plugin_stdin(i, prev.as_ref(), &att.capabilities);
            let result = self.exec("ADD", &list.plugin_type(i), &stdin, att).await?;
            prev = Some(result);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// `DEL`: every plugin in reverse, each given the ADD's result. Every plugin runs
    /// even if one fails (what it holds is released as far as it can be); the first
    /// failure is returned.
    pub async fn del(&self, list: &ConfList, att: &Attachment, prev_result: Option<&Value>) -> Result<(), Error> {
        let mut first_error = None;
        for i in (0..list.plugins.len()).rev() {
            let stdin = list.plugin_stdin(i, prev_result, &att.capabilities);
            if let Err(e) = self.exec("DEL", &list.plugin_type(i), &stdin, att).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs one plugin.
    pub async fn exec(
        &self,
        command: &'static str,
        plugin: &str,
        stdin: &Value,
        att: &Attachment,
    ) -> Result<Value, Error> {
        let failed = |message: String| Error::Plugin { plugin: plugin.to_owned(), command, message };
        let path = self.find(plugin).ok_or_else(|| {
            failed(format!(
                "no executable {plugin:?} in {} (Debian: apt-get install containernetworking-plugins)",
                self.bin_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
            ))
        })?;
        let cni_path = std::env::join_paths(&self.bin_dirs).map_err(|e| failed(e.to_string()))?;
        let args: Vec<String> = att.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut cmd = tokio::process::Command::new(&path);
        cmd.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &att.container_id)
            .env("CNI_NETNS", &att.netns)
            .env("CNI_IFNAME", &att.ifname)
            .env("CNI_PATH", cni_path)
            .env("CNI_ARGS", args.join(";"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| failed(format!("starting {}: {e}", path.display())))?;
        let input = serde_json::to_vec(stdin).map_err(|e| failed(e.to_string()))?;
        if let Some(mut pipe) = child.stdin.take() {
            use tokio::io::AsyncWriteExt;
            pipe.write_all(&input).await.map_err(|e| failed(format!("writing its configuration: {e}")))?;
        }
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| failed(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| failed(e.to_string()))?;
        if !out.status.success() {
            return Err(failed(plugin_error(&out.stdout, &out.stderr, out.status.code())));
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| failed(format!("its answer is not JSON: {e}")))
    }
}

/// A failed plugin's message: its JSON error (`code`, `msg`, `details`) when it wrote one,
/// else what it printed.
pub fn plugin_error(stdout: &[u8], stderr: &[u8], code: Option<i32>) -> String {
    if let Ok(e) = serde_json::from_slice::<Value>(stdout)
        && let Some(msg) = e["msg"].as_str()
    {
        let details = e["details"].as_str().filter(|d| !d.is_empty()).map(|d| format!(" ({d})")).unwrap_or_default();
        return format!("{msg}{details} [code {}]", e["code"]);
    }
    let text = String::from_utf8_lossy(if stdout.is_empty() { stderr } else { stdout });
    format!("exit status {}: {}", code.map_or("signal".into(), |c| c.to_string()), text.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> ConfList {
        ConfList::parse(
            Path::new("10-k.conflist"),
            r#"{"cniVersion":"1.0.0","name":"k","plugins":[
                {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},
                {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
        )
        .expect("parses")
    }

    #[test]
    fn each_plugin_gets_the_lists_name_and_version() {
        let l = list();
        let first = l.plugin_stdin(0, None, &json!({}));
        assert_eq!(first["name"], "k");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert_eq!(first["bridge"], "cni0");
        assert!(first.get("prevResult").is_none() && first.get("runtimeConfig").is_none());
    }

    #[test]
    fn a_chained_plugin_gets_the_previous_result_and_its_declared_capabilities() {
        let l = list();
        let prev = json!({"ips": [{"address": "10.244.1.2/24"}]});
        let caps = json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], "bandwidth": {"x": 1}});
        let second = l.plugin_stdin(1, Some(&prev), &caps);
        assert_eq!(second["prevResult"], prev);
        assert_eq!(second["runtimeConfig"], json!({"portMappings": caps["portMappings"]}), "bandwidth is not declared");
        // A plugin that declares nothing gets no runtimeConfig.
        assert!(l.plugin_stdin(0, Some(&prev), &caps).get("runtimeConfig").is_none());
    }

    #[test]
    fn a_single_plugin_conf_is_a_list_of_one() {
        let l = ConfList::parse(Path::new("a.conf"), r#"{"cniVersion":"0.4.0","name":"n","type":"loopback"}"#)
            .expect("parses");
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugin_type(0), "loopback");
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        for (text, says) in [
            ("{", "not JSON"),
            (r#"{"plugins":[{"type":"bridge"}]}"#, "no \"name\""),
            (r#"{"name":"n","plugins":[]}"#, "empty"),
            (r#"{"name":"n","plugins":[{"type":"../../bin/sh"}]}"#, "no valid \"type\""),
            (r#"{"name":"n"}"#, "neither"),
        ] {
            let e = ConfList::parse(Path::new("x.conflist"), text).expect_err(text).to_string();
            assert!(e.contains(says) && e.contains("x.conflist"), "{text}: {e}");
        }
    }

    #[test]
    fn the_first_file_by_name_is_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(ConfList::load_dir(dir.path()).expect("empty"), None);
        std::fs::write(dir.path().join("README"), "not a config").expect("write");
        std::fs::write(dir.path().join("20-b.conflist"), r#"{"name":"b","plugins":[{"type":"bridge"}]}"#).expect("w");
        std::fs::write(dir.path().join("10-a.conf"), r#"{"name":"a","type":"ptp"}"#).expect("write");
        assert_eq!(ConfList::load_dir(dir.path()).expect("loads").map(|l| l.name), Some("a".into()));
    }

    #[test]
    fn the_pod_ip_is_the_first_ipv4_address() {
        let r = json!({"ips": [{"address": "fd00::2/64"}, {"address": "10.244.1.7/24", "gateway": "10.244.1.1"}]});
        assert_eq!(first_ipv4(&r).as_deref(), Some("10.244.1.7"));
        assert_eq!(first_ipv4(&json!({})), None);
    }

    #[test]
    fn plugin_errors_are_told_in_the_plugins_words() {
        let m =
            plugin_error(br#"{"code":999,"msg":"container veth name provided (eth0) already exists"}"#, b"", Some(1));
        assert_eq!(m, "container veth name provided (eth0) already exists [code 999]");
        assert_eq!(plugin_error(b"", b"boom\n", Some(2)), "exit status 2: boom");
    }
}
