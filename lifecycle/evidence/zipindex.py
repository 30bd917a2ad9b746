"""A compact central-directory index for writing zips with hundreds of thousands of entries.

``zipfile.ZipFile`` keeps one ``ZipInfo`` object per written entry (and a name -> info dict)
until ``close()`` writes the central directory: several hundred bytes per entry, which for a
bundle of 100,000 records (200,000 entries) is more memory than the leaf hashes and proofs
together. The entries the bundle writes by the hundred thousand, ``records/<seq>.json`` and
``proofs/<seq>.json``, differ only in seq, offsets, sizes, CRC and flags, so this index packs
those into 43 bytes and rebuilds the ``ZipInfo`` when ``close()`` iterates. Everything else
(zip64, CRCs, data descriptors on unseekable streams) stays zipfile's own code.

It relies on two attributes ``zipfile`` has used unchanged since Python 3.6: ``filelist``
(appended to, counted, iterated at close) and ``NameToInfo`` (``in`` for duplicate-name warnings,
item assignment). The bundle writer rejects duplicate seqs itself.
"""

from __future__ import annotations

import re
import struct
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

_PACK = struct.Struct("<BQQIQQHHBB")
_NAME = re.compile(r"^(records|proofs)/(0|[1-9][0-9]*)\.json$")
_KINDS = ("", "records", "proofs")
_FULL = 0


class CompactFileList:
    """Stands in for ``ZipFile.filelist``: packs record/proof entries, keeps others whole."""

    def __init__(self, make_info: Callable[[str], zipfile.ZipInfo]) -> None:
        self._make_info = make_info
        self._packed = bytearray()
        self._full: list[zipfile.ZipInfo] = []
        self._count = 0
        self._probes: dict[str, zipfile.ZipInfo] = {}

    def _compactable(self, info: zipfile.ZipInfo) -> re.Match[str] | None:
        match = _NAME.match(info.filename)
        if match is None or info.extra or info.comment:
            return None
        # Only entries whose fixed fields a fresh make_info() reproduces can be packed; those
        # fields do not depend on the seq, so one probe per kind suffices.
        kind = match.group(1)
        probe = self._probes.get(kind)
        if probe is None:
            probe = self._probes[kind] = self._make_info(info.filename)
        same = (
            probe.date_time == info.date_time
            and probe.external_attr == info.external_attr
            and probe.internal_attr == info.internal_attr
            and probe.create_system == info.create_system
        )
        return match if same else None

    def append(self, info: zipfile.ZipInfo) -> None:
        match = self._compactable(info)
        if match is None:
            self._packed += _PACK.pack(_FULL, len(self._full), 0, 0, 0, 0, 0, 0, 0, 0)
            self._full.append(info)
        else:
            self._packed += _PACK.pack(
                _KINDS.index(match.group(1)),
                int(match.group(2)),
                info.header_offset,
                info.CRC,
                info.compress_size,
                info.file_size,
                info.flag_bits,
                info.compress_type,
                info.extract_version,
                info.create_version,
            )
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[zipfile.ZipInfo]:
        for fields in _PACK.iter_unpack(self._packed):
            kind, seq, offset, crc, csize, size, flags, ctype, extract, create = fields
            if kind == _FULL:
                yield self._full[seq]
                continue
            info = self._make_info(f"{_KINDS[kind]}/{seq}.json")
            info.header_offset = offset
            info.CRC = crc
            info.compress_size = csize
            info.file_size = size
            info.flag_bits = flags
            info.compress_type = ctype
            info.extract_version = extract
            info.create_version = create
            yield info


class CompactNames(dict[str, Any]):
    """Stands in for ``ZipFile.NameToInfo``: does not remember record/proof entries."""

    def __setitem__(self, name: str, info: Any) -> None:
        if _NAME.match(name) is None:
            super().__setitem__(name, info)


def install(zf: zipfile.ZipFile, make_info: Callable[[str], zipfile.ZipInfo]) -> None:
    """Give a freshly opened, still empty, write-mode ``ZipFile`` the compact index."""
    if zf.filelist:
        raise ValueError("install the compact index before writing any entry")
    zf.filelist = CompactFileList(make_info)  # type: ignore[assignment]
    zf.NameToInfo = CompactNames()
