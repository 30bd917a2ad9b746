#!/usr/bin/env bash
# Build a local stand-in for the container base image `python:3.11-slim`, from Debian's packages,
# for machines that reach Debian's mirror and PyPI but no container registry (this project's test
# machines). Production builds use the real image; the Dockerfile's FROM is `ARG BASE_IMAGE`.
#
#   scripts/container-base-standin.sh            # prints the image name, builds it if missing
#   buildah bud --isolation chroot --format docker --pull=never \
#       --build-arg BASE_IMAGE="$(scripts/container-base-standin.sh)" -t lifecycle .
#
# The stand-in offers what the Dockerfile uses of the real image: Python 3.11 (Debian's 3.11.2),
# `python`, `pip` (Debian's, with the "externally managed" marker removed, as in the real image),
# venv, CA certificates, useradd/groupadd. It trusts what this machine trusts: the host's CA
# bundle is copied in (an egress proxy's CA must be there for pip and uv to reach PyPI).
#
# Cached: buildah keeps local images, so later runs find it and return at once. The image carries
# a recipe label; changing RECIPE below rebuilds it. Needs root, buildah and debootstrap
# (scripts/install-test-servers.sh installs them). Concurrent callers serialise on a lock file.
set -euo pipefail

IMAGE="${LIFECYCLE_STANDIN_IMAGE:-localhost/lifecycle-standin/python:3.11-slim}"
RECIPE="1"   # bump when the recipe below changes
SUITE="bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3,python3-venv,python3-pip,python-is-python3,ca-certificates,passwd"
LABEL="org.lifecycle.standin-recipe"

current() {
    buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$LABEL\"}}" "$IMAGE" \
        2>/dev/null || true
}

if [ "$(current)" = "$RECIPE" ]; then
    echo "$IMAGE"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "container-base-standin: must run as root to build $IMAGE" >&2
    exit 1
fi
for tool in buildah debootstrap; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "container-base-standin: $tool is missing (scripts/install-test-servers.sh installs it)" >&2
        exit 1
    fi
done

exec 9>/tmp/lifecycle-container-standin.lock
flock 9
if [ "$(current)" = "$RECIPE" ]; then   # built by another caller while we waited
    echo "$IMAGE"
    exit 0
fi

work="$(mktemp -d /var/tmp/lifecycle-standin.XXXXXX)"
ctr=""
cleanup() {
    if [ -n "$ctr" ]; then buildah rm "$ctr" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "container-base-standin: debootstrap $SUITE from $MIRROR" >&2
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$work/rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
}

root="$work/rootfs"
# The real image's pip installs into the system interpreter; Debian's refuses (PEP 668).
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
# Trust what this machine trusts (pip and uv verify PyPI against this bundle).
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
# Keep it slim: no package lists, caches or docs.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*

ctr="$(buildah from scratch)"
mnt="$(buildah mount "$ctr")"
tar -C "$root" -cf - . | tar -C "$mnt" -xpf -
buildah umount "$ctr" >/dev/null
buildah config \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --cmd '["python3"]' \
    --label "$LABEL=$RECIPE" \
    --label "org.opencontainers.image.description=local stand-in for python:3.11-slim (Debian $SUITE)" \
    "$ctr"
buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
ctr=""
echo "container-base-standin: built $IMAGE" >&2
echo "$IMAGE"
