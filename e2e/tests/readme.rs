//! The README's quick start, run as a user pastes it: the fenced blocks marked
//! `<!-- quickstart: NAME -->` are read from README.md and their commands run verbatim, in
//! order, from the repository's root. `cluster` brings the cluster up (`deploy/local-up.sh`
//! with its defaults: real containers, in the foreground, stopped with Ctrl-C as a user
//! would); `tutorial` is then run line by line in a shell, with the `export`s of earlier
//! lines in force. A command that exits non-zero fails the test, and so does one that
//! leaves the cluster short of what it says: after `run`/`scale --replicas=N`, N Running
//! pods; after `rolling-update --image=I`, every pod on I; after `--rollback`, every pod
//! back on the image before; `logs` prints something. What it checks is read from the
//! command itself, so the README cannot drift from what is tested.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::{docker, docker_available, pod_ready};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};

/// A marked block of commands: its lines, continuation lines joined, comments dropped.
#[derive(Debug, PartialEq)]
struct Block {
    name: String,
    commands: Vec<String>,
}

/// The blocks of `markdown` marked `<!-- quickstart: NAME -->` on the line before their
/// opening fence.
fn quickstart_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line.trim().strip_prefix("<!-- quickstart:").and_then(|r| r.strip_suffix("-->")) else {
            continue;
        };
        let fence = lines.next().unwrap_or_default();
        assert!(fence.starts_with("```"), "the quickstart marker {name:?} must stand right before a fenced block");
        let mut commands = Vec::new();
        let mut pending = String::new();
        for line in lines.by_ref() {
            if line.starts_with("```") {
                break;
            }
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                continue;
            }
            pending.push_str(line);
            commands.push(std::mem::take(&mut pending));
        }
        blocks.push(Block { name: name.trim().to_owned(), commands });
    }
    blocks
}

/// The value of `--flag=V` or `--flag V` in a command's words.
fn flag<'a>(words: &[&'a str], name: &str) -> Option<&'a str> {
    let eq = format!("{name}=");
    words
        .iter()
        .enumerate()
        .find_map(|(i, w)| w.strip_prefix(&eq).or_else(|| (*w == name).then(|| words.get(i + 1).copied()).flatten()))
}

/// What a command of the tutorial promises about the cluster once it has returned.
#[derive(Debug, PartialEq)]
enum Promise {
    /// `n` Running, Ready pods labelled `run=<name>`, all on the same image.
    Replicas { name: String, n: usize },
    /// Every live pod of `run=<name>` on `image`.
    Image { name: String, image: String },
    /// The image in use before the last `rolling-update --image`.
    RolledBack { name: String },
    /// Something printed.
    Output,
    /// Nothing beyond its exit code.
    None,
}

/// The promise of one command (the words before `--` only: what follows is the container's).
fn promise(command: &str) -> Promise {
    let words: Vec<&str> = command.split_whitespace().take_while(|w| *w != "--").collect();
    let positional: Vec<&str> = words.iter().copied().filter(|w| !w.starts_with('-')).collect();
    if words.first() != Some(&"kubectl") {
        return Promise::None;
    }
    let verb = positional.get(1).copied().unwrap_or_default();
    let name = || {
        // The first positional word after the verb that is not a flag's value.
        words
            .iter()
            .enumerate()
            .skip(2)
            .find(|(i, w)| {
                let after_flag_wanting_value = words[i - 1].starts_with("--") && !words[i - 1].contains('=');
                !w.starts_with('-') && !after_flag_wanting_value
            })
            .map(|(_, w)| w.to_string())
            .unwrap_or_default()
    };
    match verb {
        "run" | "scale" => match flag(&words, "--replicas").and_then(|n| n.parse().ok()) {
            Some(n) => Promise::Replicas { name: name(), n },
            None => Promise::None,
        },
        "rolling-update" if words.contains(&"--rollback") => Promise::RolledBack { name: name() },
        "rolling-update" => match flag(&words, "--image") {
            Some(image) => Promise::Image { name: name(), image: image.to_owned() },
            None => Promise::None,
        },
        "logs" | "get" => Promise::Output,
        _ => Promise::None,
    }
}

fn image_of(p: &Pod) -> String {
    p.spec.as_ref().and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
}

