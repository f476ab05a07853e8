"""The matching index in Firestore: NIK groups, demographic blocks, review items, patient keys.

Layout (docs/DESIGN.md, "Firestore layout"; collection names pass through ``Settings.collection``):

- ``nik_index/{nik_token}`` and ``demographic_index/{block_token}`` — a *group*: every patient that
  shares one NIK (or one birth date + gender block), with ``members``, ``master``, the current merge
  ``request``, ``do_not_match`` and ``confirmed`` pair keys. Groups are addressed as
  ``"nik_index/<token>"`` / ``"demographic_index/<token>"`` (the un-prefixed collection name).
- ``review_items/{id}`` — pairs a human must decide.
- ``patient_keys/{patient_id}`` — which group(s) a patient is in, so a delete or a NIK change finds
  the old entry.

Every change to a group is one Firestore transaction over the group's document (read, decide,
write the whole document), so concurrent events for one NIK serialise and see each other's work.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from google.api_core.exceptions import Aborted
from google.cloud import firestore

from shared.config import Settings
from shared.domain.master import golden_members, select_master

GROUP_COLLECTIONS = ("nik_index", "demographic_index")
# Firestore aborts a contended transaction after a lock wait; with 8+ events for one NIK arriving
# together, a few attempts are not enough.
TRANSACTION_ATTEMPTS = 30
_GROUP_LOCKS = tuple(threading.Lock() for _ in range(256))


def request_id_for(group: str, master: str, duplicates: Iterable[str]) -> str:
    key = f"{group}|{master}|{','.join(sorted(set(duplicates)))}"
    return "mr-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def review_item_id(group: str, patient_ids: Iterable[str], reason: str) -> str:
    key = f"{group}|{','.join(sorted(set(patient_ids)))}|{reason}"
    return "rv-" + hashlib.sha256(key.encode()).hexdigest()[:24]


def pair_key(a: str, b: str) -> str:
    return "|".join(sorted((a, b)))


def group_token(group: str) -> str:
    return group.split("/", 1)[1]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def public_request(group: str, request: dict) -> dict:
    """The authoritative request as the merge pipeline sees it (and the merge-requests message)."""
    return {
        "request_id": request["id"],
        "id": request["id"],
        "group": group,
        "nik_token": group_token(group),
        "master": request["master"],
        "duplicates": list(request["duplicates"]),
        "reason": request.get("reason"),
        "requested_by": request.get("requested_by"),
        "evidence": request.get("evidence") or {},
    }


def add_to_request(doc: dict, group: str, master: str, duplicates: Iterable[str], reason: str,
                   requested_by: str, evidence: dict) -> dict:
    """Pure part of ``open_request``: records a new open request in ``doc`` or adds the duplicates
    to the open one; while a request runs, the new duplicates wait as ``pending`` members (the
    finaliser opens the follow-up). Mutates and returns the group's request."""
    members = doc.setdefault("members", {})
    request = doc.get("request")
    wanted = [d for d in dict.fromkeys(duplicates) if d != master]
    if request and request.get("status") == "open":
        in_request = {request["master"], *request["duplicates"]}
        for pid in [master, *wanted]:
            if pid not in in_request:
                request["duplicates"].append(pid)
                in_request.add(pid)
                members.setdefault(pid, {})["status"] = "duplicate"
        joined = request.setdefault("evidence", {}).setdefault("joined", [])
        if evidence and evidence not in joined and evidence != request["evidence"].get("first"):
            joined.append(evidence)
        return request
    if request and request.get("status") == "running":
        in_request = {request["master"], *request["duplicates"]}
        for pid in [master, *wanted]:
            if pid not in in_request and (members.get(pid) or {}).get("status") not in ("merged", "deleted"):
                members.setdefault(pid, {})["status"] = "pending"
        return request
    request = {
        "id": request_id_for(group, master, wanted),
        "status": "open",
        "master": master,
        "duplicates": sorted(wanted),
        "reason": reason,
        "requested_by": requested_by,
        "evidence": {"first": evidence or {}},
        "published": False,
        "created_at": _now(),
    }
    doc["request"] = request
    doc["master"] = master
    members.setdefault(master, {})["status"] = "master"
    for pid in wanted:
        members.setdefault(pid, {})["status"] = "duplicate"
    return request


