"""Whether two index records (``shared.domain.patient.member_record``) live together. Pure.

Three tests, not one, because each rule asks a different question; they are kept here side by side so the
difference stays visible. ``corroborators`` are the records' keyed phone, address-line and identifier tokens
("phone:..", "addr:..", "id:.."); ``places``/``home`` the keyed place names of the address
(``shared.domain.places``).

- ``shares_phone_or_address``: a phone or an address line (never an identifier). The household of relatives,
  which says nothing about being one person: the siblings guard, the serial-typo and one-digit NIK rules,
  ``registered_together`` (``pair_rules``).
- ``shares_phone_address_or_home``: the same, or one home (``places.same_home``: the hamlet or street,
  typo-tolerant). The widest: whether a namesake or rival *lives with* a record, where a look-alike anywhere
  in the hamlet must count (``pair_rules`` NIK neighbours, ``household_rival``, the NIK bridge of
  ``matching``).
- ``shares_contact_or_one_address``: a phone, an address line *or an identifier*, or one address written in
  two forms (``places.one_address``: hamlet and village). What corroborates two records under one NIK
  (placeholder date, single-token name): the hamlet alone is not enough, its name repeats between villages
  of one kecamatan.

They differ on identifiers (only the third counts one) and on the address (the second counts a shared
hamlet, the third needs hamlet and village, the first the keyed line itself); merging them would change
decisions.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.domain.places import one_address, same_home


def shares_phone_or_address(a: Mapping, b: Mapping) -> bool:
    """A shared phone or address line: the same household, which says nothing about being the same person."""
    return bool(set(a.get("corroborators") or []) & set(b.get("corroborators") or []) - {
        c for c in (a.get("corroborators") or []) if c.startswith("id:")})


def shares_phone_address_or_home(record: Mapping, other: Mapping) -> bool:
    """A phone or address line in common, or one home (``same_home``)."""
    shared = set(record.get("corroborators") or ()) & set(other.get("corroborators") or ())
    return any(not c.startswith("id:") for c in shared) or same_home(record, other)


def shares_contact_or_one_address(a: Mapping, b: Mapping, evidence: dict) -> bool:
    """Under one NIK: a shared phone, address line or identifier, or one address written in two forms
    (``places.one_address``: hamlet and village both named by the other, "Dsn. Tegalrejo RT 1/RW 10, Ds.
    Margoagung" / "TEGALREJO 01/10 MARGOAGUNG"). The hamlet alone (``same_home``) is not enough: hamlet names
    repeat from village to village within one kecamatan, and a serial typo lands on a person of that
    kecamatan, birth date and sex (held-out default seed 35: a collision record of one given name, living in
    another village's hamlet of the same name, merged when the hamlet counted)."""
    return bool(evidence["corroborating"]) or one_address(a, b)
