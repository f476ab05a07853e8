"""Deciding a whole store in memory with the production matching code: the batch backfill's decide step.

Every Patient goes through ``MatchingService.handle_change`` as a trusted change carrying the resource
read (the same call the per-patient backfill and a Healthcare API event make), with ``publish=False``,
over an in-memory index (``shared.adapters.memory_index``) loaded with what the store already holds.
So the batch's groups, patient keys, review items and merge requests are exactly what the incremental
path would produce for the same records in the same order, whatever rules ``shared.domain`` holds.

A scoring engine (issue 14: Splink on DuckDB, or on Spark beyond one machine, ``batch_score``) does not
replace ``decide``: the model it is given asks the engine's pair scores first, and decides the same.

Components: a patient's groups (its NIK group and birth date + sex block, and the NIK group a
demographic match links it to) connect it to every patient it can ever be compared with; patients of
different components never meet. The batch backfill calls ``decide`` once per part of the store (whole
components, ``batch_parts``), in parallel processes, each part's patients in the source's order: every
group sees its patients in that order, as the incremental path would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.adapters.memory_index import MemoryIndex
from shared.config import Settings
from shared.domain.group import Group
from shared.domain.merge_request import MergeRequest, RequestStatus
from shared.domain.patient import PatientFacts
from shared.linkage.model import MatchModel
from shared.messages import ChangeSource, Message, PatientChange
from shared.ports.fhir import FhirPort
from shared.ports.messaging import MessagePublisher
from shared.services.matching import MatchingService
from shared.services.merge_requests import MergeRequests


class _NoIo(MessagePublisher):
    """Deciding reads and publishes nothing: the resources are in hand, publishing comes later."""

    def send(self, message: Message) -> str:
        raise RuntimeError("the decide step publishes nothing")

    def publish_bytes(self, topic: str, data: bytes, **attributes: str) -> str:
        raise RuntimeError("the decide step publishes nothing")


@dataclass
class Decisions:
    patients: int = 0
    results: Counter = field(default_factory=Counter)        # handle_change result -> patients
    reviews: Counter = field(default_factory=Counter)        # review reason -> items proposed


def matching_in_memory(settings: Settings, index: MemoryIndex, fhir: FhirPort | None = None, *,
                       model: MatchModel | None = None) -> MatchingService:
    """The production ``MatchingService`` over the in-memory index, deciding with ``model`` (the district's
    current one; None: the shipped default). ``fhir`` is never called for the trusted changes ``decide``
    makes; a caller without a FHIR server passes none."""
    requests = MergeRequests(settings, index.groups, _NoIo(), index.keys)
    return MatchingService(settings, index.groups, index.keys, fhir, requests, model)  # type: ignore[arg-type]


def decide(pages: Iterable[list[dict]], matching: MatchingService,
           on_page: Callable[[int], None] | None = None,
           facts: Iterable[list[PatientFacts]] | None = None) -> Decisions:
    """Every Patient of every page through the matching code, in order. ``facts``: each page's Patients'
    ``patient_facts``, computed already (``batch_facts``); None: computed here."""
    decisions = Decisions()
    if facts is not None:
        # The batch's records known before any is decided: a rival identity later in the batch counts too.
        facts = [list(page) for page in facts]
        matching.expect(known for page in facts for known in page if known is not None)
    known_pages = iter(facts) if facts is not None else None
    for page in pages:
        known_page = next(known_pages) if known_pages is not None else [None] * len(page)
        for resource, known in zip(page, known_page, strict=True):
            if known is not None and known.patient_id != resource["id"]:
                raise ValueError("the facts given are not this Patient's")
            change = PatientChange(resource["id"], "upsert", (resource.get("meta") or {}).get("versionId"),
                                   resource, source=ChangeSource.BACKFILL, trusted=True)
            outcome = matching.handle_change(change, publish=False, facts=known)
            decisions.results[outcome.result] += 1
            decisions.reviews.update(outcome.reviews)
        decisions.patients += len(page)
        if on_page:
            on_page(len(page))
    return decisions


def open_requests(groups: Iterable[Group]) -> list[tuple[str, MergeRequest]]:
    """The merge requests the decisions opened and nobody published yet, by group id."""
    return [(group.id, group.request) for group in groups
            if group.request and group.request.status == RequestStatus.OPEN and not group.request.published]


def rule_counts(groups: Iterable[Group]) -> Counter:
    """How many members each rule placed (``status:reason``) and how many requests each opened."""
    counts: Counter = Counter()
    for group in groups:
        for member in group.members.values():
            if member.get("reason"):
                counts[f"{member.get('status')}:{member['reason']}"] += 1
        if group.request and not group.request.published:
            counts[f"request:{group.request.reason}"] += 1
    return counts
