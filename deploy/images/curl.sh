#!/usr/bin/env bash
# Builds the `curl:local` image: busybox:local with this host's curl and the libraries it
# links, for tests that talk HTTPS from inside a container (busybox's own wget does TLS
# without the signature_algorithms extension, which rustls requires). Safe to run again.
set -euo pipefail
image=${1:-curl:local}
if docker image inspect "$image" >/dev/null 2>&1; then exit 0; fi
cd "$(dirname "$0")"
./busybox.sh busybox:local >/dev/null
curl=$(command -v curl) || { echo "curl is required for $image (apt-get install curl)" >&2; exit 1; }
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/root/usr/bin"
cp "$curl" "$ctx/root/usr/bin/curl"
# The dynamic loader and every library curl links, at the paths it looks for them.
for lib in $(ldd "$curl" | grep -o '/[^ ]*'); do
  mkdir -p "$ctx/root$(dirname "$lib")"
  cp -L "$lib" "$ctx/root$lib"
done
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM busybox:local
COPY root/ /
CMD ["/bin/sh"]
DOCKERFILE
if ! out=$(DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" 2>&1); then
  echo "$out" >&2
  exit 1
fi
echo "built $image"
