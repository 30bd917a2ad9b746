"""The verifier's fast RFC 8785 check agrees with the rfc8785 package on every input."""

from __future__ import annotations

import json
from typing import Any

import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
