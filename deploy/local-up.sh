#!/usr/bin/env bash
# Brings up a local cluster on this machine and keeps it running until Ctrl-C or SIGTERM,
# then stops everything it started (the pods' containers, and a Docker daemon if it
# started one).
#
# With the docker or process runtime, run as root, pods are on the pod network (CNI
# bridge cni<i> per node, 10.244.0.0/16, installing containernetworking-plugins if
# missing), kube-proxy programs Services (nftables) and kube-dns answers pods at
# 169.254.20.10 (an address it adds to lo); on stop all of that is removed again. As
# another user, pods stay on the runtime's own network and it says so.
#
#   deploy/local-up.sh [--runtime docker|process|sim] [--store embedded|etcd] [--nodes N]
#                      [--dir DIR] [--port PORT] [--detach]
#   deploy/local-up.sh --down [--dir DIR]
#
#   --runtime R   docker (the default): real containers; when no Docker daemon answers,
#                 installs docker.io and busybox-static if missing, starts a daemon of its
#                 own and builds the busybox:local image. process: each container's
#                 command runs as a host process (no images). sim: no processes at all.
#   --store S     embedded (the default): the API server's own store in DIR/apiserver;
#                 etcd: a local etcd (installed if missing) on 127.0.0.1:2379.
#   --nodes N     N nodes, one kubelet each (with --runtime sim, one kubelet hosts all); 1.
#   --dir DIR     where state, logs and the kubeconfig go; .cluster.
#   --port PORT   the API server's port on 127.0.0.1; 6443. Kubelets use 10250 upwards.
#   --detach      start in the background, return once the cluster is ready.
#   --down        stop the cluster that a --detach run started in DIR.
#   -h, --help    this text.
#
# Everything speaks TLS with certificates of the cluster's own CA, made on the first start
# by kubeadm in DIR/pki (and kept after): each component has its own identity, and the
# API server lets in only the certificates of that CA. It writes DIR/kubeconfig (the
# admin's, in system:masters), which our kubectl (target/release/kubectl) and the stock
# one both read:
#   KUBECONFIG=.cluster/kubeconfig kubectl get nodes
set -euo pipefail
cd "$(dirname "$0")/.."
self=deploy/local-up.sh

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "local-up: $*" >&2; exit 2; }

store=embedded
runtime=docker
nodes=1
dir=.cluster
port=6443
detach=
down=
argv=("$@")
while [ $# -gt 0 ]; do
  flag=$1
  case "$flag" in
    --store|--dir|--runtime|--nodes|--port)
      [ $# -ge 2 ] || die "$flag needs a value (see --help)"
      value=$2; shift 2
      case "$flag" in
        --store) store=$value ;; --dir) dir=$value ;; --runtime) runtime=$value ;;
        --nodes) nodes=$value ;; --port) port=$value ;;
      esac ;;
    --store=*|--dir=*|--runtime=*|--nodes=*|--port=*)
      value=${flag#*=}; shift
      case "$flag" in
        --store=*) store=$value ;; --dir=*) dir=$value ;; --runtime=*) runtime=$value ;;
        --nodes=*) nodes=$value ;; --port=*) port=$value ;;
      esac ;;
    --detach) detach=1; shift ;;
    --down) down=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown flag $flag (see --help)" ;;
  esac
done
case "$store" in embedded|etcd) ;; *) die "--store must be embedded or etcd, not \"$store\"" ;; esac
case "$runtime" in docker|process|sim) ;; *) die "--runtime must be docker, process or sim, not \"$runtime\"" ;; esac
case "$nodes" in ''|*[!0-9]*|0) die "--nodes must be a positive whole number, not \"$nodes\"" ;; esac
case "$port" in ''|*[!0-9]*) die "--port must be a port number, not \"$port\"" ;; esac
[ "$port" -ge 1 ] && [ "$port" -le 65535 ] || die "--port must be between 1 and 65535, not $port"
[ -n "$dir" ] || die "--dir must not be empty"

say() { printf '==> %s\n' "$*"; }

