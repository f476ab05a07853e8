"""An explicit merge: a human names the master and the records to merge into it, whatever groups
they are in (NIK or not, two NIKs). Pure; runs inside the master's group transaction.

The master's group holds the request. A named record from another group (another NIK, a demographic
block, or no group at all) joins it as a member, as a ``CrossJoin`` does for a matched NIK-less
record, so the merge pipeline sees one group with one request and one master. The pairs are
recorded as human-confirmed; the newborn and twin rules (``pair_rules``) still refuse what they
refuse, and a pair a human rejected or unmerged stays refused.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.config import Settings
from shared.domain.group import Group, MemberStatus, is_live
from shared.domain.indexing import Confirmation
from shared.domain.merge_request import RequestPlan, RequestStatus
from shared.domain.pair_rules import MERGE, compare_nik_pair

BUSY = "group-busy"


def plan_explicit_merge(group: Group, master: str, duplicates: list[str], records: Mapping[str, dict], *,
                        reason: str, requested_by: str, settings: Settings,
                        evidence: Mapping | None = None) -> Confirmation:
    """Adds the named records missing from ``group`` (from ``records``: their index records), records
    the confirmation and opens a request with ``master`` fixed. ``refused``: patient id -> rule."""
    result = Confirmation(None)
    request = group.request
    if request and request.status == RequestStatus.OPEN and not request.published \
            and request.participants <= {master, *duplicates}:
        # The indexing just before (records a bulk import never announced) opened an automatic request
        # for these same records: the human's request, with the chosen master, replaces it.
        group.request = None
        request = None
    if request and request.in_progress:
        # Another merge of this group is open or running: the human's choice of master must not be
        # folded into it. Try again when it is done.
        result.refused.update({pid: f"{BUSY}:{request.id}" for pid in duplicates})
        return result
    members = group.members
    # Records from elsewhere join the group only when they are merged into it.
    candidates = {pid: members.get(pid) or {**records[pid], "status": str(MemberStatus.ACTIVE)}
                  for pid in [master, *duplicates]}
    if not is_live(candidates[master]):
        result.refused.update({pid: "master-not-live" for pid in duplicates})
        return result
    accepted, evidence = [], {"pairs": [], "explicit": True, **(evidence or {})}
    for pid in duplicates:
        if not is_live(candidates[pid]):
            result.refused[pid] = "not-live"
            continue
        decision = compare_nik_pair(candidates[pid], candidates[master], settings, confirmed=True,
                                    rejected=group.is_rejected(pid, master))
        if decision.outcome == MERGE:
            accepted.append(pid)
            evidence["pairs"].append({"patients": sorted((pid, master)), **decision.evidence})
        else:
            result.refused[pid] = decision.reason
    if not accepted:
        return result
    for pid in [master, *accepted]:
        members.setdefault(pid, candidates[pid])
    group.confirm([master, *accepted])
    result.request = group.open_request(RequestPlan(master, tuple(accepted), reason, requested_by, evidence))
    result.request.fixed_master = True
    return result
