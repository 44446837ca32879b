#!/usr/bin/env bash
# Brings up a local cluster on this machine and keeps it running until Ctrl-C or SIGTERM,
# then stops everything it started.
#
#   deploy/local-up.sh [--store embedded|etcd] [--dir DIR] [--port PORT]
#
# Today the cluster is the API server, the scheduler and the controller-manager (kubelets
# join when they land). It writes DIR/kubeconfig, so stock kubectl works against it:
#   kubectl --kubeconfig .cluster/kubeconfig get namespaces
set -euo pipefail
cd "$(dirname "$0")/.."

store=embedded
dir=.cluster
port=6443
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "local-up: unknown flag $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$store" in embedded|etcd) ;; *) echo "local-up: --store must be embedded or etcd" >&2; exit 2 ;; esac

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
cargo build --release --quiet -p apiserver -p scheduler -p controller-manager
mkdir -p "$dir/logs"
dir=$(cd "$dir" && pwd)

pids=()
stop() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] || return 0
  say "stopping"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
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

echo "cluster ready"
echo "  export KUBECONFIG=$dir/kubeconfig"
echo "  kubectl get namespaces"
echo "Ctrl-C stops it."
wait -n "${pids[@]}" || true
echo "a component exited; see $dir/logs" >&2
exit 1
