//! Command-line helpers for the tests: a kubectl (ours or the stock one) pointed at a
//! kubeconfig, and the lines a long-running command prints, read as they come.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binary;

/// The lines a child process (`kubectl get -w`) prints, read as they come, so that a test
/// waits for what it expects instead of sleeping and hoping.
pub struct Lines {
    lines: std::sync::Arc<parking_lot::Mutex<Vec<String>>>,
}

impl Lines {
    /// Reads `child`'s stdout (which must be piped) in the background.
    pub fn of(child: &mut Child) -> Lines {
        let lines = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let sink = lines.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(out).lines().map_while(std::io::Result::ok) {
                    sink.lock().push(line);
                }
            });
        }
        Lines { lines }
    }

    /// Waits (polling) until some line printed so far satisfies `pred`; false after `within`.
    pub async fn until(&self, within: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.lines.lock().iter().any(|l| pred(l)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything printed so far.
    pub fn text(&self) -> String {
        self.lines.lock().join("\n")
    }
}

/// A kubectl (ours or the stock one) pointed at a kubeconfig.
pub struct Kubectl {
    program: PathBuf,
    /// The kubeconfig it reads.
    pub kubeconfig: String,
    cache: Option<PathBuf>,
}

impl Kubectl {
    /// Our kubectl, built beside the tests.
    pub fn ours(kubeconfig: &str) -> Kubectl {
        Kubectl { program: binary("kubectl"), kubeconfig: kubeconfig.to_owned(), cache: None }
    }

    /// The stock kubectl on PATH, its discovery cache in `cache`; `None` (after saying
    /// why) when it is not installed, a failure under `CI=true`.
    pub fn stock(kubeconfig: &str, cache: &std::path::Path) -> Option<Kubectl> {
        let found = Command::new("kubectl").args(["version", "--client"]).stdout(Stdio::null()).status().is_ok();
        if !found {
            assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "CI=true but kubectl is not on PATH");
            eprintln!("skipping the stock kubectl steps: kubectl is not on PATH");
            return None;
        }
        Some(Kubectl { program: "kubectl".into(), kubeconfig: kubeconfig.to_owned(), cache: Some(cache.to_owned()) })
    }

    /// The command with `--kubeconfig` (and `--cache-dir`) set.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.arg("--kubeconfig").arg(&self.kubeconfig);
        if let Some(cache) = &self.cache {
            c.arg("--cache-dir").arg(cache);
        }
        c
    }

    /// Runs it.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.command().args(args).output().expect("run kubectl")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects it to fail with exit code 1; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "kubectl {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(out.status.code(), Some(1), "exit code of kubectl {args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}
