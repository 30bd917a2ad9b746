"""Ed25519 log keys and C2SP checkpoints (signed notes).

A checkpoint is the signed tree head of the evidence log in the C2SP ``tlog-checkpoint``
format: a ``signed-note`` whose text is the origin line, the tree size and the base64 root
hash. Using the standard format means an auditor can check our checkpoints with any C2SP tool
(``golang.org/x/mod/sumdb/note``, sigsum, ...), not only with ours.

Keys:
    private key  PKCS8 PEM, file mode 0600, at the configured ``evidence_key`` path
    verifier key ``<name>+<hex key id>+<base64(0x01 || 32-byte public key)>`` in ``<path>.pub``
    key id       SHA-256(name || 0x0A || 0x01 || public key)[:4]

The key name is the log origin, as tlog-checkpoint recommends.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from lifecycle.evidence.merkle import HASH_SIZE
from lifecycle.exceptions import EvidenceError

ED25519_TYPE = b"\x01"
SIG_PREFIX = "\u2014 "  # em dash, space
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100


def _check_name(name: str) -> None:
    if not name:
        raise EvidenceError("key name must not be empty")
    if "+" in name or any(c.isspace() for c in name):
        raise EvidenceError(f"key name {name!r} must not contain spaces or '+' (C2SP signed-note)")
    if any(ord(c) < 0x20 for c in name):
        raise EvidenceError(f"key name {name!r} must not contain control characters")


def key_id(name: str, public_key: bytes) -> bytes:
    """The 4-byte C2SP key id: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519_TYPE + public_key).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A public log key as an auditor configures it."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    @property
    def public_bytes(self) -> bytes:
        return self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def text(self) -> str:
        """The C2SP verifier key string ``<name>+<hex id>+<base64(0x01 || key)>``."""
        blob = base64.b64encode(ED25519_TYPE + self.public_bytes).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    def __str__(self) -> str:
        return self.text()


