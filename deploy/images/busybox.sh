#!/usr/bin/env bash
# Builds the `busybox:local` image (FROM scratch, Debian's static busybox) that the docker
# runtime's tests and the local cluster use: no registry is needed. Safe to run again.
set -euo pipefail
image=${1:-busybox:local}
if docker image inspect "$image" >/dev/null 2>&1; then exit 0; fi
bin=/bin/busybox
if ! file -L "$bin" 2>/dev/null | grep -q "statically linked"; then
  echo "busybox-static is required for $image (apt-get install busybox-static)" >&2
  exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/busybox"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
CMD ["/bin/sh"]
DOCKERFILE
# The legacy builder needs no BuildKit (not in Debian's docker.io); its deprecation notice
# is noise unless the build fails.
if ! out=$(DOCKER_BUILDKIT=0 docker build -q -t "$image" "$ctx" 2>&1); then
  echo "$out" >&2
  exit 1
fi
echo "built $image"
