#!/usr/bin/env bash
# Install the Debian packages that the integration tests and bench/ldap_termination.py need:
# a Samba AD DC (samba-tool, samba), OpenLDAP (slapd, ldap-utils), PostgreSQL, buildah with
# debootstrap for the container image test (tests/integration/test_container.py), and Chromium
# with chromedriver for the console's browser tests.
#
# Idempotent: a fast no-op when everything is present. As root it installs what is missing
# (one `apt-get update`, non-interactive) without starting any daemon: the test fixtures start
# their own throwaway servers in temp dirs, so a packaged slapd/samba left running would only
# hold ports (636!) and confuse them. Not root and something missing: says what, exits 1.
set -euo pipefail

# samba-vfs-modules: provisioning sets sysvol ACLs through vfs_acl_xattr (not in "samba").
# postgresql: the store tests use the server on 127.0.0.1:5432 when one answers, else they start
# a throwaway cluster with the packaged initdb/pg_ctl.
# buildah, debootstrap: the container test builds the Dockerfile (buildah --isolation chroot, no
# daemon, no OCI runtime needed) on a stand-in base image debootstrapped from Debian
# (scripts/container-base-standin.sh), since no container registry is reachable.
# chromium, chromium-driver: the console's browser tests (tests/acceptance/test_console.py) drive
# Debian's Chromium through chromedriver with Selenium.
PACKAGES=(samba samba-ad-provision samba-dsdb-modules samba-vfs-modules winbind krb5-user slapd ldap-utils
          postgresql buildah debootstrap chromium chromium-driver)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-servers: missing Debian packages: ${missing[*]}" >&2
    echo "install-test-servers: run as root, or: apt-get install -y ${missing[*]}" >&2
    exit 1
fi

echo "install-test-servers: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive

# Keep the packages' init scripts from starting daemons during the install (no systemd here;
# invoke-rc.d honours policy-rc.d). Leave an existing policy-rc.d alone.
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi
cleanup() {
    if [ "$own_policy" -eq 1 ]; then rm -f "$policy"; fi
}
trap cleanup EXIT

# krb5-user asks for a default realm; any answer works (the fixtures only use LDAPS).
echo "krb5-config krb5-config/default_realm string EXAMPLE.TEST" | debconf-set-selections

apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "${missing[@]}" >/dev/null

# Belt and braces: if a package's daemon started anyway (an existing policy-rc.d that allows
# it), stop exactly that daemon, found by the packaged pidfile. Never by name: the fixtures'
# own slapd/samba run from temp dirs with their own pidfiles and must not be touched.
for pidfile in /run/slapd/slapd.pid /run/samba/samba.pid /run/samba/smbd.pid \
    /run/samba/nmbd.pid /run/samba/winbindd.pid; do
    if [ -s "$pidfile" ]; then
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            echo "install-test-servers: stopping packaged daemon pid $pid ($pidfile)" >&2
            kill "$pid" || true
        fi
    fi
done

still=()
for pkg in "${missing[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        still+=("$pkg")
    fi
done
if [ ${#still[@]} -ne 0 ]; then
    echo "install-test-servers: still missing after install: ${still[*]}" >&2
    exit 1
fi
echo "install-test-servers: done" >&2
