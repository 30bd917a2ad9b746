"""Throwaway directory servers on loopback: a Samba AD DC and slapd with ppolicy.

Used by the pytest fixtures in this package and by ``bench/ldap_termination.py``. Both servers
live in a temp dir with a CA made here, so the connector is tested with certificate validation
on (the default), never with it turned off.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK = "127.0.0.1"
AD_REALM = "EXAMPLE.TEST"
AD_DOMAIN_DN = "DC=example,DC=test"
AD_ADMIN_DN = f"CN=Administrator,CN=Users,{AD_DOMAIN_DN}"
AD_ADMIN_PASSWORD = "Adm1n!Passw0rd"
LDAP_SUFFIX = "dc=example,dc=org"
LDAP_ROOT_DN = f"cn=Manager,{LDAP_SUFFIX}"
LDAP_ROOT_PASSWORD = "slapd-test-password"

INSTALL_HINT = "run scripts/install-test-servers.sh as root (it installs samba, slapd, ldap-utils)"


class ServerUnavailable(RuntimeError):
    """A test server could not be started; the message says why and what to do."""


@dataclass(frozen=True)
class TestCA:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_ca(directory: Path) -> TestCA:
    """A CA and a server certificate for 127.0.0.1 / localhost, written as PEM files."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lifecycle test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca = TestCA(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ca.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    ca.key_file.chmod(0o600)
    return ca


def _require(binary: str) -> str:
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if path is None:
        raise ServerUnavailable(f"{binary} is not installed: {INSTALL_HINT}")
    return path


