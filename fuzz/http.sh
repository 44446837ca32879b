#!/usr/bin/env bash
# Schema-driven HTTP fuzzing: schemathesis (from PyPI) reads the apiserver's own OpenAPI
# documents and sends generated requests to every operation; any 5xx answer (but upstream's
# 504 for a resourceVersion newer than the store's: fuzz/st_hooks.py), or an apiserver that
# dies, fails the run.
#
#   fuzz/http.sh [EXAMPLES] [GROUP-VERSION...]     (default: 20 examples, api/v1 apis/apps/v1 apis/apiextensions.k8s.io/v1)
#
# Longer runs: fuzz/http.sh 200. It starts its own apiserver (the debug build; embedded
# store in a temporary directory) on a free loopback port and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-20}
shift || true
case "$examples" in ''|*[!0-9]*) echo "fuzz/http.sh: EXAMPLES must be a whole number, not \"$examples\"" >&2; exit 2 ;; esac
docs=("$@")
[ ${#docs[@]} -gt 0 ] || docs=(api/v1 apis/apps/v1 apis/apiextensions.k8s.io/v1)
# Through the module, not the `st` script: a fresh pip install may not have put it on
# PATH yet (pyenv's shims need a rehash).
if ! python3 -m schemathesis.cli --version >/dev/null 2>&1; then
  echo "==> installing schemathesis (missing)"
  python3 -m pip install -q schemathesis
fi
[ -x target/debug/kube-apiserver ] || cargo build -q -p apiserver
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
target/debug/kube-apiserver --port "$port" --data-dir "$work/data" --insecure-serving >"$work/apiserver.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
url="http://127.0.0.1:$port"
status=0
for doc in "${docs[@]}"; do
  echo "==> schemathesis: $examples examples per operation of $doc"
  # From the temporary directory: schemathesis keeps a cache in the working directory.
  if ! (cd "$work" && SCHEMATHESIS_HOOKS=st_hooks PYTHONPATH="$OLDPWD/fuzz" python3 -m schemathesis.cli --no-color \
      run "$url/openapi/v3/$doc" --url "$url" --checks no_server_error \
      --max-examples "$examples" --workers 2) >"$work/st.log" 2>&1; then
    # The failures (each with a curl line that reproduces it), then the summary.
    sed -n '/^=* FAILURES =*$/,/^=* WARNINGS =*$/p' "$work/st.log" | head -80 >&2
    tail -12 "$work/st.log" >&2
    status=1
  fi
  grep -E "^(Test cases|API Operations|Summary|=+|.*passed|.*failed)" "$work/st.log" | tail -4 | sed 's/^/    /' || true
  if ! kill -0 "$server" 2>/dev/null; then
    echo "fuzz/http.sh: the apiserver died; its log:" >&2
    tail -30 "$work/apiserver.log" >&2
    exit 1
  fi
done
[ "$status" -eq 0 ] || { echo "fuzz/http.sh: server errors found (above)" >&2; exit 1; }
echo "schema-driven fuzzing: ${#docs[@]} documents, $examples examples per operation, no 5xx, no crash"
