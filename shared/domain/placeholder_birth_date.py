"""A placeholder birth date under one NIK: an unknown date, not a date that contradicts the NIK. Pure.

Registries write 1 January (of the year, or 1970-01-01, 1900-01-01) when the birth date is unknown. On a
record carrying a NIK whose own date is real, that placeholder disagrees with the NIK, and the NIK
consistency check flags the record (``nik-birthdate-mismatch``), as if the NIK were someone else's. It
is not: the placeholder states nothing, so the record is a record without a birth date, whose date the
NIK fills (``derived``), exactly as when the field is empty. The pair rules then treat it as they treat a
missing date: the NIK cannot vouch for a record that states no date (the 97 name threshold applies),
and a household member under another NIK with a near name (``_relative_namesake``) still sends the pair
to review. A NIK whose own date is 1 January is left alone (``nik-placeholder-date`` decides it).
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.domain.identity_evidence import is_placeholder_date, nik_issues, states_birth_date

DATE_MISMATCH = "nik-birthdate-mismatch"


def placeholder_as_unknown(record: Mapping, other: Mapping) -> Mapping:
    """``record`` with its placeholder birth date read as unknown (filled from the NIK, listed in
    ``derived``, its date mismatch dropped) when the NIK disagrees with that placeholder only, and
    ``other`` (same NIK) agrees with the NIK: it states the NIK's real date, or states none (the NIK fills
    both, as for two records without a date); else ``record`` unchanged."""
    if not states_birth_date(record) or not is_placeholder_date(record.get("birth_date")):
        return record
    if nik_issues(record) != {DATE_MISMATCH} or nik_issues(other) or not other.get("birth_date"):
        return record
    if states_birth_date(other) and is_placeholder_date(other.get("birth_date")):
        return record
    return {**record, "birth_date": other["birth_date"],
            "derived": [*(record.get("derived") or ()), "birth_date"],
            "nik_issues": [issue for issue in record.get("nik_issues") or () if issue != DATE_MISMATCH]}