def _port_busy(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _wait_tls(port: int, ca_file: Path, deadline: float, proc: subprocess.Popen[Any]) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerUnavailable(f"server exited with code {proc.returncode} before listening")
        try:
            with (
                socket.create_connection((LOOPBACK, port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname=LOOPBACK),
            ):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.2)
    raise ServerUnavailable(f"no TLS listener on {LOOPBACK}:{port} in time: {last}")


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the test process dies, even by SIGKILL,
    so a killed pytest run never leaves a Samba holding 127.0.0.1:636 for the next one."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def _stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a server and everything it forked (it runs in its own process group)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # prefork children that outlived their master


# --------------------------------------------------------------------------- Samba AD DC


@dataclass(frozen=True)
class SambaDC:
    url: str
    ca_file: Path
    domain_dn: str
    admin_dn: str
    admin_password: str
    workdir: Path


@contextlib.contextmanager
def samba_dc(timeout: float = 90.0) -> Iterator[SambaDC]:
    """Provision a fresh AD domain in a temp dir and run ``samba`` (LDAP service only).

    Samba cannot move LDAPS off port 636, so a busy 127.0.0.1:636 is an error, not a retry.
    """
    samba_tool, samba = _require("samba-tool"), _require("samba")
    for port in (389, 636):
        if _port_busy(port):
            raise ServerUnavailable(
                f"{LOOPBACK}:{port} is already in use; the Samba AD DC test server needs it "
                "(stop whatever listens there, e.g. a packaged slapd or samba)"
            )
    workdir = Path(tempfile.mkdtemp(prefix="lifecycle-samba-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        ca = make_ca(workdir / "tls")
        options = [
            "interfaces=lo",
            "bind interfaces only=yes",
            "server services=ldap",
            f"log file={workdir}/log.samba",
            "tls enabled=yes",
            f"tls keyfile={ca.key_file}",
            f"tls certfile={ca.cert_file}",
            f"tls cafile={ca.ca_file}",
        ]
        provision = subprocess.run(
            [
                samba_tool,
                "domain",
                "provision",
                f"--targetdir={workdir}",
                f"--realm={AD_REALM}",
                "--domain=EXAMPLE",
                "--server-role=dc",
                "--dns-backend=NONE",
                f"--adminpass={AD_ADMIN_PASSWORD}",
                "--use-rfc2307",
                *(f"--option={option}" for option in options),
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if provision.returncode != 0:
            raise ServerUnavailable(
                "samba-tool domain provision failed:\n"
                + provision.stdout[-2000:]
                + provision.stderr[-2000:]
            )
        with (workdir / "samba.out").open("wb") as log:
            proc = subprocess.Popen(
                [samba, "-i", "-s", str(workdir / "etc" / "smb.conf")],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        _wait_tls(636, ca.ca_file, time.monotonic() + timeout, proc)
        yield SambaDC(
            url=f"ldaps://{LOOPBACK}:636",
            ca_file=ca.ca_file,
            domain_dn=AD_DOMAIN_DN,
            admin_dn=AD_ADMIN_DN,
            admin_password=AD_ADMIN_PASSWORD,
            workdir=workdir,
        )
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- slapd


_SLAPD_CONFIG = """\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {rundir}/slapd.pid
olcIdleTimeout: {idle_timeout}
olcTLSCACertificateFile: {ca}
olcTLSCertificateFile: {cert}
olcTLSCertificateKeyFile: {key}

dn: cn=module,cn=config
objectClass: olcModuleList
cn: module
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb
olcModuleLoad: ppolicy
olcModuleLoad: lastbind

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif
include: file:///etc/ldap/schema/cosine.ldif
include: file:///etc/ldap/schema/inetorgperson.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcRootDN: {rootdn}

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {suffix}
olcRootDN: {rootdn}
olcRootPW: {rootpw}
olcDbDirectory: {rundir}/data
olcDbMaxSize: 268435456
olcLastBind: TRUE
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by self read by users read by * none

dn: olcOverlay={{0}}ppolicy,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {{0}}ppolicy
olcPPolicyDefault: cn=default,ou=policies,{suffix}
olcPPolicyUseLockout: TRUE
olcPPolicyHashCleartext: TRUE
"""

_SLAPD_TREE = """\
dn: {suffix}
objectClass: top
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{suffix}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{suffix}
objectClass: organizationalUnit
ou: groups

dn: ou=policies,{suffix}
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,{suffix}
objectClass: organizationalRole
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdLockout: TRUE
pwdMaxFailure: 0
"""


@dataclass(frozen=True)
class SlapdServer:
    url: str
    ca_file: Path
    suffix: str
    root_dn: str
    root_password: str
    ppolicy_dn: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def slapd_server(timeout: float = 30.0, idle_timeout: int = 0) -> Iterator[SlapdServer]:
    """slapd with mdb, ppolicy (lockout) and lastbind, on a free loopback port with LDAPS.

    ``idle_timeout`` (seconds, 0 = never) makes slapd close idle connections, as real
    servers and firewalls do.
    """
    slapd, slapadd = _require("slapd"), _require("slapadd")
    rundir = Path(tempfile.mkdtemp(prefix="lifecycle-slapd-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        ca = make_ca(rundir / "tls")
        (rundir / "slapd.d").mkdir()
        (rundir / "data").mkdir()
        values = {
            "rundir": rundir,
            "ca": ca.ca_file,
            "cert": ca.cert_file,
            "key": ca.key_file,
            "suffix": LDAP_SUFFIX,
            "rootdn": LDAP_ROOT_DN,
            "rootpw": LDAP_ROOT_PASSWORD,
            "idle_timeout": idle_timeout,
        }
        for ldif, args in (
            (_SLAPD_CONFIG.format(**values), ["-n0"]),
            (_SLAPD_TREE.format(**values), ["-b", LDAP_SUFFIX]),
        ):
            added = subprocess.run(
                [slapadd, "-F", str(rundir / "slapd.d"), *args],
                input=ldif,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if added.returncode != 0:
                raise ServerUnavailable(f"slapadd failed: {added.stderr[-2000:]}")
        port = _free_port()
        with (rundir / "slapd.out").open("wb") as log:
            proc = subprocess.Popen(
                [
                    slapd,
                    "-d",
                    "0",
                    "-F",
                    str(rundir / "slapd.d"),
                    "-h",
                    f"ldaps://{LOOPBACK}:{port}/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        _wait_tls(port, ca.ca_file, time.monotonic() + timeout, proc)
        yield SlapdServer(
            url=f"ldaps://{LOOPBACK}:{port}",
            ca_file=ca.ca_file,
            suffix=LDAP_SUFFIX,
            root_dn=LDAP_ROOT_DN,
            root_password=LDAP_ROOT_PASSWORD,
            ppolicy_dn=f"cn=default,ou=policies,{LDAP_SUFFIX}",
        )
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(rundir, ignore_errors=True)
