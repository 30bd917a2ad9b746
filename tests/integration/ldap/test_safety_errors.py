"""Escaping, TLS validation, secrets and error translation against the real servers."""

from __future__ import annotations

import gc
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from connectors.base import DesiredAccess, PermanentConnectorError, TransientConnectorError, Worker
from tests.integration.ldap.directory import USER_PASSWORD
from tests.integration.ldap.fixtures import Directory, LdapHarness, build, new_worker

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

#: ldap3 drops the SSL socket of a failed certificate check without closing it; these tests
#: collect it (``_collect_leaks``) so that the warning about ldap3 fires here and nowhere else.
ldap3_socket_leak = pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnraisableExceptionWarning", "ignore::ResourceWarning"
)


@pytest.fixture(autouse=True)
def _collect_leaks() -> Iterator[None]:
    yield
    gc.collect()


async def test_an_id_that_would_match_everyone_matches_nobody(harness_for: LdapHarness) -> None:
    for _ in range(2):
        await harness_for.seed(new_worker(), [])
    for hostile in ("*", "T*", "*)(objectClass=*", "\\2a", "T\x00*", "*\x00"):
        found = await harness_for.connector.find_account(Worker(worker_id=hostile))
        assert found is None, hostile


async def test_names_with_filter_and_dn_metacharacters(harness_for: LdapHarness) -> None:
    """Joiner with a name full of ``*()\\,+=`` and an email with ``*``: created, found, read."""
    connector = harness_for.connector
    suffix = new_worker().worker_id
    worker = Worker(
        worker_id=suffix,
        name='Ann *(Lee)\\ "O,Brien"+x=y',
        email=f"a*(b)\\{suffix}@example.org",
    )
    group = harness_for.groups[0]
    account = await connector.create_account(worker, DesiredAccess(frozenset({group})))
    state = await connector.read_state(account)
    assert state.enabled and state.entitlements == {group}
    by_mail = build(
        harness_for.directory, "by-mail", correlation_attribute="mail", correlation_field="email"
    )
    async with by_mail:
        found = await by_mail.find_account(worker)
        assert found is not None and found.account_id == account.account_id
        assert await by_mail.find_account(Worker(worker_id="x", email="a*")) is None
    removed = await connector.remove_access(account)
    assert removed.removed == (group,)


async def test_nul_in_a_name_is_escaped_not_injected(harness_for: LdapHarness) -> None:
    """A NUL goes to the server as ``\\00`` in the RDN (ldap3's escape_rdn would send a raw
    NUL); both servers store the name as given and the account is found by its id."""
    worker = Worker(worker_id=new_worker().worker_id, name="Nul\x00Byte")
    connector = harness_for.connector
    account = await connector.create_account(worker, DesiredAccess())
    assert (await connector.read_state(account)).enabled
    found = await connector.find_account(worker)
    assert found is not None and found.account_id == account.account_id


async def test_openldap_worker_id_with_metacharacters_as_rdn(openldap: Directory) -> None:
    worker = Worker(worker_id=f"x*(y)\\z,{new_worker().worker_id}", email=None)
    async with build(openldap) as connector:
        account = await connector.create_account(worker, DesiredAccess())
        found = await connector.find_account(worker)
        assert found is not None and found.account_id == account.account_id
        assert await connector.find_account(Worker(worker_id="x*")) is None


@ldap3_socket_leak
async def test_certificate_validation_is_on_by_default(directory: Directory) -> None:
    options = {k: v for k, v in directory.options.items() if k != "ca_file"}
    connector = build(directory, **options)
    connector_without_ca = type(connector).from_config(
        "no-ca", options, __import__("connectors.base").base.ConnectorContext()
    )
    async with connector_without_ca:
        with pytest.raises(PermanentConnectorError, match="ca_file") as info:
            await connector_without_ca.find_account(new_worker())
    assert info.value.connector == "no-ca"
    await connector.aclose()


@ldap3_socket_leak
async def test_certificate_name_is_checked(ad: Directory) -> None:
    """Samba also listens on [::1], which the test certificate does not name."""
    async with build(ad, url="ldaps://[::1]:636") as connector:
        with pytest.raises(PermanentConnectorError, match="TLS"):
            await connector.find_account(new_worker())
    async with build(ad, url="ldaps://[::1]:636", tls_server_name="localhost") as connector:
        assert await connector.find_account(new_worker()) is None


