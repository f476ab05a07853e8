"""The matching use case: one patient change (or one force-merge command) -> index update, review
items and at most one merge request per group, published exactly once per request id.

Order of work for a change (each step idempotent, so a redelivered event converges):
1. Read the resource from FHIR when the event does not carry it (404/410 -> a delete).
2. Take the patient out of groups it no longer belongs to (NIK changed, birth date corrected).
3. One Firestore transaction per group: skip when the indexed version is as new; otherwise store
   the member, run the pure plan (``shared.domain.matching``), record review items and open or join
   the group's merge request (``add_to_request``, the same code as ``PatientIndex.open_request``).
4. Publish every request still marked ``published=False`` to merge-requests, then ``mark_published``.
   A failed publish raises, Pub/Sub redelivers, step 4 republishes the same request id.
5. Write ``patient_keys/{id}`` last.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.adapters.patient_index import PatientIndex, add_to_request, pair_key, public_request, review_item_id
from shared.adapters.pubsub import Publisher
from shared.config import Settings
from shared.domain.master import select_master
from shared.domain.matching import MERGE, GroupPlan, compare_nik_pair, is_live, plan_demographic_group, plan_nik_group
from shared.domain.patient import blocking_token, is_newer, member_record, patient_facts
from shared.fhir.client import FhirClient, Gone, NotFound
from shared.logging import get_logger
from shared.messages import ForceMerge, PatientChange
from shared.nik import NikError, nik_token, parse_nik

log = get_logger(__name__)

REQUESTED_BY = "matching"


@dataclass
class ChangeOutcome:
    patient_id: str
    result: str  # indexed | stale | deleted | own-write | unmatched
    groups: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)  # request ids published by this call
    requests: list[dict] = field(default_factory=list)  # requests the patient is now part of
    reviews: list[str] = field(default_factory=list)  # reasons of review items this call proposed


@dataclass
class ForceMergeOutcome:
    nik_token: str | None
    result: str  # done | invalid-nik | no-patients
    indexed: int = 0
    published: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # patient id -> rule that refused it


def merge_request_message(request: dict) -> dict:
    """The merge-requests message (docs/DESIGN.md): the authoritative request without its id alias."""
    return {k: v for k, v in request.items() if k != "id"}


def _now() -> str:
    return datetime.now(UTC).isoformat()


class MatchingService:
    def __init__(self, settings: Settings, index: PatientIndex, fhir: FhirClient, publisher: Publisher, db):
        self._settings = settings
        self._index = index
        self._fhir = fhir
        self._publisher = publisher
        self._db = db

    # --- plumbing --------------------------------------------------------------------------
    def _keys_ref(self, patient_id: str):
        return self._db.collection(self._settings.collection("patient_keys")).document(patient_id)

    def _review_ref(self, item_id: str):
        return self._db.collection(self._settings.collection("review_items")).document(item_id)

    def _publish_pending(self, group: str, request: dict | None, outcome_ids: list[str]) -> None:
        if not request or request.get("published") or request.get("status") != "open":
            return
        message = merge_request_message(public_request(group, request))
        self._publisher.publish(self._settings.topic_merge_requests, message)
        self._index.mark_published(group, request["id"])
        outcome_ids.append(request["id"])
        log.info("merge_request_published", request_id=request["id"], nik_token=message["nik_token"],
                 master=message["master"], duplicates=len(message["duplicates"]))

    def publish_pending(self, groups) -> list[str]:
        """Publishes every group's open request not published yet (after batch indexing)."""
        published: list[str] = []
        for group in sorted(set(groups)):
            doc = self._index.read_group(group) or {}
            self._publish_pending(group, doc.get("request"), published)
        return published

    def _groups_for(self, record: dict) -> list[str]:
        groups = []
        if record["nik_token"]:
            groups.append(f"nik_index/{record['nik_token']}")
        if record["birth_date"] and record["gender"]:
            groups.append(f"demographic_index/{blocking_token(record['birth_date'], record['gender'], self._settings)}")
        return groups

    def _write_reviews(self, transaction, group: str, plan: GroupPlan) -> list[str]:
        """Creates the plan's review items that do not exist yet (a human decision is never reset).
        All reads happen before any write, as Firestore transactions require."""
        proposals = [(review_item_id(group, p.patient_ids, p.reason), p) for p in plan.reviews]
        existing = {item_id: self._review_ref(item_id).get(transaction=transaction).exists
                    for item_id, _ in proposals}
        for item_id, proposal in proposals:
            if not existing[item_id]:
                transaction.set(self._review_ref(item_id), {
                    "reason": proposal.reason, "group": group, "nik_token": group.split("/", 1)[1],
                    "patient_ids": list(proposal.patient_ids), "evidence": proposal.evidence,
                    "status": "pending", "created_at": _now(),
                })
        return [p.reason for _, p in proposals]

    # --- a patient change ------------------------------------------------------------------
    def handle_change(self, change: PatientChange, *, publish: bool = True) -> ChangeOutcome:
        """``publish=False`` (batch callers) leaves open requests unpublished; the caller publishes
        them once for all its patients with ``publish_pending`` so a group's request is complete."""
        keys_snapshot = self._keys_ref(change.patient_id).get()
        keys = keys_snapshot.to_dict() if keys_snapshot.exists else None
        if change.action == "delete":
            return self.remove_patient(change.patient_id, keys)
        resource = change.resource
        if resource is None:
            if change.version is not None and keys and not is_newer(change.version, None, keys):
                return self._replay(change.patient_id, keys, publish)
            try:
                resource = self._fhir.read("Patient", change.patient_id)
            except (NotFound, Gone):
                return self.remove_patient(change.patient_id, keys)
        return self.index_patient(resource, keys, publish=publish)

    def _replay(self, patient_id: str, keys: dict, publish: bool = True) -> ChangeOutcome:
        """An event no newer than the index: nothing changes, but a request left unpublished by a
        crash after its transaction is published now."""
        outcome = ChangeOutcome(patient_id, "stale", [*(keys.get("groups") or []), *(keys.get("linked") or [])])
        if not publish:
            return outcome
        for group in outcome.groups:
            doc = self._index.read_group(group) or {}
            self._publish_pending(group, doc.get("request"), outcome.published)
        return outcome

    def remove_patient(self, patient_id: str, keys: dict | None) -> ChangeOutcome:
        groups = [*((keys or {}).get("groups") or []), *((keys or {}).get("linked") or [])]
        for group in groups:
            self._remove_from_group(group, patient_id)
        if keys is not None:
            self._keys_ref(patient_id).delete()
        log.info("patient_removed_from_index", patient_id=patient_id, groups=len(groups))
        return ChangeOutcome(patient_id, "deleted", groups)

    def _remove_from_group(self, group: str, patient_id: str) -> None:
        def change(doc, _transaction):
            if patient_id not in doc["members"]:
                return (False,)
            request = doc.get("request")
            if request and request.get("status") == "running" and (
                    patient_id == request["master"] or patient_id in request["duplicates"]):
                # The merge is under way; the pipeline owns these members until it completes.
                doc["members"][patient_id]["status"] = "deleted"
                return (True,)
            del doc["members"][patient_id]
            if request and request.get("status") == "open":
                if patient_id in request["duplicates"]:
                    request["duplicates"].remove(patient_id)
                if patient_id == request["master"] and request["duplicates"]:
                    request["master"] = select_master(doc["members"], request["duplicates"],
                                                      self._settings.source_priority)
                    request["duplicates"].remove(request["master"])
                if not request["duplicates"]:
                    doc["request"] = None
            if doc.get("master") == patient_id:
                doc["master"] = (doc.get("request") or {}).get("master")
            return (True,)

        self._index.transact_group(group, change)

    def index_patient(self, resource: dict, keys: dict | None = None, *, confirmed_ids: tuple[str, ...] = (),
                      requested_by: str = REQUESTED_BY, publish: bool = True) -> ChangeOutcome:
        facts = patient_facts(resource, self._settings)
        patient_id = facts.patient_id
        record = member_record(facts)
        groups = self._groups_for(record)
        outcome = ChangeOutcome(patient_id, "indexed", list(groups))
        old_groups = set((keys or {}).get("groups") or [])
        for stale_group in sorted(old_groups - set(groups)):
            self._remove_from_group(stale_group, patient_id)

        own_write = bool(facts.replaced_by) or facts.golden
        if own_write:
            outcome.result = "own-write"
        if not groups:
            outcome.result = "unmatched"
            log.info("patient_unmatched", patient_id=patient_id, reason="no-nik-no-birthdate-gender",
                     nik_issues=list(facts.nik_issues))
        linked: list[str] = list((keys or {}).get("linked") or [])
        for group in groups:
            if own_write and _already_recorded(self._index.read_group(group), patient_id, record):
                # The finaliser's own write, already recorded by complete_request: no transaction, so
                # match-patient does not contend with the finaliser on the group's document.
                continue
            result = self._index.transact_group(
                group, lambda doc, txn, g=group: self._apply(doc, txn, g, patient_id, record, own_write))
            changed, request, reviews, cross = result
            if not changed and outcome.result == "indexed":
                outcome.result = "stale"
            outcome.reviews.extend(reviews)
            if request:
                outcome.requests.append(public_request(group, request))
            if publish:
                self._publish_pending(group, request, outcome.published)
            if cross:
                target_group, request = self._join_nik_group(*cross)
                if target_group not in linked:
                    linked.append(target_group)
                outcome.groups.append(target_group)
                outcome.requests.append(public_request(target_group, request))
                if publish:
                    self._publish_pending(target_group, request, outcome.published)
        self._keys_ref(patient_id).set({
            "groups": groups, "linked": linked, "version": facts.version, "last_updated": facts.last_updated,
            "status": "unmatched" if not groups else "indexed", "updated_at": _now(),
        })
        log.info("patient_matched", patient_id=patient_id, result=outcome.result, groups=len(groups),
                 reviews=outcome.reviews, published=outcome.published)
        return outcome

    def _apply(self, doc: dict, transaction, group: str, patient_id: str, record: dict, own_write: bool):
        """Inside the group's transaction. Returns (changed, request-to-publish, review reasons,
        cross-group join or None); ``changed=False`` leaves the document unwritten."""
        members = doc["members"]
        stored = members.get(patient_id)
        if stored and not is_newer(record["version"], record["last_updated"], stored):
            return (False, doc.get("request"), [], None)
        status = (stored or {}).get("status", "active")
        if record["replaced_by"]:
            status = "merged"
        elif record["golden"]:
            status = "master"
            request = doc.get("request")
            if not (request and request.get("status") in ("open", "running")):
                doc["master"] = patient_id
        elif status in ("merged", "deleted"):
            status = "active"  # re-activated (an unmerge restored it) or re-created
        members[patient_id] = {**(stored or {}), **record, "status": status}
        if own_write:
            return (True, doc.get("request"), [], None)

        if group.startswith("nik_index/"):
            plan = plan_nik_group(doc, patient_id, self._settings)
        else:
            plan = plan_demographic_group(doc, patient_id, self._settings)
        reviews = self._write_reviews(transaction, group, plan)
        for pid, (new_status, reason) in plan.statuses.items():
            if pid in members and members[pid].get("status") not in ("master", "duplicate", "pending"):
                members[pid]["status"] = new_status
                members[pid]["reason"] = reason
        cross = None
        request = doc.get("request")
        if plan.master:
            target = members[plan.master]
            newcomer = members[plan.duplicates[0]]
            nik_holder = next((m for m in (target, newcomer) if m.get("nik_token")), None)
            if group.startswith("demographic_index/") and nik_holder is not None:
                # A NIK-less record matched to a NIK-bearing one joins that NIK's group, so one
                # person has one request and one master.
                anchor_id = plan.master if target.get("nik_token") else plan.duplicates[0]
                other_id = plan.duplicates[0] if anchor_id == plan.master else plan.master
                members[other_id]["status"] = "duplicate"
                cross = (f"nik_index/{nik_holder['nik_token']}", anchor_id, other_id, dict(members[other_id]),
                         plan.evidence)
            else:
                request = add_to_request(doc, group, plan.master, plan.duplicates, plan.reason or "match",
                                         REQUESTED_BY, plan.evidence)
        return (True, request, reviews, cross)

    def _join_nik_group(self, group: str, anchor_id: str, newcomer_id: str, newcomer: dict, evidence: dict):
        def change(doc, _transaction):
            members = doc["members"]
            if (members.get(newcomer_id) or {}).get("status") == "merged":
                return (False, doc.get("request"))
            members[newcomer_id] = {**newcomer, "status": members.get(newcomer_id, {}).get("status", "active")}
            master = doc.get("master")
            if not is_live(members.get(master)):
                master = anchor_id
            request = add_to_request(doc, group, master, [newcomer_id], "demographic-match", REQUESTED_BY, evidence)
            return (True, request)

        return group, self._index.transact_group(group, change)[1]

    # --- force merge -----------------------------------------------------------------------
    def force_merge(self, command: ForceMerge) -> ForceMergeOutcome:
        try:
            nik = parse_nik(command.nik)
        except NikError as error:
            log.warning("force_merge_rejected", reason=f"invalid-nik:{error.reason}", requested_by=command.requested_by)
            return ForceMergeOutcome(None, "invalid-nik")
        token = nik_token(nik.value, self._settings.nik_hash_key)
        group = f"nik_index/{token}"
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
        touched = {group}
        for patient_id, resource in sorted(found.items()):
            keys_snapshot = self._keys_ref(patient_id).get()
            indexed = self.index_patient(resource, keys_snapshot.to_dict() if keys_snapshot.exists else None,
                                         publish=False)
            touched.update(indexed.groups)
            outcome.indexed += 1
        if not found:
            outcome.result = "no-patients"
        confirmed = [pid for pid in command.patient_ids if pid in found]
        if len(confirmed) >= 2 or (confirmed and found):
            request = self._index.transact_group(
                group, lambda doc, _txn: self._confirm(doc, group, confirmed, command, outcome))
            self._publish_pending(group, request, outcome.published)
        outcome.published.extend(self.publish_pending(touched))
        log.info("force_merge_done", nik_token=token, indexed=outcome.indexed, confirmed=len(confirmed),
                 refused=outcome.refused, published=outcome.published, requested_by=command.requested_by)
        return outcome

    def confirm_group(self, group: str, patient_ids: list[str], *, reason: str,
                      requested_by: str) -> ForceMergeOutcome:
        """A human confirmed these patients of ``group`` are one person (review approval): the same
        path as a force-merge naming them, without the FHIR lookup (they are indexed already)."""
        outcome = ForceMergeOutcome(group.split("/", 1)[1], "done")
        command = ForceMerge(nik="", reason=reason, requested_by=requested_by, patient_ids=tuple(patient_ids))
        request = self._index.transact_group(
            group, lambda doc, _txn: self._confirm(doc, group, list(patient_ids), command, outcome))
        self._publish_pending(group, request, outcome.published)
        log.info("group_confirmed", group_token=outcome.nik_token, confirmed=len(patient_ids),
                 refused=outcome.refused, published=outcome.published, requested_by=requested_by)
        return outcome

    def _confirm(self, doc: dict, group: str, confirmed: list[str], command: ForceMerge,
                 outcome: ForceMergeOutcome) -> dict | None:
        """Human-confirmed ids: recorded as confirmed pairs and merged into one master, except
        where the newborn/twin rules refuse (those never merge, whoever asks)."""
        members = doc["members"]
        request = doc.get("request")
        if group.startswith("demographic_index/"):
            # A birth-date/gender block holds different people: its open request (someone else's
            # merge) must not absorb this pair. The reviewer approves again once that merge is done.
            if request and request.get("status") in ("open", "running") and not (
                    set(confirmed) & {request["master"], *request["duplicates"]}):
                outcome.refused.update({pid: "block-request-busy" for pid in confirmed})
                return request
        pairs = set(doc.get("confirmed") or [])
        pairs.update(pair_key(a, b) for a in confirmed for b in confirmed if a < b)
        doc["confirmed"] = sorted(pairs)
        live = [pid for pid in confirmed if is_live(members.get(pid))]
        # In a NIK group the group's master is the adult holder's master; newborns on the mother's NIK
        # and a demographic block (different people) take a master among the confirmed records.
        babies = any(members.get(pid, {}).get("is_baby") for pid in live)
        master = doc.get("master") if group.startswith("nik_index/") and not babies \
            and is_live(members.get(doc.get("master"))) else None
        if master is None:
            adults = [pid for pid in live if not members[pid].get("is_baby")] or live
            if not adults:
                return doc.get("request")
            master = select_master(members, adults, self._settings.source_priority)
        duplicates, evidence = [], {"pairs": [], "requested": len(confirmed)}
        for pid in live:
            if pid == master or members[pid].get("status") in ("duplicate", "pending"):
                continue
            decision = compare_nik_pair(members[pid], members[master], self._settings,
                                        confirmed=pair_key(pid, master) in pairs)
            if decision.outcome == MERGE:
                duplicates.append(pid)
                evidence["pairs"].append({"patients": sorted((pid, master)), **decision.evidence})
            else:
                outcome.refused[pid] = decision.reason
        if not duplicates:
            return doc.get("request")
        return add_to_request(doc, group, master, duplicates, command.reason, command.requested_by, evidence)


_VERSION_FIELDS = ("version", "last_updated")


def _already_recorded(doc: dict | None, patient_id: str, record: dict) -> bool:
    """Whether the group already holds this record but for its version (a merge's own write: the
    status the write implies was set when the merge completed)."""
    stored = ((doc or {}).get("members") or {}).get(patient_id)
    if not stored:
        return False
    expected = "merged" if record["replaced_by"] else "master"
    return stored.get("status") == expected and all(
        stored.get(key) == value for key, value in record.items() if key not in _VERSION_FIELDS)


def _same_nik(value: object, nik: str) -> bool:
    try:
        return parse_nik(str(value)).value == nik
    except NikError:
        return False
