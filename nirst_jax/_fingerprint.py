"""Content fingerprints: what a cache or a store is keyed by."""

from __future__ import annotations

import hashlib
import json


def json_sha256(value) -> str:
    """SHA-256 (hex) of `value`'s JSON with sorted keys: equal for equal content, whatever the
    order it was built in.

    Arguments:
        value: JSON-ready data (dicts, lists, numbers, strings, booleans, None).

    Returns:
        64 hexadecimal digits.
    """
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
