"""Two different NIKs on records that agree on everything else: one person's records a clerk must see.

A NIK more than one digit apart from another is no typo the rules can read, but legacy data holds such
pairs of one person: a NIK issued again after a move to another regency or a lost card, a record keyed
with two typos (the region and the serial), a registration number stored in the NIK field. Two valid
NIKs may also be two people, and only a person can tell these apart: same-name twins whose records do
not say they are twins share name, birth date, sex and home too. So such a pair is never merged by a
rule; it goes to review instead of being dropped as ``different-nik``, and only when nothing but the
NIK differs:
- the same normalised name (not a near one: siblings, and the spelling variants of one name, differ),
- the same stated birth date (not one filled from the NIK, not the 1 January placeholder namesakes
  share) and the same stated sex,
- one household: a phone or address line in common, or one home.
A father and a son of one name differ by their birth dates; namesakes of one birth date live apart.
Newborns are left out: twins' records carry the mother's name ("By. Ny. Sari") and the newborn rules
allow no merge a person could confirm here.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.domain.households import shares_phone_address_or_home
from shared.domain.identity_evidence import is_placeholder_date


def one_person_two_niks(a: Mapping, b: Mapping, evidence: Mapping) -> bool:
    """``evidence``: the pair's (``pair_rules._evidence``: fields stated by the records themselves)."""
    fields = evidence["fields"]
    return (bool(a.get("name")) and a.get("name") == b.get("name") and not a.get("is_baby") and not b.get("is_baby")
            and fields["birth_date"] == "agree" and fields["gender"] == "agree"
            and not is_placeholder_date(a.get("birth_date"))
            and shares_phone_address_or_home(a, b))
