"""The fast RFC 8785 paths (the verifier's check, the records' writer) agree with the rfc8785
package on every input."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.evidence.records import canonical, canonical_with_seq
from lifecycle.evidence.verify import _parse_canonical

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


# The machine is shared: generation speed is not what these tests are about.
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.dictionaries(st.text(), values, max_size=6))
def test_fast_check_matches_rfc8785(value: dict[str, Any]) -> None:
    try:
        canonical = rfc8785.dumps(value)
    except (rfc8785.IntegerDomainError, rfc8785.FloatDomainError):
        return
    record, ok = _parse_canonical(canonical)
    assert ok
    assert record == value
    pretty = json.dumps(value, indent=1).encode()
    assert _parse_canonical(pretty)[1] == (pretty == canonical)
    ascii_only = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
    assert _parse_canonical(ascii_only)[1] == (ascii_only == canonical)


class _Status(StrEnum):
    DONE = "done"


# Records hold plain values (the fast path) and, from a connector's detail or read-back, maybe
# anything else (the package): both must give the package's bytes, or its refusal.
record_values = st.recursive(
    scalars
    | st.integers()
    | st.sampled_from(list(_Status))
    | st.text(alphabet=st.characters(codec="utf-8") | st.just("\ud800")),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(
            st.text(max_size=3) | st.sampled_from(["a", "é", "\U0001f600", "\uffff"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.dictionaries(st.text(), record_values, max_size=6))
def test_canonical_matches_rfc8785(value: dict[str, Any]) -> None:
    try:
        expected = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        with pytest.raises(type(exc)):
            canonical(value)
        return
    assert canonical(value) == expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.dictionaries(
        st.sampled_from(["actions", "schema", "seq", "status", "é", "zz", "a"]) | st.text(),
        record_values,
        max_size=6,
    ),
    seq=st.integers(0, 2**53 - 1) | st.integers(2**53, 2**60),
)
def test_canonical_with_seq_matches_canonical_of_the_whole_record(
    value: dict[str, Any], seq: int
) -> None:
    whole = {**value, "seq": seq}
    try:
        expected = rfc8785.dumps(whole)
    except rfc8785.CanonicalizationError as exc:
        with pytest.raises(type(exc)):
            canonical_with_seq(value)(seq)
        return
    assert canonical_with_seq(value)(seq) == expected
