"""The compact zip index writes byte-for-byte the archive zipfile writes on its own."""

from __future__ import annotations

import io
import zipfile
from typing import Any

from lifecycle.evidence import zipindex


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _write(compact: bool, seekable: bool) -> bytes:
    buf = io.BytesIO()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: Any) -> int:
            data = bytes(b)
            buf.write(data)
            return len(data)

    target: Any = buf if seekable else Unseekable()
    with zipfile.ZipFile(target, "w") as zf:
        if compact:
            zipindex.install(zf, _info)
        zf.writestr(_info("checkpoint"), b"note\n")
        for seq in range(300):
            zf.writestr(_info(f"records/{seq}.json"), b'{"seq":%d}' % seq * 20)
            stored = _info(f"proofs/{seq}.json")
            stored.compress_type = zipfile.ZIP_STORED
            zf.writestr(stored, b"[]")
        zf.writestr(_info("records/notaseq.json"), b"x")
        zf.writestr(_info("manifest.json"), b"{}")
    return buf.getvalue()


def test_compact_index_is_byte_identical() -> None:
    for seekable in (True, False):
        plain = _write(compact=False, seekable=seekable)
        assert _write(compact=True, seekable=seekable) == plain
        with zipfile.ZipFile(io.BytesIO(plain)) as zf:
            assert zf.testzip() is None
            assert len(zf.namelist()) == 603
