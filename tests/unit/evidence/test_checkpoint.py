"""Keys and C2SP checkpoints: the reference implementation's vector, round trips, rejections."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lifecycle.evidence.checkpoint import (
    SigningKey,
    init_key,
    key_id,
    load_signing_key,
    parse_verifier_key,
    public_key_path,
    sign_checkpoint,
    verify_checkpoint,
    verify_note,
)
from lifecycle.exceptions import EvidenceError

from .conftest import ORIGIN

# Known answer from golang.org/x/mod/sumdb/note (note.go package documentation, the reference
# implementation of C2SP signed-note): key pair, note text and the exact signed note. Ed25519
# is deterministic, so our signer must reproduce the signature byte for byte.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgK"
    "vqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ROOT = hashlib.sha256(b"root").digest()


def go_signer() -> SigningKey:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert seed[0] == 1
    return SigningKey("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed[1:]))


def test_reference_vector_key_id_and_verifier_key() -> None:
    key = parse_verifier_key(GO_VKEY)
    assert key.name == "PeterNeumann"
    assert key.key_id.hex() == "c74f20a3"
    assert key.text() == GO_VKEY
    assert go_signer().verifier.text() == GO_VKEY


def test_reference_vector_signature_is_reproduced_byte_for_byte() -> None:
    assert go_signer().sign_note(GO_TEXT) == GO_NOTE
    assert verify_note(GO_NOTE, GO_VKEY) == GO_TEXT


def test_init_key_writes_a_0600_pem_and_a_c2sp_verifier_key(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "evidence.ed25519"
    verifier = init_key(path, ORIGIN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    pub = public_key_path(path)
    assert pub.name == "evidence.ed25519.pub"
    text = pub.read_text().strip()
    assert text == verifier.text()
    name, hex_id, blob = text.split("+", 2)
    raw = base64.b64decode(blob)
    assert name == ORIGIN
    assert raw[0] == 1 and len(raw) == 33
    assert hex_id == hashlib.sha256(name.encode() + b"\n\x01" + raw[1:]).digest()[:4].hex()
    assert key_id(name, raw[1:]).hex() == hex_id
    assert load_signing_key(path, ORIGIN).verifier == parse_verifier_key(text)


def test_init_key_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k"
    first = init_key(path, ORIGIN)
    with pytest.raises(EvidenceError, match="refusing to replace"):
        init_key(path, ORIGIN)
    assert parse_verifier_key(public_key_path(path).read_text()) == first
    second = init_key(path, ORIGIN, overwrite=True)
    assert second != first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_signing_key(path, ORIGIN).verifier == second


def test_init_key_rejects_names_c2sp_forbids(tmp_path: Path) -> None:
    for bad in ("", "has space", "a+b"):
        with pytest.raises(EvidenceError, match="key name"):
            init_key(tmp_path / "k", bad)


def test_load_signing_key_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="keys init"):
        load_signing_key(tmp_path / "missing", ORIGIN)
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(EvidenceError, match="PKCS8 PEM"):
        load_signing_key(tmp_path / "junk", ORIGIN)


def test_parse_verifier_key_rejections() -> None:
    name, hex_id, blob = GO_VKEY.split("+", 2)
    cases = {
        "PeterNeumann+c74f20a3": "parts",
        f"{name}+zzzzzzzz+{blob}": "not hex",
        f"{name}+c74f20+{blob}": "4 bytes",
        f"{name}+{hex_id}+!!!": "base64",
        f"{name}+{hex_id}+" + base64.b64encode(b"\x02" + bytes(32)).decode(): "Ed25519",
        f"{name}+c74f20a4+{blob}": "does not match",
        f"Peter+{hex_id}+{blob}": "does not match",
    }
    for text, message in cases.items():
        with pytest.raises(EvidenceError, match=message):
            parse_verifier_key(text)


def test_checkpoint_round_trip(signing_key: SigningKey) -> None:
    note = sign_checkpoint(signing_key, ORIGIN, 42, ROOT)
    body, _, sig = note.partition("\n\n")
    assert body == f"{ORIGIN}\n42\n{base64.b64encode(ROOT).decode()}"
    assert sig.startswith(f"\u2014 {ORIGIN} ")
    assert base64.b64decode(sig.split(" ")[-1])[:4] == signing_key.verifier.key_id
    cp = verify_checkpoint(note, signing_key.verifier.text(), origin=ORIGIN)
    assert (cp.origin, cp.tree_size, cp.root_hash) == (ORIGIN, 42, ROOT)


def test_checkpoint_signed_by_another_key_is_rejected(signing_key: SigningKey) -> None:
    other = SigningKey(ORIGIN, Ed25519PrivateKey.generate())
    note = sign_checkpoint(other, ORIGIN, 42, ROOT)
    with pytest.raises(EvidenceError, match="not signed by the trusted key"):
        verify_checkpoint(note, signing_key.verifier)


def test_same_key_id_but_bad_signature_is_a_forgery(signing_key: SigningKey) -> None:
    note = sign_checkpoint(signing_key, ORIGIN, 42, ROOT)
    altered = note.replace("\n42\n", "\n43\n")
    with pytest.raises(EvidenceError, match="bad signature"):
        verify_checkpoint(altered, signing_key.verifier)
    body, _, line = note.partition("\n\n")
    raw = bytearray(base64.b64decode(line.split(" ")[-1]))
    raw[10] ^= 1
    forged = f"{body}\n\n\u2014 {ORIGIN} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(EvidenceError, match="bad signature"):
        verify_checkpoint(forged, signing_key.verifier)


def test_unknown_signatures_are_ignored_but_one_trusted_is_required(
    signing_key: SigningKey,
) -> None:
    note = sign_checkpoint(signing_key, ORIGIN, 42, ROOT)
    witness = SigningKey("witness.example", Ed25519PrivateKey.generate())
    text = note.partition("\n\n")[0] + "\n"
    cosigned = note + witness.sign_note(text).partition("\n\n")[2]
    assert verify_checkpoint(cosigned, signing_key.verifier).tree_size == 42
    with pytest.raises(EvidenceError, match=r"witness\.example"):
        verify_checkpoint(witness.sign_note(text), signing_key.verifier)


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("origin\n1\n", "does not end|blank line"),
        ("origin\n1\nAAAA\n\n", "no signature"),
        ("origin\n1\nAAAA\n\n- origin AAAAAAA=\n", "em dash"),
        ("origin\n1\nAAAA\n\n\u2014 origin AA\x01AA\n", "control"),
        ("origin\n1\nAAAA\n\n\u2014 origin\n", "malformed signature line"),
        ("origin\n1\nAAAA\n\n\u2014 origin %%%%\n", "base64"),
    ],
)
def test_malformed_notes_are_named(note: str, message: str, signing_key: SigningKey) -> None:
    with pytest.raises(EvidenceError, match=message):
        verify_checkpoint(note, signing_key.verifier)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("only-origin\n", "want origin"),
        ("o\n007\n" + base64.b64encode(ROOT).decode() + "\n", "not decimal"),
        ("o\n-1\n" + base64.b64encode(ROOT).decode() + "\n", "not decimal"),
        ("o\n7\nnot*base64\n", "not valid base64"),
        ("o\n7\n" + base64.b64encode(b"short").decode() + "\n", "not 32"),
    ],
)
def test_malformed_checkpoint_bodies_are_named(body: str, message: str) -> None:
    key = SigningKey("o", Ed25519PrivateKey.generate())
    with pytest.raises(EvidenceError, match=message):
        verify_checkpoint(key.sign_note(body), key.verifier)


def test_checkpoint_of_another_log_is_rejected(signing_key: SigningKey) -> None:
    note = sign_checkpoint(signing_key, "other.example/log", 1, ROOT)
    with pytest.raises(EvidenceError, match="not the expected log"):
        verify_checkpoint(note, signing_key.verifier, origin=ORIGIN)


def test_extension_lines_are_allowed(signing_key: SigningKey) -> None:
    body = f"{ORIGIN}\n3\n{base64.b64encode(ROOT).decode()}\nextension\n"
    assert verify_checkpoint(signing_key.sign_note(body), signing_key.verifier).tree_size == 3
