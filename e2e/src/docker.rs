//! Docker for the tests and benchmarks: whether a daemon with `busybox:local` is there,
//! running the CLI, removing what a test's kubelet started, and the Docker CLI figures the
//! kubelet benchmark compares against.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Removes the containers a docker-runtime kubelet for `node` started.
pub fn remove_docker_containers(node: &str) {
    let filter = format!("label=io.kubernetes.managed-by={node}");
    let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &filter]).output() else { return };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect();
    if !ids.is_empty() {
        let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).stdout(Stdio::null()).status();
    }
}

/// Whether the local Docker daemon answers and has the `busybox:local` image; when not,
/// says why and returns false, except under `CI=true`, where that is a failure.
pub fn docker_available(test: &str) -> bool {
    let why = match Command::new("docker").args(["image", "inspect", "busybox:local"]).output() {
        Ok(out) if out.status.success() => return true,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => format!("docker: {e}"),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: CI=true but Docker cannot run it ({why}); ./test.sh starts dockerd and builds busybox:local");
    }
    eprintln!("skipping {test}: {why} (./test.sh starts dockerd and builds busybox:local)");
    false
}

/// Runs `docker ARGS` and returns its stdout; fails with its stderr.
pub fn docker(args: &[&str]) -> Result<String> {
    let out = Command::new("docker").args(args).output().context("running docker")?;
    if !out.status.success() {
        bail!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts `n` containers of `busybox:local` running `command` with parallel `docker run
/// -d`; returns how long until every run returned, then removes them.
pub async fn docker_runs(n: usize, command: &[&str]) -> Result<Duration> {
    use futures::StreamExt;
    let started = Instant::now();
    let runs = futures::stream::iter(0..n)
        .map(|i| async move {
            tokio::process::Command::new("docker")
                .args(["run", "-d", "--name", &format!("bench-raw-{i}"), "--label", "bench-raw=1", "busybox:local"])
                .args(command)
                .output()
                .await
        })
        .buffer_unordered(n);
    let outputs: Vec<_> = runs.collect().await;
    let took = started.elapsed();
    remove_bench_containers()?;
    all_succeeded(outputs)?;
    Ok(took)
}

/// Fails with the first failed `docker` command's error.
fn all_succeeded(outputs: Vec<std::io::Result<std::process::Output>>) -> Result<()> {
    for o in outputs {
        let o = o?;
        if !o.status.success() {
            bail!("docker run failed: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
    Ok(())
}

/// How long `n` pods' worth of containers take with the Docker CLI alone, started in
/// parallel as the docker runtime starts a pod: a pause container holding the network and
/// IPC namespaces (`--ipc shareable`), then the app container joining them. The floor of
/// the pause-container design, beside which the kubelet's time is judged.
pub async fn docker_pairs(n: usize, command: &[&str]) -> Result<Duration> {
    use futures::StreamExt;
    let run = |args: Vec<String>| async move { tokio::process::Command::new("docker").args(args).output().await };
    let started = Instant::now();
    let pairs = futures::stream::iter(0..n)
        .map(|i| async move {
            let pause = format!("bench-pair-{i}-pause");
            let mut first: Vec<String> =
                ["run", "-d", "--name", &pause, "--label", "bench-raw=1", "--ipc", "shareable"]
                    .map(String::from)
                    .to_vec();
            first.extend(["busybox:local", "sleep", "3600"].map(String::from));
            let out = run(first).await?;
            if !out.status.success() {
                return Ok(out);
            }
            let joined = format!("container:{pause}");
            let mut second: Vec<String> =
                ["run", "-d", "--name", &format!("bench-pair-{i}-app"), "--label", "bench-raw=1"]
                    .map(String::from)
                    .to_vec();
            second.extend(["--network".into(), joined.clone(), "--ipc".into(), joined, "busybox:local".into()]);
            second.extend(command.iter().map(|s| (*s).to_owned()));
            run(second).await
        })
        .buffer_unordered(n);
    let outputs: Vec<std::io::Result<std::process::Output>> = pairs.collect().await;
    let took = started.elapsed();
    remove_bench_containers()?;
    all_succeeded(outputs)?;
    Ok(took)
}

/// Removes the containers the Docker CLI benchmarks started (`bench-raw=1`).
fn remove_bench_containers() -> Result<()> {
    let ids = docker(&["ps", "-aq", "--filter", "label=bench-raw=1"])?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        docker(&[&["rm", "-f"], ids.as_slice()].concat())?;
    }
    Ok(())
}
