//! The process runtime: each container is its command run as a host process in its own
//! process group (like Nomad's raw_exec), for machines without Docker. State lives in
//! files under `--root-dir`, so a restarted kubelet finds what it was running:
//! `pods/<uid>/containers/<name>-<attempt>/{pid,exit,log}`. A small `sh` wrapper records the
//! exit code even when the kubelet is not the process's parent any more.
//!
//! A pod on the pod network ([`NetworkMode::Pod`]) gets a network namespace of its own,
//! pinned at `netns/<uid>`, and its processes (and exec probes) run inside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::{
    Container, ContainerConfig, Error, LogOptions, NetworkMode, Result, Runtime, Sandbox, SandboxConfig, State, now,
    tail,
};
use crate::network::netns;

/// Host processes under a root directory.
pub struct Process {
    root: PathBuf,
}

fn io(e: std::io::Error) -> Error {
    Error::Runtime(e.to_string())
}

/// A container id: `<pod uid>/<name>-<attempt>`.
fn split_id(id: &str) -> Result<(&str, &str)> {
    id.split_once('/').ok_or_else(|| Error::NotFound(format!("container {id}")))
}

fn alive(pid: i32) -> bool {
    // A zombie has exited: only its parent has not collected it yet.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|s| s != "Z")
        }
        Err(_) => false,
    }
}

/// What runs on the host for a container: `command` then `args`, as a container runtime
/// runs them. There is no image entrypoint here, so with no `command` the `args` alone are
/// the command line (`kubectl run NAME --image=X -- CMD ARGS` sends only args).
fn host_argv(config: &ContainerConfig) -> Result<Vec<String>> {
    let argv: Vec<String> = config.command.iter().chain(&config.args).cloned().collect();
    if argv.is_empty() {
        return Err(Error::Unsupported(format!(
            "container {:?}: the process runtime runs command and args on the host and has no image entrypoint; set command or args",
            config.name
        )));
    }
    Ok(argv)
}

impl Process {
    /// Keeps state under `root`.
    pub fn new(root: &Path) -> Result<Process> {
        std::fs::create_dir_all(root.join("pods")).map_err(io)?;
        Ok(Process { root: root.to_path_buf() })
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join("pods").join(uid)
    }

    fn netns(&self, uid: &str) -> PathBuf {
        self.root.join("netns").join(uid)
    }

    fn dir(&self, id: &str) -> Result<PathBuf> {
        let (uid, rest) = split_id(id)?;
        Ok(self.pod_dir(uid).join("containers").join(rest))
    }

    fn read(dir: &Path, file: &str) -> Option<String> {
        std::fs::read_to_string(dir.join(file)).ok().map(|s| s.trim().to_owned())
    }

    fn state(dir: &Path) -> State {
        let started_at = Self::read(dir, "started").unwrap_or_default();
        if let Some(code) = Self::read(dir, "exit").and_then(|c| c.parse::<i32>().ok()) {
            let finished_at = Self::read(dir, "finished").unwrap_or_else(now);
            return State::Exited { code, started_at, finished_at, oom_killed: false };
        }
        match Self::read(dir, "pid").and_then(|p| p.parse::<i32>().ok()) {
            Some(pid) if alive(pid) => State::Running { started_at },
            // The wrapper itself was killed (SIGKILL): record it as such.
            Some(_) => {
                let _ = std::fs::write(dir.join("exit"), "137");
                let _ = std::fs::write(dir.join("finished"), now());
                State::Exited { code: 137, started_at, finished_at: now(), oom_killed: false }
            }
            None => State::Created,
        }
    }

    fn container(uid: &str, dir: &Path) -> Option<Container> {
        let base = dir.file_name()?.to_str()?.to_owned();
        let (name, attempt) = base.rsplit_once('-')?;
        Some(Container {
            id: format!("{uid}/{base}"),
            pod_uid: uid.to_owned(),
            name: name.to_owned(),
            attempt: attempt.parse().ok()?,
            image: Self::read(dir, "image").unwrap_or_default(),
            state: Self::state(dir),
        })
    }
}

