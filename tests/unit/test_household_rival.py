"""A record without a NIK and a rival at home (``shared.domain.household_rival``)."""

from __future__ import annotations

from shared.config import Settings
from shared.domain.demographic_plan import plan_demographic_group
from shared.domain.group import Group
from shared.domain.household_rival import rivals_at_home
from shared.domain.pair_rules import compare_demographic_pair
from shared.domain.patient import member_record, patient_facts
from shared.domain.rival_identity import rivals

SETTINGS = Settings()
PHONE = "081234567890"


def record(pid: str, name: str, nik: str | None) -> dict:
    resource = {"resourceType": "Patient", "id": pid, "name": [{"text": name}], "birthDate": "2012-04-03",
                "gender": "female", "telecom": [{"system": "phone", "value": PHONE}]}
    if nik:
        resource["identifier"] = [{"system": SETTINGS.nik_system, "value": nik}]
    return {**member_record(patient_facts(resource, SETTINGS)), "status": "active"}


def block(**members) -> Group:
    return Group.from_doc("demographic_index/token", {"members": members, "master": None, "request": None})


def test_a_record_without_nik_between_twins_of_one_home_goes_to_a_human():
    # Twins "Dewi Lestari" (NIK ...0001) and "Dewi Listari" (NIK ...0002), one phone, one birth date. A
    # record "Dewi Lestari" without a NIK is strong for the first, a near name for the second: either's.
    first, second = record("a", "Dewi Lestari", "3310034304120001"), record("b", "Dewi Listari", "3310034304120002")
    newcomer = record("x", "Dewi Lestari", None)
    plan = plan_demographic_group(block(a=first, b=second, x=newcomer), "x", SETTINGS)
    assert plan.master is None and plan.duplicates == []
    # One item names the three (the newcomer's pair item with the second twin stays, as beside any
    # ambiguous match).
    assert ({"a", "b", "x"}, "ambiguous-match") in [(set(r.patient_ids), r.reason) for r in plan.reviews]
    assert plan.statuses["x"][0] == "review"


def test_without_a_rival_the_record_merges():
    first, newcomer = record("a", "Dewi Lestari", "3310034304120001"), record("x", "Dewi Lestari", None)
    plan = plan_demographic_group(block(a=first, x=newcomer), "x", SETTINGS)
    assert (plan.master, plan.duplicates) == ("a", ["x"])


def test_a_rival_needs_another_nik_and_the_newcomer_none():
    first, second = record("a", "Dewi Lestari", "3310034304120001"), record("b", "Dewi Listari", "3310034304120002")
    newcomer = record("x", "Dewi Lestari", None)
    decisions = {pid: compare_demographic_pair(newcomer, other, SETTINGS) for pid, other in (("a", first),
                                                                                              ("b", second))}
    live = {"a": first, "b": second}
    strong = [("a", decisions["a"])]
    assert rivals_at_home(newcomer, live, strong, decisions) == ["b"]
    assert rivals_at_home(record("y", "Dewi Lestari", "3310034304120001"), live, strong, decisions) == []
    assert rivals_at_home(newcomer, live, [], decisions) == []


def test_a_rival_at_home_beside_a_strong_candidate_without_nik_is_caught_here_only():
    # The strong candidate "y" has no NIK either; the twin "b" under a NIK lives with the newcomer. With
    # neither record of the pair holding a NIK, ``rival_identity.rivals`` needs two rival NIKs (one may be
    # the pair's own person) and finds none: only the rival at home keeps this merge from happening.
    candidate, second = record("y", "Dewi Lestari", None), record("b", "Dewi Listari", "3310034304120002")
    newcomer = record("x", "Dewi Lestari", None)
    assert rivals("x", newcomer, "y", candidate, [("b", second)], SETTINGS) == []
    plan = plan_demographic_group(block(y=candidate, b=second, x=newcomer), "x", SETTINGS)
    assert plan.master is None and plan.duplicates == []
    assert ({"b", "x", "y"}, "ambiguous-match") in [(set(r.patient_ids), r.reason) for r in plan.reviews]


def test_where_both_guards_see_the_rival_the_one_at_home_decides():
    # The twins of the first test: ``rival_identity.rivals`` sees "b" as well, but the rival at home joined
    # the strong candidates first, so the item is ``ambiguous-match`` and no ``rival-identity`` is opened.
    first, second = record("a", "Dewi Lestari", "3310034304120001"), record("b", "Dewi Listari", "3310034304120002")
    newcomer = record("x", "Dewi Lestari", None)
    assert rivals("x", newcomer, "a", first, [("b", second)], SETTINGS) == ["b"]
    plan = plan_demographic_group(block(a=first, b=second, x=newcomer), "x", SETTINGS)
    assert "rival-identity" not in {r.reason for r in plan.reviews}