/// The live (not terminating) pods of `run=<name>`.
async fn live(pods: &Api<Pod>, name: &str) -> Vec<Pod> {
    let list = pods.list(&ListParams::default().labels(&format!("run={name}"))).await.unwrap();
    list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

/// Waits (60 s at most: the commands wait themselves, this covers the last status
/// writes) until `good` holds of the live pods of `run=<name>`.
async fn holds(pods: &Api<Pod>, name: &str, what: &str, good: impl Fn(&[Pod]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let live = live(pods, name).await;
        if good(&live) {
            return;
        }
        if Instant::now() > deadline {
            let seen: Vec<_> = live
                .iter()
                .map(|p| {
                    format!("{} {} ready={}", p.metadata.name.as_deref().unwrap_or_default(), image_of(p), pod_ready(p))
                })
                .collect();
            panic!("the cluster is short of what the README says ({what}); pods of run={name}: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `deploy/local-up.sh` as the user runs it in a terminal: in a process group of its own,
/// with SIGINT handled as a shell started from a terminal has it (a test runner started
/// in the background may hand it down ignored, and bash cannot trap a signal ignored on
/// entry), stopped with Ctrl-C (SIGINT to the group) when dropped, even when the test
/// fails, so nothing is left running.
struct LocalUp {
    child: Child,
    output: PathBuf,
}

impl LocalUp {
    fn start(root: &Path, command: &str, output: PathBuf) -> LocalUp {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::create(&output).unwrap();
        let child = Command::new("env")
            .args(["--default-signal=INT,QUIT", "bash", "-c", &format!("exec {command}")])
            .process_group(0)
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        LocalUp { child, output }
    }

    fn output(&self) -> String {
        let mut s = String::new();
        let _ = std::fs::File::open(&self.output).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// Waits for `cluster ready` (a first build takes minutes, so 20 at most).
    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(1200);
        while !self.output().lines().any(|l| l.starts_with("cluster ready")) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("local-up exited ({status}) before the cluster was ready:\n{}", self.output());
            }
            assert!(Instant::now() < deadline, "local-up not ready after 20 min:\n{}", self.output());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Ctrl-C, and its exit status once it has stopped everything.
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        use nix::sys::signal::{Signal, killpg};
        let group = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // Nothing of it may outlive the test: the whole group goes.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
        None
    }
}

impl Drop for LocalUp {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.interrupt();
        }
    }
}

/// The checkout's `.cluster`, removed when dropped if it did not exist before.
struct ClusterDir {
    path: PathBuf,
    ours: bool,
}

impl ClusterDir {
    fn claim(path: PathBuf) -> ClusterDir {
        let ours = !path.exists();
        ClusterDir { path, ours }
    }
}

impl Drop for ClusterDir {
    fn drop(&mut self) {
        if self.ours {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs one tutorial line in a shell from the repository's root, with `exports` first.
fn run_line(root: &Path, exports: &[String], line: &str) -> (String, String) {
    let script = format!("set -e\n{}\n{line}\n", exports.join("\n"));
    let out = Command::new("bash").args(["-c", &script]).current_dir(root).stdin(Stdio::null()).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "the README's command `{line}` failed ({}):\n{stdout}{stderr}", out.status);
    (stdout, stderr)
}

#[tokio::test]
async fn readme_quickstart_works_as_pasted() {
    if !docker_available("readme_quickstart_works_as_pasted") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let blocks = quickstart_blocks(&readme);
    let block = |name: &str| {
        blocks.iter().find(|b| b.name == name).unwrap_or_else(|| panic!("README.md has no quickstart block {name:?}"))
    };
    let (cluster, tutorial, network) = (block("cluster"), block("tutorial"), block("network"));
    assert_eq!(cluster.commands.len(), 1, "the cluster block is one command that stays in the foreground");

    // local-up keeps its cluster in the checkout's `.cluster`. A cluster this test made goes
    // with it (dropped after `up`), so the next run starts as a new user does; one the user
    // had before is left alone.
    let _cluster_dir = ClusterDir::claim(root.join(".cluster"));
    let scratch = tempfile::tempdir().unwrap();
    let mut up = LocalUp::start(&root, &cluster.commands[0], scratch.path().join("local-up.out"));
    up.ready().await;
    let output = up.output();
    assert!(output.contains("docker runtime"), "local-up's default is real containers:\n{output}");

    let kube = e2e::client_from_kubeconfig(&root.join(".cluster/kubeconfig")).await.unwrap();
    let pods: Api<Pod> = Api::default_namespaced(kube.clone());
    let nodes: Vec<String> = Api::<Node>::all(kube.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();

    let mut exports = Vec::new();
    let mut images: Vec<String> = Vec::new();
    let mut checked = 0;
    for line in &tutorial.commands {
        let (stdout, _) = run_line(&root, &exports, line);
        if line.starts_with("export ") {
            exports.push(line.clone());
        }
        match promise(line) {
            Promise::Replicas { name, n } => {
                let what = format!("`{line}`: {n} Running pods");
                holds(&pods, &name, &what, |live| {
                    live.len() == n
                        && live.iter().all(|p| {
                            pod_ready(p) && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                        })
                })
                .await;
                let image = image_of(&live(&pods, &name).await[0]);
                if images.last() != Some(&image) {
                    images.push(image);
                }
            }
            Promise::Image { name, image } => {
                holds(&pods, &name, &format!("`{line}`: every pod on {image}"), |live| {
                    !live.is_empty() && live.iter().all(|p| image_of(p) == image && pod_ready(p))
                })
                .await;
                images.push(image);
            }
            Promise::RolledBack { name } => {
                assert!(images.len() >= 2, "`{line}` comes after a rolling update in the README");
                images.pop();
                let image = images.last().unwrap().clone();
                holds(&pods, &name, &format!("`{line}`: every pod back on {image}"), |live| {
                    !live.is_empty() && live.iter().all(|p| image_of(p) == image && pod_ready(p))
                })
                .await;
            }
            Promise::Output => assert!(!stdout.trim().is_empty(), "`{line}` printed nothing"),
            Promise::None => continue,
        }
        checked += 1;
    }
    assert!(checked >= 5, "the tutorial checks run, scale, logs, rolling-update and rollback ({checked} checked)");

    // The network block: a Service by name from a pod, spread over its replicas, and its
    // cluster IP from the host.
    for line in &network.commands {
        let (stdout, _) = run_line(&root, &exports, line);
        if let Promise::Replicas { name, n } = promise(line) {
            holds(&pods, &name, &format!("`{line}`: {n} ready pods"), |live| {
                live.len() == n && live.iter().all(pod_ready)
            })
            .await;
        }
        if line.starts_with("kubectl logs") {
            let answered: std::collections::BTreeSet<&str> =
                stdout.lines().filter_map(|l| l.strip_prefix("hello from ")).collect();
            assert_eq!(stdout.lines().count(), 6, "`{line}`: six answers:\n{stdout}");
            assert!(answered.len() >= 2, "`{line}`: the requests are spread over the replicas:\n{stdout}");
        }
        if line.starts_with("wget") {
            assert!(stdout.starts_with("hello from "), "`{line}`: {stdout}");
        }
    }

    // Ctrl-C stops it all: the processes, and every container of its nodes.
    let status = up.interrupt().expect("local-up stops within 2 minutes of Ctrl-C");
    assert!(status.success(), "local-up after Ctrl-C: {status}\n{}", up.output());
    for node in &nodes {
        let left = docker(&["ps", "-aq", "--filter", &format!("label=io.kubernetes.managed-by={node}")]).unwrap();
        assert!(left.trim().is_empty(), "containers of node {node} left after Ctrl-C: {left}");
    }
    assert!(!root.join(".cluster/local-up.pid").exists(), "local-up's pid file is removed when it stops");
    // ... and what it did to the host's network: the bridge, the forward rules, kube-proxy's
    // table, the DNS address.
    let links = Command::new("ip").args(["-o", "link", "show", "cni0"]).output().unwrap();
    assert!(!links.status.success(), "the pod bridge is left: {}", String::from_utf8_lossy(&links.stdout));
    let rules = Command::new("iptables").args(["-S", "FORWARD"]).output().map(|o| o.stdout).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&rules).contains("kubelet pod network"), "forward rules are left");
    let tables = Command::new("nft").args(["list", "tables"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("kube-proxy"), "kube-proxy's table is left");
    let lo = Command::new("ip").args(["-o", "addr", "show", "dev", "lo"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&lo.stdout).contains("169.254.20.10"), "the cluster DNS address is left");
}

#[test]
fn blocks_are_read_from_markdown() {
    let md = "text\n<!-- quickstart: one -->\n```sh\n# a comment\nexport A=1\n\nkubectl run web \\\n  --replicas=3\n```\n\
              ```sh\nnot marked\n```\n<!-- quickstart: two -->\n```sh\nls\n```\n";
    assert_eq!(
        quickstart_blocks(md),
        vec![
            Block { name: "one".into(), commands: vec!["export A=1".into(), "kubectl run web --replicas=3".into()] },
            Block { name: "two".into(), commands: vec!["ls".into()] },
        ]
    );
}

#[test]
fn promises_are_read_from_commands() {
    let r = |name: &str, n| Promise::Replicas { name: name.into(), n };
    assert_eq!(promise("kubectl run web --image=busybox:local --replicas=3 --wait -- sh -c 'sleep 1'"), r("web", 3));
    assert_eq!(promise("kubectl scale --replicas=6 web --wait"), r("web", 6));
    assert_eq!(promise("kubectl scale web --replicas 6"), r("web", 6));
    assert_eq!(
        promise("kubectl rolling-update web --image=busybox:v2 --update-period=1s"),
        Promise::Image { name: "web".into(), image: "busybox:v2".into() }
    );
    assert_eq!(promise("kubectl rolling-update web --rollback"), Promise::RolledBack { name: "web".into() });
    assert_eq!(promise("kubectl logs deploy/web"), Promise::Output);
    assert_eq!(promise("kubectl run web --image=x -- --replicas=3"), Promise::None);
    assert_eq!(promise("export KUBECONFIG=x"), Promise::None);
}

/// Every flag the systemd units in `deploy/systemd/` pass is one their binary has (a unit
/// with a wrong flag would fail only on the user's machine).
#[test]
fn systemd_units_use_flags_the_binaries_have() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("deploy/systemd")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("service") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap().replace("\\\n", " ");
        let Some(exec) = text.lines().find_map(|l| l.strip_prefix("ExecStart=")) else { continue };
        let mut words = exec.split_whitespace();
        let program = words.next().unwrap();
        let Some(binary) = program.strip_prefix("/usr/local/bin/") else { continue };
        let help = Command::new(e2e::binary(binary)).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        for flag in words.filter_map(|w| w.strip_prefix("--")).map(|w| w.split('=').next().unwrap_or_default()) {
            assert!(help.contains(&format!("--{flag}")), "{}: {binary} has no --{flag}", path.display());
            checked += 1;
        }
    }
    assert!(checked > 10, "the units' flags were read ({checked})");
}
