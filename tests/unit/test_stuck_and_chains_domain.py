"""The domain of item 5 and 6 of issue 12: releasing a request that cannot finish (``Group.release_request``,
``unclaim_request``, ids of failed requests never reused) and the chain rules (``shared.domain.chains``)."""

from __future__ import annotations

from shared.domain.chains import chain_in_patients, claim_conflicts, merged_elsewhere, settle_merged_participants
from shared.domain.group import Group
from shared.domain.merge_request import RequestPlan, RequestStatus

GROUP = "nik_index/tok"


def member(status="active", golden=False, score=1.0) -> dict:
    return {"status": status, "golden": golden, "active": True, "score": score}


def running_group(*, golden_master: bool = False) -> Group:
    group = Group(GROUP, members={"m": member(golden=golden_master, score=9.0), "d1": member(), "d2": member()})
    request = group.open_request(RequestPlan("m", ("d1", "d2"), "nik-match", "matching", {}))
    group.claim_request(request.id, [])
    assert group.request.status == RequestStatus.RUNNING and group.request.master == "m"
    return group


def test_release_brings_the_members_back_and_frees_the_group():
    group = running_group()
    request_id = group.request.id
    assert group.release_request(request_id, "stuck-running") is None
    assert group.request is None
    assert group.previous_request.id == request_id and group.previous_request.status == RequestStatus.FAILED
    assert group.previous_request.failed_reason == "stuck-running"
    assert {pid: m["status"] for pid, m in group.members.items()} == {"m": "active", "d1": "active", "d2": "active"}
    assert group.master is None and group.released == [request_id]
    # storage round trip keeps it
    assert Group.from_doc(GROUP, group.to_doc()).to_doc() == group.to_doc()


def test_release_keeps_a_golden_master_and_only_its_own_request():
    group = running_group(golden_master=True)
    assert group.release_request("mr-other", "x") is None and group.request.status == RequestStatus.RUNNING
    group.release_request(group.request.id, "job-unmerged")
    assert group.members["m"]["status"] == "master" and group.master == "m"
    assert group.release_request(group.previous_request.id, "again") is None   # already released


def test_pending_members_get_a_follow_up_on_the_live_master():
    group = running_group()
    group.members["late"] = member()
    group.open_request(RequestPlan("m", ("late",), "nik-match", "matching", {}))
    assert group.members["late"]["status"] == "pending"
    failed_id = group.request.id
    follow_up = group.release_request(failed_id, "stuck-running")
    assert follow_up is group.request and follow_up.status == RequestStatus.OPEN and not follow_up.published
    assert follow_up.master == "m" and follow_up.duplicates == ["late"] and follow_up.follow_up_of == failed_id
    assert group.members["d1"]["status"] == "active" and group.members["late"]["status"] == "duplicate"


def test_pending_members_go_back_to_active_without_a_live_master():
    group = running_group()
    group.members["late"] = member()
    group.open_request(RequestPlan("m", ("late",), "nik-match", "matching", {}))
    group.remove_member("m", [])          # deleted while the merge ran: stays, marked deleted
    assert group.members["m"]["status"] == "deleted"
    assert group.release_request(group.request.id, "stuck-running") is None
    assert "m" not in group.members        # it left the group; now it goes
    assert group.members["late"]["status"] == "active" and group.request is None


def test_a_released_request_id_is_never_reused():
    group = running_group()
    failed_id = group.request.id
    group.release_request(failed_id, "stuck-running")
    again = group.open_request(RequestPlan("m", ("d1", "d2"), "nik-match", "matching", {}))
    assert again.id != failed_id               # its job exists, failed: a new id makes a new job
    group.release_request(again.id, "stuck-open")
    third = group.open_request(RequestPlan("m", ("d1", "d2"), "nik-match", "matching", {}))
    assert third.id not in (failed_id, again.id)


def test_unclaim_puts_a_running_request_back_to_open():
    group = running_group()
    request_id = group.request.id
    assert group.unclaim_request("mr-other") is False
    assert group.unclaim_request(request_id) is True
    assert group.request.status == RequestStatus.OPEN and group.request.claimed_at is None
    assert group.unclaim_request(request_id) is False
    assert group.claim_request(request_id, []).status == RequestStatus.RUNNING


