"""The matching use case: one patient change (or one force-merge command) -> index update, review
items and at most one merge request per group, published exactly once per request id.

Order of work for a change (each step idempotent, so a redelivered event converges):
0. An event naming a version no newer than the index changes nothing (whatever it carries).
1. Read the resource from FHIR unless the event is ``trusted`` and carries it (``PatientChange``:
   only the Healthcare API's own topic is): a relayed body is at most a hint, never indexed, and its
   version never stored. A delete is believed only when the read answers 404/410; a patient the read
   still finds is indexed as read.
2. Take the patient out of groups it no longer belongs to (NIK changed, birth date corrected).
3. One transaction per group (``GroupRepository.transact``): the pure ``apply_member`` stores the
   member unless the index is as new, runs the group's rules, opens or joins the merge request; the
   review items it proposes are written in the same transaction.
4. Publish every request still unpublished (``MergeRequests.publish``), then mark it published. A
   failed publish raises, Pub/Sub redelivers, step 4 republishes the same request id.
5. Write the patient's keys last.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from shared.clock import now_iso
from shared.config import Settings
from shared.domain.group import Group, pairs_of
from shared.domain.indexing import already_recorded, apply_member, confirm_members, join_nik_group
from shared.domain.pair_rules import nik_neighbours
from shared.domain.patient import (
    PatientFacts,
    birth_date_block,
    candidate_blocks,
    is_newer,
    member_record,
    nik_prefix_block,
    patient_facts,
    phone_block,
)
from shared.domain.patient_keys import PatientKeys
from shared.domain.review import ReviewItem, ReviewStatus
from shared.fhir.errors import Gone, NotFound
from shared.linkage.model import MatchModel, default_model
from shared.logging import get_logger
from shared.messages import ForceMerge, PatientChange
from shared.nik import NikError, nik_token, parse_nik
from shared.ports.fhir import FhirPort
from shared.ports.index import GroupRepository, PatientKeyRepository
from shared.services.merge_requests import MergeRequests

log = get_logger(__name__)


@dataclass
class ChangeOutcome:
    patient_id: str
    result: str  # indexed | stale | deleted | own-write | unmatched
    groups: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)  # request ids published by this call
    reviews: list[str] = field(default_factory=list)  # reasons of review items this call proposed


@dataclass
class ForceMergeOutcome:
    nik_token: str | None
    result: str  # done | invalid-nik | no-patients
    indexed: int = 0
    published: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # patient id -> rule that refused it


class MatchingService:
    def __init__(self, settings: Settings, groups: GroupRepository, keys: PatientKeyRepository, fhir: FhirPort,
                 requests: MergeRequests, model: MatchModel | Callable[[], MatchModel] | None = None):
        """``model``: a model, or what gives the current one (``services.models.CurrentModelCache``: a
        promoted version reaches a running process); None: the shipped default."""
        self._settings = settings
        fixed = model or default_model()
        self._current_model: Callable[[], MatchModel] = model if callable(model) else lambda: fixed
        self._groups = groups
        self._keys = keys
        self._fhir = fhir
        self._requests = requests
        # A batch's records by birth date + sex block, and its NIK holders by NIK prefix block, known
        # before it decides (``expect``).
        self._expected: dict[str, dict[str, dict]] = {}
        self._expected_nik_prefix: dict[str, dict[str, dict]] = {}

    def expect(self, facts: Iterable[PatientFacts]) -> None:
        """A batch's records, known before it decides them (the backfill): a demographic match then meets
        a rival identity (``shared.domain.rival_identity``) that comes later in the batch as surely as one
        that came before, so the batch's decisions do not depend on its order. Its NIK holders are known
        the same way as the NIK's neighbours (``_nik_neighbours``): a serial typo that lands on a person's
        NIK meets that person's own record even when it comes later in the batch."""
        cap = self._settings.block_member_cap
        for known in facts:
            blocks = ((self._expected, birth_date_block(known, self._settings)),
                      (self._expected_nik_prefix,
                       nik_prefix_block(known, self._settings) if known.kind == "nik" else None))
            for expected, block in blocks:
                if not block:
                    continue
                records = expected.setdefault(block, {})
                # A block takes its first ``block_member_cap`` records and no more (``apply_member``): those
                # are the batch's members of it; the cap also bounds the checks' work on placeholder dates.
                if len(records) < cap or known.patient_id in records:
                    records[known.patient_id] = member_record(known)

    def publish_pending(self, group_ids) -> list[str]:
        """Publishes every group's open request not published yet (after batch indexing)."""
        return self._requests.publish_open(group_ids)

    def _publish(self, group_id: str, request, outcome_ids: list[str]) -> None:
        if request_id := self._requests.publish(group_id, request):
            outcome_ids.append(request_id)

    @property
    def model(self) -> MatchModel:
        return self._current_model()

    def _nik_neighbours(self, facts: PatientFacts) -> tuple[dict, ...]:
        """The records under other NIKs of the block of the NIK's first 12 digits (``pair_rules``), read
        before the NIK group decides (the block's own transaction comes later in the event)."""
        block = nik_prefix_block(facts, self._settings) if facts.kind == "nik" else None
        stored = self._groups.get(f"demographic_index/{block}") if block else None
        # The batch's own records of the block too (``expect``); the record itself is under its own NIK,
        # which ``nik_neighbours`` leaves out.
        members = {**self._expected_nik_prefix.get(block, {}), **(stored.members if stored else {})}
        neighbours = nik_neighbours(members, facts.nik_token)
        # The household (the first phone's block): its members under other NIKs, for a record of the pair
        # that states no birth date of its own (``pair_rules._relative_namesake``).
        phone = phone_block(facts, self._settings) if facts.kind == "nik" else None
        household = self._groups.get(f"demographic_index/{phone}") if phone else None
        return neighbours + (nik_neighbours(household.members, facts.nik_token, household=True) if household else ())

    def groups_for(self, facts: PatientFacts) -> list[str]:
        groups = [f"nik_index/{facts.nik_token}"] if facts.nik_token else []
        return groups + [f"demographic_index/{token}" for token in candidate_blocks(facts, self._settings)]

    def groups_of(self, resource: dict, facts: PatientFacts | None = None) -> list[str]:
        """The groups a Patient resource belongs in (``index_patient`` places it in these): the batch
        backfill splits a store into parts that share none of them, and its scoring compares the records
        that share one (``facts``: already computed)."""
        return self.groups_for(facts or patient_facts(resource, self._settings))

    # --- a patient change ------------------------------------------------------------------
    def handle_change(self, change: PatientChange, *, publish: bool = True,
                      facts: PatientFacts | None = None) -> ChangeOutcome:
        """``publish=False`` (batch callers) leaves open requests unpublished; the caller publishes
        them once for all its patients with ``publish_pending`` so a group's request is complete.
        ``facts``: ``patient_facts`` of the trusted resource the change carries, computed already (the
        batch backfill computes each Patient's once); never used for a resource read here."""
        keys = self._keys.get(change.patient_id)
        if change.version is not None and keys and not is_newer(change.version, None, keys.as_member()):
            return self._replay(keys, publish)  # an older (or the same) version: nothing to change
        if change.trusted and change.resource is not None and change.action != "delete":
            return self.index_patient(change.resource, keys, publish=publish, facts=facts)
        try:
            resource = self._fhir.read("Patient", change.patient_id)
        except (NotFound, Gone):
            return self.remove_patient(change.patient_id, keys)
        read_version = (resource.get("meta") or {}).get("versionId")
        if change.action == "delete" or (change.version is not None and change.version != read_version):
            # A delete the store denies, or a body naming a version the store does not have: the event
            # was forged or is out of date; the store's state is what gets indexed.
            log.warning("patient_change_disagrees_with_store", patient_id=change.patient_id,
                        source=str(change.source), action=change.action, hinted_version=change.version,
                        read_version=read_version)
        return self.index_patient(resource, keys, publish=publish)

    def _replay(self, keys: PatientKeys, publish: bool = True) -> ChangeOutcome:
        """An event no newer than the index: nothing changes, but a request left unpublished by a
        crash after its transaction is published now."""
        outcome = ChangeOutcome(keys.patient_id, "stale", keys.all_groups)
        if publish:
            outcome.published.extend(self._requests.publish_open(outcome.groups))
        return outcome

    def remove_patient(self, patient_id: str, keys: PatientKeys | None) -> ChangeOutcome:
        groups = keys.all_groups if keys else []
        for group_id in groups:
            self._remove_from_group(group_id, patient_id)
        if keys is not None:
            self._keys.delete(patient_id)
        log.info("patient_removed_from_index", patient_id=patient_id, groups=len(groups))
        return ChangeOutcome(patient_id, "deleted", groups)

    def _remove_from_group(self, group_id: str, patient_id: str) -> None:
        self._groups.transact(group_id, lambda tx: tx.group.remove_member(patient_id, self._settings.source_priority))

    def index_patient(self, resource: dict, keys: PatientKeys | None = None, *, publish: bool = True,
                      facts: PatientFacts | None = None) -> ChangeOutcome:
        """``facts``: ``patient_facts(resource)``, when the caller computed them already."""
        facts = facts or patient_facts(resource, self._settings)
        if keys and not is_newer(facts.version, facts.last_updated, keys.as_member()):
            # Out of order (a late v1 after v2): whatever it holds, it must not move the patient back
            # between groups nor lower the stored version.
            return self._replay(keys, publish)
        patient_id = facts.patient_id
        record = member_record(facts)
        groups = self.groups_for(facts)
        outcome = ChangeOutcome(patient_id, "indexed", list(groups))
        linked: list[str] = list(keys.linked if keys else [])
        if keys and set(keys.groups) != set(groups):
            # The record changed where it belongs (another NIK, a corrected birth date): it leaves its
            # old groups, and the NIK groups it joined through its old block; a match found again below
            # joins them again.
            stale = (set(keys.groups) - set(groups)) | (set(linked) - set(groups))
            for stale_group in sorted(stale):
                self._remove_from_group(stale_group, patient_id)
            linked = [g for g in linked if g not in stale]

        own_write = bool(facts.replaced_by) or facts.golden
        if own_write:
            outcome.result = "own-write"
        if not groups:
            outcome.result = "unmatched"
            log.info("patient_unmatched", patient_id=patient_id, reason="no-nik-no-birthdate-gender",
                     nik_issues=list(facts.nik_issues))
        model = self.model                       # one model decides the whole event
        decided: frozenset[str] = frozenset()   # candidates an earlier group of this event decided
        merged_into: set[str] = set()            # whom an earlier block merged the record into
        neighbours = () if own_write else self._nik_neighbours(facts)
        day_block = birth_date_block(facts, self._settings)
        expected = {pid: r for pid, r in self._expected.get(day_block, {}).items()
                    if pid != patient_id} if day_block else None
        for group_id in groups:
            if own_write and already_recorded(self._groups.get(group_id), patient_id, record):
                # The finaliser's own write, already recorded by complete_request: no transaction, so
                # match-patient does not contend with the finaliser on the group's document.
                continue

            def change(tx, group_id=group_id, skip=decided, merged=frozenset(merged_into)):
                applied = apply_member(tx.group, patient_id, record, own_write, self._settings, model, skip,
                                       merged, neighbours, expected)
                now = now_iso()
                tx.propose_reviews([ReviewItem.proposed(group_id, p.patient_ids, p.reason, p.evidence, now)
                                    for p in applied.reviews])
                return applied

            applied = self._groups.transact(group_id, change)
            decided |= applied.decided
            merged_into |= _merge_targets(group_id, applied, patient_id)
            if applied.full:
                log.info("demographic_block_full", patient_id=patient_id, cap=self._settings.block_member_cap)
            elif not applied.changed and outcome.result == "indexed":
                outcome.result = "stale"
            outcome.reviews.extend(p.reason for p in applied.reviews)
            if publish:
                self._publish(group_id, applied.request, outcome.published)
            if applied.cross:
                join = applied.cross
                def join_group(tx, join=join):
                    joined = join_nik_group(tx.group, join)
                    now = now_iso()
                    tx.propose_reviews([ReviewItem.proposed(join.group, p.patient_ids, p.reason, p.evidence, now)
                                        for p in joined.reviews])
                    return joined

                joined = self._groups.transact(join.group, join_group)
                outcome.reviews.extend(p.reason for p in joined.reviews)
                request = joined.request
                if join.group not in linked:
                    linked.append(join.group)
                outcome.groups.append(join.group)
                if publish:
                    self._publish(join.group, request, outcome.published)
        self._keys.put(PatientKeys(patient_id, groups, linked, facts.version, facts.last_updated,
                                   "unmatched" if not groups else "indexed"))
        log.info("patient_matched", patient_id=patient_id, result=outcome.result, groups=len(groups),
                 reviews=outcome.reviews, published=outcome.published)
        return outcome

    # --- force merge -----------------------------------------------------------------------
    def force_merge(self, command: ForceMerge) -> ForceMergeOutcome:
        try:
            nik = parse_nik(command.nik)
        except NikError as error:
            log.warning("force_merge_rejected", reason=f"invalid-nik:{error.reason}", requested_by=command.requested_by)
            return ForceMergeOutcome(None, "invalid-nik")
        token = nik_token(nik.value, self._settings.nik_hash_key)
        group_id = f"nik_index/{token}"
        outcome = ForceMergeOutcome(token, "done")
        # Bulk imports publish no notifications: index every patient with this NIK from FHIR now.
        found: dict[str, dict] = {}
        systems = (self._settings.nik_system, self._settings.nik_ibu_system)
        # One search for both systems (a comma is OR within a parameter).
        for resource in self._fhir.search("Patient", {"identifier": ",".join(f"{s}|{nik.value}" for s in systems)}):
            # A server that ignored the search parameter would return everyone: check.
            if resource.get("resourceType") == "Patient" and any(
                    i.get("system") in systems and _same_nik(i.get("value"), nik.value)
                    for i in resource.get("identifier") or []):
                found[resource["id"]] = resource
        # Index them all before publishing: a request published after the second patient would be
        # claimed by the fan-out while the others are still being indexed (they would wait for a
        # follow-up merge).
        touched = {group_id}
        for patient_id, resource in sorted(found.items()):
            indexed = self.index_patient(resource, self._keys.get(patient_id), publish=False)
            touched.update(indexed.groups)
            outcome.indexed += 1
        if not found:
            outcome.result = "no-patients"
        confirmed = [pid for pid in command.patient_ids if pid in found]
        if len(confirmed) >= 2 or (confirmed and found):
            self._confirm(group_id, confirmed, command.reason, command.requested_by, outcome)
        outcome.published.extend(self._requests.publish_open(touched))
        log.info("force_merge_done", nik_token=token, indexed=outcome.indexed, confirmed=len(confirmed),
                 refused=outcome.refused, published=outcome.published, requested_by=command.requested_by)
        return outcome

    def confirm_group(self, group_id: str, patient_ids: list[str], *, reason: str,
                      requested_by: str, master: str | None = None,
                      review: tuple[str, dict] | None = None) -> ForceMergeOutcome:
        """A human confirmed these patients of the group are one person (review approval): the same
        path as a force-merge naming them, without the FHIR lookup (they are indexed already).
        ``review``: the item approved and the decision's fields, written in the confirmation's own
        transaction unless the rules refused every patient (the item then stays pending)."""
        outcome = ForceMergeOutcome(Group(group_id).token, "done")
        self._confirm(group_id, list(patient_ids), reason, requested_by, outcome, master=master, review=review)
        log.info("group_confirmed", group_token=outcome.nik_token, confirmed=len(patient_ids),
                 refused=outcome.refused, published=outcome.published, requested_by=requested_by)
        return outcome

    def _confirm(self, group_id: str, patient_ids: list[str], reason: str, requested_by: str,
                 outcome: ForceMergeOutcome, master: str | None = None,
                 review: tuple[str, dict] | None = None) -> None:
        def change(tx):
            confirmed_before = set(tx.group.confirmed)
            confirmation = confirm_members(tx.group, patient_ids, reason=reason, requested_by=requested_by,
                                           settings=self._settings, master=master, model=self.model)
            if review and not set(confirmation.refused) >= set(patient_ids):
                item_id, decision = review
                tx.decide_review(item_id, ReviewStatus.APPROVED, decision | {
                    "refused": dict(confirmation.refused),
                    "pairs_added": sorted(pairs_of(patient_ids) - confirmed_before)})
            return confirmation

        confirmation = self._groups.transact(group_id, change)
        outcome.refused.update(confirmation.refused)
        self._publish(group_id, confirmation.request, outcome.published)


def _merge_targets(group_id: str, applied, patient_id: str) -> set[str]:
    """The person a block's decision merged the record into: its NIK token, else ``patient:<master>``."""
    if applied.cross:
        return {Group(applied.cross.group).token}
    request = applied.request
    if (not Group(group_id).is_nik and applied.changed and request and request.in_progress
            and patient_id in request.duplicates):
        return {f"patient:{request.master}"}
    return set()


def _same_nik(value: object, nik: str) -> bool:
    try:
        return parse_nik(str(value)).value == nik
    except NikError:
        return False