async def test_validation_off_only_when_written_down(directory: Directory) -> None:
    options = {k: v for k, v in directory.options.items() if k != "ca_file"}
    from connectors.base import ConnectorContext
    from connectors.ldap import LdapConnector

    insecure = LdapConnector.from_config(
        "insecure", {**options, "tls_verify": False}, ConnectorContext()
    )
    async with insecure:
        assert await insecure.find_account(new_worker()) is None


async def test_bad_bind_password_is_permanent_and_never_shown(
    directory: Directory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "Not-The-Bind-Secret-91!"
    secret = tmp_path / "pw"
    secret.write_text(wrong, encoding="utf-8")
    caplog.set_level(logging.DEBUG)
    async with build(directory, bind_password=f"file:{secret}") as connector:
        with pytest.raises(PermanentConnectorError) as info:
            await connector.find_account(new_worker())
    message = str(info.value)
    assert f"[{directory.kind}" in message and "bind_password" in message
    if directory.kind == "ad":
        assert "data 52e" in message
    assert wrong not in message and wrong not in caplog.text
    assert all(wrong not in repr(r.__dict__) for r in caplog.records)


async def test_insufficient_rights_is_permanent_and_says_what_to_fix(
    harness_for: LdapHarness, tmp_path: Path
) -> None:
    directory = harness_for.directory
    victim, actor = new_worker(), new_worker()
    await harness_for.seed(victim, [])
    await harness_for.seed(actor, [])
    secret = tmp_path / "pw"
    secret.write_text(USER_PASSWORD, encoding="utf-8")
    account = await harness_for.connector.find_account(victim)
    assert account is not None
    weak = build(
        directory, "weak", bind_dn=harness_for.dns[actor.worker_id], bind_password=f"file:{secret}"
    )
    async with weak:
        with pytest.raises(PermanentConnectorError, match="lacks the rights") as info:
            await weak.disable(account)
    assert info.value.connector == "weak" and info.value.account_id == account.account_id
    assert (await harness_for.connector.read_state(account)).enabled is True


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@ldap3_socket_leak
async def test_server_down_is_transient(directory: Directory) -> None:
    url = f"ldaps://127.0.0.1:{_closed_port()}"
    async with build(directory, url=url, timeout_seconds=2) as connector:
        with pytest.raises(TransientConnectorError, match="unreachable"):
            await connector.find_account(new_worker())


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts TCP connections and never says a word (a hung domain controller)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


@ldap3_socket_leak
async def test_timeout_is_transient_and_bounded(directory: Directory, silent_server: int) -> None:
    url = f"ldaps://127.0.0.1:{silent_server}"
    async with build(directory, url=url, timeout_seconds=1) as connector:
        with anyio.fail_after(15):
            with pytest.raises(TransientConnectorError):
                await connector.find_account(new_worker())


async def test_connections_the_server_dropped_are_replaced(tmp_path: Path) -> None:
    """slapd closes idle connections after 1 s; the next calls must not fail on dead sockets.

    The connector does not retry: the pool sees that the idle connections were closed by the
    server before handing one out (an idle LDAP socket has nothing to read but EOF), and
    opens a fresh one instead of sending the call down a dead socket.
    """
    from tests.integration.ldap.directory import DirectoryAdmin
    from tests.integration.ldap.fixtures import Directory as _Directory
    from tests.integration.ldap.servers import slapd_server

    with slapd_server(idle_timeout=1) as server:
        secret = tmp_path / "pw"
        secret.write_text(server.root_password, encoding="utf-8")
        admin = DirectoryAdmin(
            "openldap", server.url, server.ca_file, server.root_dn, server.root_password
        )
        directory = _Directory(
            "openldap",
            admin,
            {
                "kind": "openldap",
                "url": server.url,
                "bind_dn": server.root_dn,
                "bind_password": f"file:{secret}",
                "base_dn": server.suffix,
                "ca_file": str(server.ca_file),
                "pool_size": 4,
            },
            "ou=people,dc=example,dc=org",
            (),
            server.ca_file,
        )
        async with build(directory) as connector:
            async with anyio.create_task_group() as tg:  # open all four connections
                for _ in range(8):
                    tg.start_soon(connector.find_account, new_worker())
            assert connector.pool_stats().open == 4
            await anyio.sleep(2.5)  # slapd drops them all
            for _ in range(3):
                assert await connector.find_account(new_worker()) is None
            assert connector.pool_stats().open == 1
        # With max_idle_seconds below the server's timeout, stale ones are never even tried.
        async with build(directory, max_idle_seconds=0.5) as connector:
            assert await connector.find_account(new_worker()) is None
            await anyio.sleep(1.5)
            assert await connector.find_account(new_worker()) is None
        admin.close()