def test_claim_conflicts_with_a_participant_running_or_merged_elsewhere():
    other = running_group()                              # d1 is a duplicate in a running request there
    assert claim_conflicts("demographic_index/b", ["x", "d1"], {GROUP: other}) == ["d1"]
    assert claim_conflicts("demographic_index/b", ["x", "m"], {GROUP: other}) == ["m"]   # its master too
    assert claim_conflicts(GROUP, ["d1"], {GROUP: other}) == []                       # its own group
    other.complete_request(other.request.id, "m", ["d1", "d2"])
    assert claim_conflicts("demographic_index/b", ["x", "d1", "m"], {GROUP: other}) == ["d1"]  # merged
    idle = Group("nik_index/idle", members={"x": member()})
    assert claim_conflicts("demographic_index/b", ["x"], {"nik_index/idle": idle}) == []


def _patient(pid: str, **links: list[str]) -> dict:
    patient = {"resourceType": "Patient", "id": pid}
    kinds = {"replaced_by": "replaced-by", "replaces": "replaces"}
    patient["link"] = [{"other": {"reference": f"Patient/{o}"}, "type": kinds[k]} for k, others in links.items()
                       for o in others]
    return patient


def test_chain_in_patients():
    assert chain_in_patients(_patient("m"), [_patient("d")], ["d"]) is None
    # a redelivered finalise after it linked: its own links are no chain
    assert chain_in_patients(_patient("m", replaces=["d", "old"]), [_patient("d", replaced_by=["m"])], ["d"]) is None
    assert chain_in_patients(_patient("m", replaced_by=["z"]), [_patient("d")], ["d"]) == "master-is-replaced"
    assert chain_in_patients(_patient("m"), [_patient("d", replaced_by=["z"])], ["d"]) == \
        "duplicate-replaced-by-another"
    assert chain_in_patients(_patient("m"), [_patient("d", replaces=["a"])], ["d"]) == "duplicate-is-a-master"


def open_group(master: str, duplicates: tuple[str, ...]) -> Group:
    group = Group("nik_index/other", members={pid: member() for pid in (master, *duplicates)})
    group.open_request(RequestPlan(master, duplicates, "demographic-match", "matching", {}))
    return group


def test_a_participant_merged_elsewhere_is_found_with_the_record_that_replaced_it():
    other = running_group()
    other.complete_request(other.request.id, "m", ["d1", "d2"])
    assert merged_elsewhere("nik_index/other", ["x", "d1", "m"], {GROUP: other}) == {"d1": "m"}
    assert merged_elsewhere(GROUP, ["d1"], {GROUP: other}) == {}                        # its own group


def test_a_participant_merged_into_the_master_elsewhere_leaves_the_open_request():
    group = open_group("m", ("d1", "x"))
    request_id = group.request.id
    assert settle_merged_participants(group, request_id, {"d1": "m"}, []) == ["d1"]
    assert group.request.master == "m" and group.request.duplicates == ["x"]
    assert group.status_of("d1") == "merged" and group.members["d1"]["replaced_by"] == "m"
    assert group.claim_request(request_id, []).participants == {"m", "x"}


def test_the_record_a_left_participant_was_merged_into_becomes_the_master():
    group = open_group("m", ("d1", "x"))     # elsewhere m was merged into d1: d1 is a golden master now
    assert settle_merged_participants(group, group.request.id, {"m": "d1"}, []) == ["m"]
    assert group.request.master == "d1" and group.request.duplicates == ["x"] and group.master == "d1"
    assert group.members["d1"]["golden"] is True
    assert group.claim_request(group.request.id, []).master == "d1"     # a golden master is kept


def test_a_request_left_with_nothing_to_merge_goes_and_a_running_one_is_never_touched():
    group = open_group("m", ("d1",))
    assert settle_merged_participants(group, group.request.id, {"d1": "m"}, []) == ["d1"]
    assert group.request is None and group.status_of("m") == "master" and group.master == "m"
    running = running_group()
    before = running.to_doc()
    assert settle_merged_participants(running, running.request.id, {"d1": "m"}, []) == []
    assert running.to_doc() == before
