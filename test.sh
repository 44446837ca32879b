#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, unit and component tests on both storage
# backends, the stock-client tests (kube-rs, kubectl, the Python client), the e2e tests,
# the README's quick start as written, and bounded fuzzing runs.
#
# Installs what it needs when missing (protoc, etcd, Docker, busybox, nftables, iproute2,
# the CNI plugins, the Python client) and says so; starts
# a private etcd on a free loopback port and stops it on exit. Under CI=true nothing that
# needs etcd may skip.
set -euo pipefail
cd "$(dirname "$0")"

say() { printf '==> %s\n' "$*"; }

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
file -L /bin/busybox 2>/dev/null | grep -q "statically linked" || need_apt+=(busybox-static)
command -v file >/dev/null 2>&1 || need_apt+=(file)
# The curl:local image (a pod's HTTPS client in the security tests) carries the host's curl.
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# kube-proxy's tests program nftables in network namespaces of their own.
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# The kubelet's pod network: the standard CNI plugins (bridge, host-local, loopback, portmap).
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
if [ ${#need_apt[@]} -gt 0 ]; then
  say "installing ${need_apt[*]} (missing)"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# etcd-server's package starts a system etcd on 2379; ours runs on its own ports.
if ! python3 -c 'import kubernetes, pytest' >/dev/null 2>&1; then
  say "installing the Python kubernetes client and pytest (missing)"
  python3 -m pip install -q kubernetes pytest
fi
command -v kubectl >/dev/null 2>&1 || { echo "kubectl (1.32) is required on PATH for the stock-client tests" >&2; exit 1; }

work=$(mktemp -d)
etcd_pid=
dockerd_pid=
cleanup() {
  if [ -n "$etcd_pid" ]; then kill "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; fi
  if [ -n "$dockerd_pid" ]; then kill "$dockerd_pid" 2>/dev/null || true; wait "$dockerd_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client_port=$(free_port)
peer_port=$(free_port)
say "starting etcd $(etcd --version | head -1 | awk '{print $3}') on 127.0.0.1:$client_port"
etcd --name test --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$client_port" --advertise-client-urls "http://127.0.0.1:$client_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "test=http://127.0.0.1:$peer_port" >"$work/etcd.log" 2>&1 &
etcd_pid=$!
for _ in $(seq 1 100); do
  if (echo > "/dev/tcp/127.0.0.1/$client_port") 2>/dev/null; then break; fi
  sleep 0.1
done
if ! (echo > "/dev/tcp/127.0.0.1/$client_port") 2>/dev/null; then
  echo "etcd did not start within 10 s:" >&2; tail -20 "$work/etcd.log" >&2; exit 1
fi
export ETCD_ENDPOINTS="http://127.0.0.1:$client_port"

# The docker runtime's tests need a daemon and the busybox:local and curl:local images.
if ! docker info >/dev/null 2>&1; then
  say "starting dockerd (not running)"
  # A daemon that died leaves its pid file behind; a new one refuses to start over it.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then rm -f /var/run/docker.pid; fi
  dockerd >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start:" >&2; tail -20 "$work/dockerd.log" >&2; exit 1; }
fi
deploy/images/busybox.sh busybox:local
deploy/images/curl.sh curl:local

say "cargo fmt --check"
cargo fmt --all -- --check
say "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
say "cargo build"
cargo build --workspace --all-targets --quiet
# The README test runs deploy/local-up.sh as a user would; it uses the release binaries.
say "cargo build --release (for the README's local-up)"
cargo build --release --quiet -p apiserver -p scheduler -p controller-manager -p kubelet -p kubectl -p kube-proxy -p kube-dns -p kubeadm
say "cargo test (unit, component and e2e; etcd at $ETCD_ENDPOINTS)"
cargo test --workspace --quiet -- --test-threads 4
say "Python kubernetes client"
python3 -m pytest -q e2e/python
# Bounded runs: a minute and a half of coverage-guided fuzzing of what the apiserver reads
# from the network, and a schema-driven HTTP fuzzer against its OpenAPI documents.
say "fuzzing the decoders, patches, apply and selectors (fuzz/run.sh 15)"
fuzz/run.sh 15
say "schema-driven HTTP fuzzing (fuzz/http.sh)"
fuzz/http.sh
say "all tests passed"
