"""FHIR's id grammar, the one definition every parser of ids uses (messages, notifications, the
relay's paths, request paths in ``wire``). Pure.

R4 ids are ``[A-Za-z0-9\\-\\.]{1,64}``. That grammar admits ``.`` and ``..``, which are path segments,
not ids: ``Patient/..`` in a URL is the type's root (an audit read ``..`` as a delete), so both are
refused explicitly.
"""

from __future__ import annotations

import re

# To embed in a larger pattern: an id, not followed by more id characters, that is not "." or "..".
FHIR_ID_PATTERN = r"(?!\.\.?(?![A-Za-z0-9\-.]))[A-Za-z0-9\-.]{1,64}(?![A-Za-z0-9\-.])"
_FHIR_ID = re.compile(FHIR_ID_PATTERN)


def is_fhir_id(value: object) -> bool:
    """Whether ``value`` is a string in FHIR's id grammar (and not ``.``/``..``)."""
    return isinstance(value, str) and _FHIR_ID.fullmatch(value) is not None