class PatientIndex:
    """Repository over the Firestore layout above. ``db`` is a ``google.cloud.firestore.Client``."""

    def __init__(self, db: firestore.Client, settings: Settings):
        self._db = db
        self._settings = settings

    # --- addressing ------------------------------------------------------------------------
    def group_ref(self, group: str):
        collection, token = group.split("/", 1)
        if collection not in GROUP_COLLECTIONS:
            raise ValueError(f"unknown group collection {collection!r}")
        return self._db.collection(self._settings.collection(collection)).document(token)

    def _collection(self, name: str):
        return self._db.collection(self._settings.collection(name))

    def transact_group(self, group: str, change: Callable[[dict, Any], Any]) -> Any:
        """Runs ``change(doc, transaction)`` in a transaction on the group's document. ``change``
        mutates ``doc`` (a dict; empty for a new group) and returns a result; the whole document is
        written back unless the result is a tuple whose first element is ``False`` (nothing changed)."""
        ref = self.group_ref(group)

        @firestore.transactional
        def run(transaction):
            snapshot = ref.get(transaction=transaction)
            doc = (snapshot.to_dict() or {}) if snapshot.exists else {}
            doc.setdefault("members", {})
            result = change(doc, transaction)
            if not (isinstance(result, tuple) and result and result[0] is False):
                doc["updated_at"] = _now()
                transaction.set(ref, doc)
            return result

        # The client retries an aborted transaction at once; two contenders then abort each other
        # again and again (seen on the emulator). Retry here with jittered backoff instead. Threads of
        # this process queue on a lock first: the transaction still guards against other instances,
        # but contenders inside one instance no longer wait out Firestore's lock timeouts.
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                with _GROUP_LOCKS[hash(group) % len(_GROUP_LOCKS)]:
                    return run(self._db.transaction(max_attempts=1))
            except (Aborted, ValueError) as error:
                aborted = isinstance(error, Aborted) or isinstance(error.__cause__, Aborted)
                if not aborted or attempt == TRANSACTION_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.0, min(2.0, 0.05 * 2 ** attempt)))
        raise AssertionError("unreachable")

    def read_group(self, group: str) -> dict | None:
        snapshot = self.group_ref(group).get()
        return snapshot.to_dict() if snapshot.exists else None

    # --- merge requests (the contract the merge pipeline codes against) ---------------------
    def open_request(self, group: str, master: str, duplicates: list[str], reason: str,
                     requested_by: str, evidence: dict) -> dict:
        """The single way a merge request comes to exist. Returns the group's request (a new one,
        the open one the duplicates joined, or the running one they now wait behind as pending)."""

        def change(doc, _transaction):
            return dict(add_to_request(doc, group, master, duplicates, reason, requested_by, evidence))

        return self.transact_group(group, change)

    def mark_published(self, group: str, request_id: str) -> None:
        def change(doc, _transaction):
            request = doc.get("request")
            if not request or request.get("id") != request_id or request.get("published"):
                return (False,)
            request["published"] = True
            return (True,)

        self.transact_group(group, change)

    def claim_request(self, group: str, request_id: str) -> dict | None:
        """Fan-out's claim: open -> running (re-selecting the master when none is golden yet, so
        arrival order does not decide it); running with this id -> the same answer again; else None."""
        settings = self._settings

        def change(doc, _transaction):
            request = doc.get("request")
            if not request or request.get("id") != request_id:
                return (False, None)
            if request.get("status") == "running":
                return (False, public_request(group, request))
            if request.get("status") != "open":
                return (False, None)
            members = doc["members"]
            everyone = [request["master"], *request["duplicates"]]
            if not golden_members(members, everyone):
                master = select_master(members, everyone, settings.source_priority)
                request["master"] = master
                request["duplicates"] = sorted(p for p in everyone if p != master)
            request["status"] = "running"
            request["claimed_at"] = _now()
            doc["master"] = request["master"]
            members.setdefault(request["master"], {})["status"] = "master"
            for pid in request["duplicates"]:
                members.setdefault(pid, {})["status"] = "duplicate"
            return (True, public_request(group, request))

        return self.transact_group(group, change)[1]

    def complete_request(self, group: str, request_id: str, master: str,
                         duplicates: list[str]) -> dict | None:
        """Finaliser's completion: duplicates become ``merged``, the master ``master`` (golden),
        the request ``done``. Members left ``pending`` while it ran get a follow-up request, which
        is returned (unpublished) for the caller to publish; None when there is none. Redelivery
        returns the same follow-up while it is still unpublished."""

        def change(doc, _transaction):
            request = doc.get("request")
            if not request:
                return (False, None)
            if request.get("id") != request_id:
                if request.get("follow_up_of") == request_id and not request.get("published"):
                    return (False, public_request(group, request))
                return (False, None)
            if request.get("status") == "done":
                return (False, None)
            members = doc["members"]
            for pid in duplicates:
                member = members.setdefault(pid, {})
                member.update(status="merged", active=False, golden=False, replaced_by=master)
            master_member = members.setdefault(master, {})
            master_member.update(status="master", golden=True, active=True)
            request["status"] = "done"
            request["master"] = master
            request["duplicates"] = sorted(duplicates)
            request["completed_at"] = _now()
            doc["master"] = master
            pending = sorted(pid for pid, m in members.items() if m.get("status") == "pending")
            if not pending:
                return (True, None)
            doc["request"] = None
            follow_up = add_to_request(doc, group, master, pending, "follow-up", "matching",
                                       {"follow_up_of": request_id})
            follow_up["follow_up_of"] = request_id
            doc["previous_request"] = request
            return (True, public_request(group, follow_up))

        return self.transact_group(group, change)[1]

    def record_unmerge(self, group: str, master: str, duplicates: list[str]) -> None:
        """Used by unmerge: a human undid this merge, so its pairs become "do not match" (the
        automation would otherwise merge the re-activated patients straight back) and the members
        are live again. The master keeps its golden status only if other members stay merged into it."""

        def change(doc, _transaction):
            members = doc["members"]
            pairs = {pair_key(master, pid) for pid in duplicates}
            doc["do_not_match"] = sorted(set(doc.get("do_not_match") or []) | pairs)
            for pid in duplicates:
                if pid in members:
                    members[pid].update(status="active", active=True, replaced_by=None, golden=False)
            still_merged = any(m.get("replaced_by") == master and m.get("status") == "merged"
                               for pid, m in members.items() if pid not in duplicates)
            if master in members and not still_merged:
                members[master].update(status="active", golden=False)
            return (True,)

        self.transact_group(group, change)
