#!/usr/bin/env bash
# Brings up a local cluster on this machine and keeps it running until Ctrl-C or SIGTERM,
# then stops everything it started.
#
#   deploy/local-up.sh [--store embedded|etcd] [--runtime docker|process|sim] [--nodes N]
#                      [--dir DIR] [--port PORT]
#
# The cluster is the API server, the scheduler, the controller-manager and N nodes (one
# kubelet each; with --runtime sim one kubelet hosts them all). The runtime is docker when a
# Docker daemon answers, else process. It writes DIR/kubeconfig, which our kubectl
# (target/release/kubectl) and the stock one both read:
#   target/release/kubectl --kubeconfig .cluster/kubeconfig get nodes
set -euo pipefail
cd "$(dirname "$0")/.."

store=embedded
runtime=
nodes=1
dir=.cluster
port=6443
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --runtime) runtime=$2; shift 2 ;;
    --nodes) nodes=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "local-up: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$store" in embedded|etcd) ;; *) echo "local-up: --store must be embedded or etcd" >&2; exit 2 ;; esac
case "$runtime" in ""|docker|process|sim) ;; *) echo "local-up: --runtime must be docker, process or sim" >&2; exit 2 ;; esac
case "$nodes" in ''|*[!0-9]*|0) echo "local-up: --nodes must be a positive number" >&2; exit 2 ;; esac

say() { printf '==> %s\n' "$*"; }
install_missing() {
  local pkgs=()
  command -v protoc >/dev/null 2>&1 || pkgs+=(protobuf-compiler)
  if [ "$store" = etcd ]; then command -v etcd >/dev/null 2>&1 || pkgs+=(etcd-server); fi
  if [ ${#pkgs[@]} -gt 0 ]; then
    say "installing ${pkgs[*]} (missing)"
    local sudo=; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
}
install_missing

say "building (release)"
cargo build --release --quiet -p apiserver -p scheduler -p controller-manager -p kubelet -p kubectl
mkdir -p "$dir/logs"
dir=$(cd "$dir" && pwd)

pids=()
node_names=()
stop() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] || return 0
  say "stopping"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # The pods' containers outlive a kubelet (a restarted one adopts them); the cluster is
  # going away, so they go too.
  if command -v docker >/dev/null 2>&1; then
    for n in "${node_names[@]}"; do
      ids=$(docker ps -aq --filter "label=io.kubernetes.managed-by=$n" 2>/dev/null || true)
      [ -n "$ids" ] && docker rm -f $ids >/dev/null 2>&1 || true
    done
  fi
  for f in "$dir"/kubelet/process/pods/*/containers/*/pid "$dir"/kubelet/*/process/pods/*/containers/*/pid; do
    [ -f "$f" ] && kill -KILL -- "-$(cat "$f")" 2>/dev/null || true
  done
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

args=(--port "$port" --data-dir "$dir/apiserver")
if [ "$store" = etcd ]; then
  say "starting etcd (logs: $dir/logs/etcd.log)"
  etcd --name local --data-dir "$dir/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster local=http://127.0.0.1:2380 >"$dir/logs/etcd.log" 2>&1 &
  pids+=($!)
  args+=(--etcd-servers http://127.0.0.1:2379)
  for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/2379) 2>/dev/null && break; sleep 0.1; done
fi

say "starting kube-apiserver on 127.0.0.1:$port, $store store (logs: $dir/logs/kube-apiserver.log)"
./target/release/kube-apiserver "${args[@]}" >"$dir/logs/kube-apiserver.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || { echo "kube-apiserver exited; see $dir/logs/kube-apiserver.log" >&2; exit 1; }
  sleep 0.1
done

cat >"$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- cluster:
    server: http://127.0.0.1:$port
  name: local
contexts:
- context:
    cluster: local
    user: local
  name: local
current-context: local
users:
- name: local
  user: {}
KUBECONFIG

say "starting kube-scheduler (logs: $dir/logs/kube-scheduler.log)"
./target/release/kube-scheduler --kubeconfig "$dir/kubeconfig" --secure-port 0 >"$dir/logs/kube-scheduler.log" 2>&1 &
pids+=($!)

say "starting kube-controller-manager (logs: $dir/logs/kube-controller-manager.log)"
./target/release/kube-controller-manager --kubeconfig "$dir/kubeconfig" --secure-port 0 >"$dir/logs/kube-controller-manager.log" 2>&1 &
pids+=($!)

if [ -z "$runtime" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then runtime=docker; else runtime=process; fi
fi
if [ "$runtime" = docker ]; then
  deploy/images/busybox.sh busybox:local
fi
host=$(hostname | tr '[:upper:]' '[:lower:]')
node_names=()
if [ "$runtime" = sim ]; then
  say "starting one kubelet hosting $nodes simulated nodes (logs: $dir/logs/kubelet.log)"
  ./target/release/kubelet --kubeconfig "$dir/kubeconfig" --runtime sim --sim-nodes "$nodes" --node-name "$host" \
    --root-dir "$dir/kubelet" --port 10250 >"$dir/logs/kubelet.log" 2>&1 &
  pids+=($!)
  if [ "$nodes" -gt 1 ]; then
    for i in $(seq 0 $((nodes - 1))); do node_names+=("$host-$i"); done
  else
    node_names=("$host")
  fi
else
  for i in $(seq 0 $((nodes - 1))); do
    name=$host; [ "$nodes" -gt 1 ] && name="$host-$i"
    node_names+=("$name")
    say "starting kubelet for node $name, $runtime runtime (logs: $dir/logs/kubelet-$name.log)"
    ./target/release/kubelet --kubeconfig "$dir/kubeconfig" --runtime "$runtime" --node-name "$name" \
      --root-dir "$dir/kubelet/$name" --port $((10250 + i)) >"$dir/logs/kubelet-$name.log" 2>&1 &
    pids+=($!)
  done
fi
node_ready() {
  curl -sf "http://127.0.0.1:$port/api/v1/nodes/$1" 2>/dev/null | python3 -c '
import json, sys
conds = json.load(sys.stdin).get("status", {}).get("conditions", [])
sys.exit(0 if any(c["type"] == "Ready" and c["status"] == "True" for c in conds) else 1)' 2>/dev/null
}
for n in "${node_names[@]}"; do
  for _ in $(seq 1 150); do node_ready "$n" && break; sleep 0.2; done
  node_ready "$n" || { echo "node $n did not become Ready; see $dir/logs" >&2; exit 1; }
done

echo "cluster ready"
echo "  export KUBECONFIG=$dir/kubeconfig PATH=$PWD/target/release:\$PATH   # our kubectl; the stock one works too"
echo "  kubectl get nodes"
echo "  kubectl run web --image=busybox:local --replicas=3 --wait -- sleep 3600"
echo "  kubectl scale --replicas=6 web --wait && kubectl logs deploy/web"
echo "Ctrl-C stops it."
wait -n "${pids[@]}" || true
echo "a component exited; see $dir/logs" >&2
exit 1