# --down: stop what a --detach run started in this dir.
if [ -n "$down" ]; then
  pid=$(cat "$dir/local-up.pid" 2>/dev/null || true)
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "local-up: no cluster is running in $dir"
    exit 0
  fi
  say "stopping the cluster in $dir (local-up pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then echo "local-up: pid $pid did not stop within 60 s" >&2; exit 1; fi
  echo "stopped"
  exit 0
fi

mkdir -p "$dir/logs"
dir=$(cd "$dir" && pwd)

# One cluster per dir: the lock is held as long as this script runs.
exec 9>>"$dir/local-up.lock"
if ! flock -n 9; then
  holder=$(cat "$dir/local-up.pid" 2>/dev/null || echo "?")
  echo "local-up: $dir is in use by another local-up (pid $holder); stop it with: $self --down --dir $dir" >&2
  exit 1
fi

# Who holds a TCP port on this machine, as "NAME (pid N)", or nothing when it is free.
port_holder() {
  local line
  line=$(ss -ltnpH "sport = :$1" 2>/dev/null | head -1) || true
  if [ -z "$line" ]; then
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && echo "another process" || true
    return 0
  fi
  if [[ $line =~ users:\(\(\"([^\"]+)\",pid=([0-9]+) ]]; then
    echo "${BASH_REMATCH[1]} (pid ${BASH_REMATCH[2]})"
  else
    echo "another process"
  fi
}
check_port() {
  local holder
  holder=$(port_holder "$1")
  [ -z "$holder" ] || { echo "local-up: port $1 ($2) is already in use by $holder; stop it or choose another --port" >&2; exit 1; }
}
check_port "$port" "the API server"
if [ "$runtime" = sim ]; then
  check_port 10250 "the kubelet"
else
  for i in $(seq 0 $((nodes - 1))); do check_port $((10250 + i)) "a kubelet"; done
fi
if [ "$store" = etcd ]; then check_port 2379 "etcd"; check_port 2380 "etcd's peers"; fi
if [ "$runtime" != sim ]; then
  check_port 10249 "kube-proxy's metrics"; check_port 10256 "kube-proxy's health"; check_port 9153 "kube-dns's metrics"
fi

# --detach: this same script in the background, its output in the log; back when ready.
if [ -n "$detach" ]; then
  flock -u 9; exec 9>&-
  rest=()
  for a in "${argv[@]}"; do [ "$a" = --detach ] || rest+=("$a"); done
  log="$dir/logs/local-up.log"
  : >"$log"
  setsid "$0" "${rest[@]}" </dev/null >"$log" 2>&1 &
  child=$!
  # Show its progress as it goes (a first build takes minutes), until it is ready.
  tail -n +1 -f "$log" --pid "$child" &
  tailer=$!
  while ! grep -q '^cluster ready' "$log" 2>/dev/null; do
    if ! kill -0 "$child" 2>/dev/null; then
      sleep 0.3; kill "$tailer" 2>/dev/null || true
      echo "local-up: the cluster did not start (log: $log)" >&2
      exit 1
    fi
    sleep 0.2
  done
  sleep 0.3; kill "$tailer" 2>/dev/null || true; wait "$tailer" 2>/dev/null || true
  echo "Running in the background (pid $child, log $log); stop it with: $self --down --dir $dir"
  exit 0
fi

echo $$ >"$dir/local-up.pid"

sudo=
[ "$(id -u)" -ne 0 ] && sudo=sudo
apt_updated=
apt_install() {
  say "installing $* (missing)"
  if [ -z "$apt_updated" ]; then $sudo apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
pkgs=()
command -v protoc >/dev/null 2>&1 || pkgs+=(protobuf-compiler)
if [ "$store" = etcd ]; then command -v etcd >/dev/null 2>&1 || pkgs+=(etcd-server); fi
if [ "$runtime" = docker ]; then
  command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io)
  command -v file >/dev/null 2>&1 || pkgs+=(file)
  file -L /bin/busybox 2>/dev/null | grep -q "statically linked" || pkgs+=(busybox-static)
fi
if [ "$runtime" != sim ]; then
  # The pod network (CNI plugins) and Services (kube-proxy programs nftables).
  [ -x /usr/lib/cni/bridge ] || pkgs+=(containernetworking-plugins)
  command -v nft >/dev/null 2>&1 || pkgs+=(nftables)
fi
[ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"

say "building (release; the first build takes several minutes)"
cargo build --release --quiet -p apiserver -p scheduler -p controller-manager -p kubelet -p kubectl -p kube-proxy -p kube-dns -p kubeadm

pids=()
pod_network=
dockerd_pid=
node_names=()
stop() {
  trap - EXIT INT TERM
  if [ ${#pids[@]} -gt 0 ]; then
    say "stopping"
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  fi
  # The pods leave the pod network (their addresses, host ports and the bridges' forward
  # rules) while their namespaces still exist.
  if [ -n "$pod_network" ]; then
    for i in $(seq 0 $((${#node_names[@]} - 1))); do
      $sudo ./target/release/kubelet --cleanup-network --root-dir "$dir/kubelet/${node_names[$i]}" \
        --cni-bridge-name "cni$i" >>"$dir/logs/kubelet-${node_names[$i]}.log" 2>&1 || true
    done
  fi
  # The pods' containers outlive a kubelet (a restarted one adopts them); the cluster is
  # going away, so they go too.
  if [ "$runtime" = docker ] && docker info >/dev/null 2>&1; then
    for n in "${node_names[@]}"; do
      ids=$(docker ps -aq --filter "label=io.kubernetes.managed-by=$n" 2>/dev/null || true)
      [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    done
  fi
  for f in "$dir"/kubelet/process/pods/*/containers/*/pid "$dir"/kubelet/*/process/pods/*/containers/*/pid; do
    [ -f "$f" ] && kill -KILL -- "-$(cat "$f")" 2>/dev/null || true
  done
  # The pod network: the pods' namespaces (process runtime), their addresses, the bridges,
  # and kube-proxy's nftables table.
  for ns in "$dir"/kubelet/*/process/netns/*; do
    [ -e "$ns" ] && { $sudo umount -l "$ns" 2>/dev/null || true; rm -f "$ns"; }
  done
  if [ -n "$pod_network" ]; then
    for i in $(seq 0 $((nodes - 1))); do $sudo ip link delete "cni$i" 2>/dev/null || true; done
    $sudo ./target/release/kube-proxy --cleanup >/dev/null 2>&1 || true
    $sudo ip addr del "$dns_ip/32" dev lo 2>/dev/null || true
  fi
  if [ -n "$dockerd_pid" ]; then
    say "stopping the Docker daemon it started"
    kill "$dockerd_pid" 2>/dev/null || true
    wait "$dockerd_pid" 2>/dev/null || true
  fi
  rm -f "$dir/local-up.pid"
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

if [ "$runtime" = docker ]; then
  if ! docker info >/dev/null 2>&1; then
    say "starting a Docker daemon (none answered; logs: $dir/logs/dockerd.log)"
    # A daemon that died leaves its pid file behind; a new one refuses to start over it.
    if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
      $sudo rm -f /var/run/docker.pid
    fi
    $sudo dockerd >"$dir/logs/dockerd.log" 2>&1 9>&- &
    dockerd_pid=$!
    for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    if ! docker info >/dev/null 2>&1; then
      tail -5 "$dir/logs/dockerd.log" >&2
      echo "local-up: the Docker daemon did not start (log above); --runtime process runs without it" >&2
      exit 1
    fi
  fi
  say "building the busybox:local image (if missing)"
  deploy/images/busybox.sh busybox:local
fi

say "certificates and kubeconfigs in $dir/pki and $dir (kept across restarts)"
server="https://127.0.0.1:$port"
./target/release/kubeadm init phase certs --cert-dir "$dir/pki" | sed 's/^/  /'
./target/release/kubeadm init phase kubeconfig --cert-dir "$dir/pki" --kubeconfig-dir "$dir" \
  --control-plane-endpoint "$server" | sed 's/^/  /'
# A kubeconfig names its server; one made for another --port is made again.
for conf in "$dir"/*.conf; do
  grep -q "server: $server\$" "$conf" || { rm -f "$conf"; stale=1; }
done
if [ -n "${stale:-}" ]; then
  ./target/release/kubeadm init phase kubeconfig --cert-dir "$dir/pki" --kubeconfig-dir "$dir" \
    --control-plane-endpoint "$server" | sed 's/^/  /'
fi
cp "$dir/admin.conf" "$dir/kubeconfig"
pki=$dir/pki
args=(--port "$port" --data-dir "$dir/apiserver"
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" --client-ca-file "$pki/ca.crt"
  --kubelet-certificate-authority "$pki/ca.crt"
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key"
  --service-account-signing-key-file "$pki/sa.key" --service-account-key-file "$pki/sa.pub"
  --enable-bootstrap-token-auth)
if [ "$store" = etcd ]; then
  say "starting etcd (logs: $dir/logs/etcd.log)"
  etcd --name local --data-dir "$dir/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster local=http://127.0.0.1:2380 >"$dir/logs/etcd.log" 2>&1 9>&- &
  pids+=($!)
  args+=(--etcd-servers http://127.0.0.1:2379)
  for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/2379) 2>/dev/null && break; sleep 0.1; done
fi

say "starting kube-apiserver on 127.0.0.1:$port, $store store (logs: $dir/logs/kube-apiserver.log)"
./target/release/kube-apiserver "${args[@]}" >"$dir/logs/kube-apiserver.log" 2>&1 9>&- &
pids+=($!)
for _ in $(seq 1 300); do
  curl -sf --cacert "$pki/ca.crt" "$server/readyz" >/dev/null 2>&1 && break
  kill -0 "${pids[-1]}" 2>/dev/null || { tail -5 "$dir/logs/kube-apiserver.log" >&2; echo "local-up: kube-apiserver exited; see $dir/logs/kube-apiserver.log" >&2; exit 1; }
  sleep 0.1
done

say "letting nodes join with bootstrap tokens"
./target/release/kubeadm init phase bootstrap-token --kubeconfig "$dir/admin.conf" | sed 's/^/  /'

say "starting kube-scheduler (logs: $dir/logs/kube-scheduler.log)"
./target/release/kube-scheduler --kubeconfig "$dir/scheduler.conf" --secure-port 0 >"$dir/logs/kube-scheduler.log" 2>&1 9>&- &
pids+=($!)

say "starting kube-controller-manager (logs: $dir/logs/kube-controller-manager.log)"
./target/release/kube-controller-manager --kubeconfig "$dir/controller-manager.conf" --secure-port 0 \
  --root-ca-file "$pki/ca.crt" --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" >"$dir/logs/kube-controller-manager.log" 2>&1 9>&- &
pids+=($!)

host=$(hostname | tr '[:upper:]' '[:lower:]')
# The cluster DNS serves this host's pods at a link-local address of the host's own, as
# NodeLocal DNSCache does: every pod reaches it through its node, and it reaches the API
# server on loopback.
dns_ip=169.254.20.10
if [ "$runtime" != sim ]; then
  if [ "$(id -u)" -eq 0 ]; then
    pod_network=1
    say "starting kube-dns on $dns_ip:53 (logs: $dir/logs/kube-dns.log)"
    ip addr replace "$dns_ip/32" dev lo
    ./target/release/kube-dns --kubeconfig "$dir/kube-dns.conf" --listen "$dns_ip:53" \
      --metrics-bind-address 127.0.0.1:9153 >"$dir/logs/kube-dns.log" 2>&1 9>&- &
    pids+=($!)
  else
    say "not root: pods stay on the runtime's own network (the pod network, kube-proxy and the cluster DNS need root)"
  fi
fi
# A node's kubeconfig (system:node:NAME) and its kubelet's serving certificate.
node_credentials() {
  ./target/release/kubeadm init phase node "$1" --address 127.0.0.1,localhost --cert-dir "$pki" \
    --kubeconfig-dir "$dir" --control-plane-endpoint "$server" | sed 's/^/  /'
  kubelet_tls=(--kubeconfig "$dir/kubelet-$1.conf" --tls-cert-file "$pki/kubelet-$1.crt"
    --tls-private-key-file "$pki/kubelet-$1.key" --client-ca-file "$pki/ca.crt")
}
if [ "$runtime" = sim ]; then
  say "starting one kubelet hosting $nodes simulated nodes (logs: $dir/logs/kubelet.log)"
  node_credentials "$host"
  # It stands for many nodes, so it cannot be one of them (a node may change only
  # itself): it runs with the cluster admin's rights, as KWOK's controller does.
  [ -f "$dir/kubelet-simulator.conf" ] || ./target/release/kubeadm kubeconfig user --cert-dir "$pki" \
    --server "$server" --client-name system:kubelet-simulator --org system:masters >"$dir/kubelet-simulator.conf"
  chmod 600 "$dir/kubelet-simulator.conf"
  kubelet_tls[1]="$dir/kubelet-simulator.conf"
  ./target/release/kubelet "${kubelet_tls[@]}" --runtime sim --sim-nodes "$nodes" --node-name "$host" \
    --root-dir "$dir/kubelet" --port 10250 >"$dir/logs/kubelet.log" 2>&1 9>&- &
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
    if [ -n "$pod_network" ]; then
      net=(--network-plugin cni --cni-bridge-name "cni$i" --cluster-dns "$dns_ip")
    else
      net=(--network-plugin none)
    fi
    node_credentials "$name"
    ./target/release/kubelet "${kubelet_tls[@]}" --runtime "$runtime" --node-name "$name" \
      --root-dir "$dir/kubelet/$name" --port $((10250 + i)) "${net[@]}" >"$dir/logs/kubelet-$name.log" 2>&1 9>&- &
    pids+=($!)
  done
  if [ -n "$pod_network" ]; then
    # One kube-proxy serves every node of this host: they share its network namespace.
    say "starting kube-proxy (logs: $dir/logs/kube-proxy.log)"
    ./target/release/kube-proxy --kubeconfig "$dir/kube-proxy.conf" --hostname-override "${node_names[0]}" \
      --cluster-cidr 10.244.0.0/16 --healthz-bind-address 127.0.0.1:10256 >"$dir/logs/kube-proxy.log" 2>&1 9>&- &
    pids+=($!)
  fi
fi
node_ready() {
  curl -sf --cacert "$pki/ca.crt" --cert "$pki/apiserver-kubelet-client.crt" --key "$pki/apiserver-kubelet-client.key" \
    "$server/api/v1/nodes/$1" 2>/dev/null | python3 -c '
import json, sys
conds = json.load(sys.stdin).get("status", {}).get("conditions", [])
sys.exit(0 if any(c["type"] == "Ready" and c["status"] == "True" for c in conds) else 1)' 2>/dev/null
}
for n in "${node_names[@]}"; do
  for _ in $(seq 1 150); do node_ready "$n" && break; sleep 0.2; done
  node_ready "$n" || { echo "local-up: node $n did not become Ready; see $dir/logs" >&2; exit 1; }
done

echo "cluster ready ($runtime runtime, $store store, $nodes node(s))"
echo "  export KUBECONFIG=$dir/kubeconfig PATH=$PWD/target/release:\$PATH   # our kubectl; the stock one works too"
echo "  kubectl get nodes"
echo "  kubectl run web --image=busybox:local --replicas=3 --wait -- sh -c 'echo hello from \$(hostname); sleep 3600'"
echo "Another node joins with (a token valid 24 h; from another host, this API server must be reachable there):"
echo "  $(./target/release/kubeadm token create --print-join-command --description 'printed by local-up' --kubeconfig "$dir/admin.conf")"
echo "Ctrl-C stops it."
wait -n "${pids[@]}" || true
echo "local-up: a component exited; see $dir/logs" >&2
exit 1
