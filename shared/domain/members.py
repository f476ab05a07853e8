"""The members of a matching group and their pairs: a member's status and index record, which members
are live, and the key of a pair of patients (``do_not_match``, ``confirmed``, review items). Pure; the
group and its transitions are ``shared.domain.group``'s."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TypedDict


class MemberStatus(StrEnum):
    ACTIVE = "active"
    MASTER = "master"          # the group's golden record (or the target of a request)
    DUPLICATE = "duplicate"    # in an open or running request, to be merged into the master
    PENDING = "pending"        # matched while a request ran: waits for the follow-up request
    REVIEW = "review"          # a human decides
    MERGED = "merged"          # replaced by the master
    DELETED = "deleted"        # deleted while its merge ran


# Members that can still take part in matching (merged and deleted ones cannot).
LIVE_STATUSES = frozenset({MemberStatus.ACTIVE, MemberStatus.MASTER, MemberStatus.DUPLICATE, MemberStatus.PENDING,
                           MemberStatus.REVIEW})
IN_REQUEST_STATUSES = frozenset({MemberStatus.DUPLICATE, MemberStatus.PENDING})


class Member(TypedDict, total=False):
    """One patient's index record (``shared.domain.patient.member_record``) plus its status. Only
    normalised matching fields: never a raw NIK."""
    version: str | None
    last_updated: str | None
    kind: str                  # "nik" | "nik-ibu" | "none"
    nik_token: str | None
    nik_issues: list[str]
    name: str
    is_baby: bool
    birth_date: str | None
    gender: str | None
    multiple_birth: int | None
    corroborators: list[str]
    active: bool
    golden: bool
    replaced_by: str | None
    source: str | None
    score: float
    status: str                # a MemberStatus value
    reason: str | None         # the rule behind the status


def is_live(member: Mapping | None) -> bool:
    return bool(member) and member.get("status", MemberStatus.ACTIVE) in LIVE_STATUSES \
        and member.get("active", True) is not False


def pair_key(a: str, b: str) -> str:
    return "|".join(sorted((a, b)))


def pairs_of(patient_ids: Iterable[str]) -> set[str]:
    ids = sorted(set(patient_ids))
    return {pair_key(a, b) for a in ids for b in ids if a < b}