#[async_trait]
impl Runtime for Process {
    fn name(&self) -> &'static str {
        "process"
    }

    fn version(&self) -> String {
        "process://1.0".into()
    }

    fn uses_images(&self) -> bool {
        false
    }

    async fn image_present(&self, _image: &str) -> Result<bool> {
        // Images mean nothing here: the command runs from the host.
        Ok(true)
    }

    async fn run_sandbox(&self, config: &SandboxConfig) -> Result<Sandbox> {
        std::fs::create_dir_all(self.pod_dir(&config.pod_uid).join("containers")).map_err(io)?;
        if config.network == NetworkMode::Pod {
            let path = self.netns(&config.pod_uid);
            netns::create(&path).map_err(|e| Error::Runtime(format!("the pod's network namespace: {e}")))?;
            return Ok(Sandbox { id: config.pod_uid.clone(), ip: String::new(), netns: Some(path) });
        }
        Ok(Sandbox { id: config.pod_uid.clone(), ip: "127.0.0.1".into(), netns: None })
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<()> {
        for c in self.pod_containers(pod_uid).await? {
            if matches!(c.state, State::Running { .. }) {
                self.stop_container(&c.id, Duration::ZERO).await?;
            }
        }
        netns::remove(&self.netns(pod_uid)).map_err(io)?;
        match std::fs::remove_dir_all(self.pod_dir(pod_uid)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn create_container(&self, sandbox: &Sandbox, config: &ContainerConfig) -> Result<String> {
        let mut argv = host_argv(config)?;
        // Processes share the host's filesystem: the only mounts they get are under
        // /var/run/secrets (a pod's service account credentials), on a /run of their own.
        if let Some(m) = config.mounts.iter().find(|m| !m.container_path.starts_with("/var/run/secrets/")) {
            return Err(Error::Unsupported(format!(
                "container {:?}: the process runtime cannot mount {:?}; use the docker runtime",
                config.name, m.container_path
            )));
        }
        // A pod of its own network sees its own resolv.conf and credentials: the command
        // runs in a mount namespace of its own where the kubelet's files are bound in. A
        // pod on the host's network (the kubelet is not root) runs without them.
        if sandbox.netns.is_some() && (config.resolv_conf.is_some() || !config.mounts.is_empty()) {
            // The paths are the script's positional parameters ($1, $2, ...), then the
            // command's own arguments once they are shifted away.
            let mut values: Vec<String> = Vec::new();
            let mut script = String::from("set -e; ");
            let param = |values: &mut Vec<String>, value: String| {
                values.push(value);
                format!("\"${{{}}}\"", values.len())
            };
            if let Some(resolv) = &config.resolv_conf {
                let p = param(&mut values, resolv.display().to_string());
                script.push_str(&format!("mount --bind {p} /etc/resolv.conf; "));
            }
            if !config.mounts.is_empty() {
                script.push_str("mount -t tmpfs -o mode=755 tmpfs /run; ");
            }
            for m in &config.mounts {
                let host = param(&mut values, m.host_path.display().to_string());
                let target = param(&mut values, m.container_path.replacen("/var/run/", "/run/", 1));
                script.push_str(&format!("mkdir -p {target}; mount --bind {host} {target}; "));
                if m.read_only {
                    script.push_str(&format!("mount -o remount,bind,ro {target}; "));
                }
            }
            script.push_str(&format!("shift {}; exec \"$@\"", values.len()));
            let mut wrapped: Vec<String> = ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
            wrapped.push(script);
            wrapped.push("pod".into());
            wrapped.extend(values);
            wrapped.append(&mut argv);
            argv = wrapped;
        } else if !config.mounts.is_empty() {
            tracing::warn!(
                container = config.name,
                "the pod is on the host's network: its service account credentials are not mounted"
            );
        }
        let id = format!("{}/{}-{}", sandbox.id, config.name, config.attempt);
        let dir = self.dir(&id)?;
        std::fs::create_dir_all(&dir).map_err(io)?;
        let spec = serde_json::json!({"argv": argv, "env": config.env, "workingDir": config.working_dir, "netns": sandbox.netns});
        std::fs::write(dir.join("spec.json"), spec.to_string()).map_err(io)?;
        std::fs::write(dir.join("image"), &config.image).map_err(io)?;
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<()> {
        let dir = self.dir(id)?;
        let spec: serde_json::Value = serde_json::from_str(
            &Self::read(&dir, "spec.json").ok_or_else(|| Error::NotFound(format!("container {id}")))?,
        )
        .map_err(|e| Error::Runtime(e.to_string()))?;
        let argv: Vec<String> = serde_json::from_value(spec["argv"].clone()).unwrap_or_default();
        let env: Vec<(String, String)> = serde_json::from_value(spec["env"].clone()).unwrap_or_default();
        let ns: Option<PathBuf> = serde_json::from_value(spec["netns"].clone()).unwrap_or_default();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("log")).map_err(io)?;
        let exit_file = dir.join("exit");
        let finished_file = dir.join("finished");
        let mut cmd = tokio::process::Command::new("/bin/sh");
        // The wrapper outlives a TERM long enough to record how the command ended.
        cmd.arg("-c")
            .arg(r#"trap true TERM INT; "$@"; code=$?; date -u +%Y-%m-%dT%H:%M:%SZ > "$FINISHED_FILE"; echo $code > "$EXIT_FILE""#)
            .arg("sh")
            .args(&argv)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("EXIT_FILE", &exit_file)
            .env("FINISHED_FILE", &finished_file)
            .current_dir(spec["workingDir"].as_str().map_or(dir.clone(), PathBuf::from))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = netns::run_in(ns.as_deref(), move || cmd.spawn())
            .await
            .map_err(|e| Error::Runtime(format!("starting {argv:?}: {e}")))?;
        let pid = child.id().ok_or_else(|| Error::Runtime("the process exited at once".into()))?;
        std::fs::write(dir.join("started"), now()).map_err(io)?;
        std::fs::write(dir.join("pid"), pid.to_string()).map_err(io)?;
        // Reap it (its exit code is in the file the wrapper writes).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(())
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let dir = self.dir(id)?;
        let Some(pid) = Self::read(&dir, "pid").and_then(|p| p.parse::<i32>().ok()) else { return Ok(()) };
        if !alive(pid) {
            return Ok(());
        }
        let _ = killpg(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        while alive(pid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(pid) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            for _ in 0..100 {
                if !alive(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !dir.join("exit").exists() {
                let _ = std::fs::write(dir.join("exit"), "137");
                let _ = std::fs::write(dir.join("finished"), now());
            }
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        match std::fs::remove_dir_all(self.dir(id)?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(e)),
        }
    }

    async fn pod_containers(&self, pod_uid: &str) -> Result<Vec<Container>> {
        let Ok(entries) = std::fs::read_dir(self.pod_dir(pod_uid).join("containers")) else { return Ok(Vec::new()) };
        Ok(entries.filter_map(|e| e.ok()).filter_map(|e| Self::container(pod_uid, &e.path())).collect())
    }

    async fn pods(&self) -> Result<Vec<String>> {
        let entries = std::fs::read_dir(self.root.join("pods")).map_err(io)?;
        let mut uids: std::collections::BTreeSet<String> =
            entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().map(str::to_owned)).collect();
        // A namespace whose pod directory went (a removal cut short) is a pod's too.
        if let Ok(entries) = std::fs::read_dir(self.root.join("netns")) {
            uids.extend(entries.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().map(str::to_owned)));
        }
        Ok(uids.into_iter().collect())
    }

    async fn exec(&self, id: &str, command: &[String], timeout: Duration) -> Result<i32> {
        let Some((program, args)) = command.split_first() else {
            return Err(Error::Unsupported("an empty exec command".into()));
        };
        let spec: serde_json::Value =
            Self::read(&self.dir(id)?, "spec.json").and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        let ns: Option<PathBuf> = serde_json::from_value(spec["netns"].clone()).unwrap_or_default();
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).kill_on_drop(true);
        let run = async move {
            let mut child = netns::run_in(ns.as_deref(), move || cmd.spawn()).await?;
            child.wait().await
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(Ok(status)) => Ok(status.code().unwrap_or(128)),
            Ok(Err(e)) => Err(Error::Runtime(format!("running {command:?}: {e}"))),
            Err(_) => Err(Error::Runtime(format!("{command:?} timed out after {timeout:?}"))),
        }
    }

    async fn logs(&self, id: &str, options: LogOptions) -> Result<BoxStream<'static, Bytes>> {
        let dir = self.dir(id)?;
        let path = dir.join("log");
        let text = std::fs::read(&path).unwrap_or_default();
        let first = match options.tail_lines {
            Some(n) => tail(&text, n).to_vec(),
            None => text.clone(),
        };
        let first = futures::stream::iter(vec![Bytes::from(first)]);
        if !options.follow {
            return Ok(first.boxed());
        }
        let offset = text.len() as u64;
        let more = futures::stream::unfold((path, offset, dir), |(path, offset, dir)| async move {
            loop {
                let data = std::fs::read(&path).unwrap_or_default();
                if (data.len() as u64) > offset {
                    let chunk = Bytes::copy_from_slice(&data[offset as usize..]);
                    return Some((chunk, (path, data.len() as u64, dir)));
                }
                if matches!(Process::state(&dir), State::Exited { .. }) {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(first.chain(more).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(command: &[&str], args: &[&str]) -> ContainerConfig {
        ContainerConfig {
            name: "web".into(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn argv_is_command_then_args() {
        assert_eq!(
            host_argv(&config(&["sh", "-c"], &["echo hi"])).ok(),
            Some(vec!["sh".into(), "-c".into(), "echo hi".into()])
        );
    }

    #[test]
    fn args_alone_are_the_command_line() {
        // `kubectl run web --image=busybox -- sleep 3600` sends args only.
        assert_eq!(host_argv(&config(&[], &["sleep", "3600"])).ok(), Some(vec!["sleep".into(), "3600".into()]));
    }

    #[test]
    fn neither_is_a_clear_error() {
        let e = host_argv(&config(&[], &[])).expect_err("nothing to run");
        assert!(e.to_string().contains("set command or args"), "{e}");
    }

    #[tokio::test]
    async fn runs_args_without_command() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = Process::new(dir.path()).expect("runtime");
        let sandbox =
            rt.run_sandbox(&SandboxConfig { pod_uid: "u1".into(), ..Default::default() }).await.expect("sandbox");
        let id = rt.create_container(&sandbox, &config(&[], &["sh", "-c", "echo from-args"])).await.expect("create");
        rt.start_container(&id).await.expect("start");
        let mut state = State::Created;
        for _ in 0..100 {
            state = rt.pod_containers("u1").await.expect("list")[0].state.clone();
            if matches!(state, State::Exited { .. }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(matches!(state, State::Exited { code: 0, .. }), "{state:?}");
        assert_eq!(std::fs::read_to_string(rt.dir(&id).expect("dir").join("log")).expect("log"), "from-args\n");
    }
}