@dataclass(frozen=True)
class SigningKey:
    """The log's private key with its name; only the process that appends holds one."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> VerifierKey:
        pub = self.private_key.public_key()
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return VerifierKey(self.name, key_id(self.name, raw), pub)

    def sign_note(self, text: str) -> str:
        """Sign ``text`` (ending in a newline) as a C2SP signed note with one signature."""
        _check_note_text(text)
        sig = self.private_key.sign(text.encode())
        blob = base64.b64encode(self.verifier.key_id + sig).decode()
        return f"{text}\n{SIG_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class Checkpoint:
    """A verified tree head."""

    origin: str
    tree_size: int
    root_hash: bytes


def public_key_path(path: str | os.PathLike[str]) -> Path:
    """Where ``init_key`` writes the verifier key: the private key path plus ``.pub``."""
    p = Path(path)
    return p.with_name(p.name + ".pub")


def init_key(path: str | os.PathLike[str], name: str, *, overwrite: bool = False) -> VerifierKey:
    """Create the log key: private key at ``path`` (0600) and the verifier key at ``path.pub``.

    Refuses to replace an existing key unless ``overwrite``: a new key orphans every checkpoint
    an auditor already holds, so it must never happen by accident.
    """
    _check_name(name)
    priv_path = Path(path)
    pub_path = public_key_path(priv_path)
    if not overwrite:
        for p in (priv_path, pub_path):
            if p.exists():
                raise EvidenceError(
                    f"{p} already exists; refusing to replace the evidence key "
                    "(pass overwrite to rotate it deliberately)"
                )
    priv_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(priv_path, flags, 0o600)
    except FileExistsError as exc:
        raise EvidenceError(f"{priv_path} already exists; refusing to replace it") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(priv_path, 0o600)  # O_TRUNC on an existing file keeps its old mode
    verifier = SigningKey(name, key).verifier
    pub_path.write_text(verifier.text() + "\n", encoding="utf-8")
    return verifier


def load_signing_key(path: str | os.PathLike[str], name: str) -> SigningKey:
    """Load the PKCS8 PEM private key at ``path`` under the key name ``name``."""
    _check_name(name)
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise EvidenceError(
            f"cannot read the evidence key {p}: {exc.strerror}; "
            "create it with `lifecycle keys init`"
        ) from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise EvidenceError(f"{p} is not an unencrypted PKCS8 PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise EvidenceError(f"{p} holds a {type(key).__name__}, not an Ed25519 key")
    return SigningKey(name, key)


def parse_verifier_key(text: str) -> VerifierKey:
    """Parse ``<name>+<hex key id>+<base64(0x01 || public key)>``; the id must match the key."""
    # The name and the hex id hold no "+"; the base64 key may.
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise EvidenceError(
            "verifier key must look like <name>+<hex key id>+<base64 key> "
            f"(got {len(parts)} '+'-separated parts)"
        )
    name, hex_id, blob = parts
    _check_name(name)
    try:
        kid = bytes.fromhex(hex_id)
    except ValueError as exc:
        raise EvidenceError(f"verifier key id {hex_id!r} is not hex") from exc
    if len(kid) != 4:
        raise EvidenceError(f"verifier key id {hex_id!r} is not 4 bytes")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceError("verifier key material is not valid base64") from exc
    if len(raw) != 33 or raw[:1] != ED25519_TYPE:
        raise EvidenceError("verifier key is not an Ed25519 key (want 0x01 then 32 bytes)")
    if key_id(name, raw[1:]) != kid:
        raise EvidenceError(
            f"verifier key id {hex_id} does not match its name and public key "
            "(the key text was altered)"
        )
    return VerifierKey(name, kid, Ed25519PublicKey.from_public_bytes(raw[1:]))


def _check_note_text(text: str) -> None:
    if not text.endswith("\n"):
        raise EvidenceError("note text must end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in text):
        raise EvidenceError("note text must not contain control characters other than newline")


def checkpoint_text(origin: str, tree_size: int, root_hash: bytes) -> str:
    """The unsigned checkpoint body: origin, tree size, base64 root hash, each with a newline."""
    if not origin or "\n" in origin:
        raise EvidenceError("checkpoint origin must be one non-empty line")
    if tree_size < 0:
        raise EvidenceError(f"tree size {tree_size} is negative")
    if len(root_hash) != HASH_SIZE:
        raise EvidenceError(f"root hash is {len(root_hash)} bytes, not {HASH_SIZE}")
    return f"{origin}\n{tree_size}\n{base64.b64encode(root_hash).decode()}\n"


def sign_checkpoint(key: SigningKey, origin: str, tree_size: int, root_hash: bytes) -> str:
    """The signed checkpoint note for one tree head."""
    return key.sign_note(checkpoint_text(origin, tree_size, root_hash))


def _as_verifier(verifier_key: str | VerifierKey) -> VerifierKey:
    return (
        verifier_key if isinstance(verifier_key, VerifierKey) else parse_verifier_key(verifier_key)
    )


def verify_note(note: str, verifier_key: str | VerifierKey) -> str:
    """Verify a C2SP signed note with one trusted key; return the note text.

    Signatures by other keys are ignored, as the spec requires; the note is rejected unless
    the trusted key signed it and every signature by that key verifies.
    """
    key = _as_verifier(verifier_key)
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise EvidenceError("signed note is larger than 1 MiB")
    if not note.endswith("\n"):
        raise EvidenceError("malformed signed note: it does not end with a newline")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        hint = " (CRLF line endings? notes use LF only)" if "\r" in note else ""
        raise EvidenceError(f"malformed signed note: it contains control characters{hint}")
    split = note.rfind("\n\n")
    if split < 0:
        raise EvidenceError("malformed signed note: no blank line before the signatures")
    text = note[: split + 1]
    sig_lines = note[split + 2 :].splitlines()
    if not sig_lines:
        raise EvidenceError("malformed signed note: no signature lines")
    if len(sig_lines) > MAX_SIGNATURES:
        raise EvidenceError(f"signed note has more than {MAX_SIGNATURES} signatures")
    seen: list[str] = []
    verified = False
    for line in sig_lines:
        if not line.startswith(SIG_PREFIX):
            raise EvidenceError(
                f"malformed signature line {line[:40]!r}: it must start with an em dash and a space"
            )
        name, sep, blob = line[len(SIG_PREFIX) :].rpartition(" ")
        if not sep or not name:
            raise EvidenceError(f"malformed signature line {line[:40]!r}")
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EvidenceError(f"signature by {name} is not valid base64") from exc
        if len(raw) < 5:
            raise EvidenceError(f"signature by {name} is too short")
        seen.append(f"{name} (key id {raw[:4].hex()})")
        if name != key.name or raw[:4] != key.key_id:
            continue
        try:
            key.public_key.verify(raw[4:], text.encode())
        except InvalidSignature as exc:
            raise EvidenceError(
                f"bad signature by {key.name} (key id {key.key_id.hex()}): the signed text "
                "was altered or the signature forged"
            ) from exc
        verified = True
    if not verified:
        raise EvidenceError(
            f"not signed by the trusted key {key.name} (key id {key.key_id.hex()}); "
            f"signatures found: {', '.join(seen)}. Wrong key, or a key id mismatch"
        )
    return text


def signed_by(note: str, key: SigningKey) -> bool:
    """Whether ``key`` signed ``note`` (a checkpoint signed before ``keys init --force`` is
    not: it must be signed again, by the current key, before it is handed out)."""
    try:
        verify_note(note, key.verifier)
    except EvidenceError:
        return False
    return True


def parse_checkpoint_text(text: str) -> Checkpoint:
    """Parse a checkpoint body; extension lines after the root hash are allowed and ignored."""
    lines = text.split("\n")
    if lines[-1] != "" or len(lines) < 4:
        raise EvidenceError("malformed checkpoint: want origin, tree size and root hash lines")
    origin, size_line, hash_line = lines[0], lines[1], lines[2]
    if not origin:
        raise EvidenceError("malformed checkpoint: empty origin line")
    if (
        not size_line.isascii()
        or not size_line.isdigit()
        or (size_line != "0" and size_line.startswith("0"))
    ):
        raise EvidenceError(f"malformed checkpoint: tree size {size_line[:40]!r} is not decimal")
    try:
        root = base64.b64decode(hash_line, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceError("malformed checkpoint: root hash is not valid base64") from exc
    if len(root) != HASH_SIZE:
        raise EvidenceError(f"malformed checkpoint: root hash is {len(root)} bytes, not 32")
    if any(line == "" for line in lines[3:-1]):
        raise EvidenceError("malformed checkpoint: empty extension line")
    return Checkpoint(origin, int(size_line), root)


def verify_checkpoint(
    note: str, verifier_key: str | VerifierKey, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint with the trusted key and return its tree head.

    ``origin``, when given, must equal the checkpoint's origin line, so a checkpoint of some
    other log signed by the same key is not mistaken for this one.
    """
    cp = parse_checkpoint_text(verify_note(note, verifier_key))
    if origin is not None and cp.origin != origin:
        raise EvidenceError(f"checkpoint origin {cp.origin!r} is not the expected log {origin!r}")
    return cp
