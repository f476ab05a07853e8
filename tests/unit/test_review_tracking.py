"""Groups written before they tracked their review items learn them without anyone running a command:
each sweep runs a slice of the one-time tracking pass (``review_tracking.track_pending_once``), resumes
where the last slice stopped (after a crash too), closes items a decision already answered, and once
the district's mark says done it does nothing more."""

from __future__ import annotations

import pytest

from shared.config import Settings
from shared.domain.review import ReviewItem, ReviewStatus
from shared.domain.review_closing import RESOLVED_BY_DECISION, SUPERSEDED
from shared.services import review_tracking
from shared.services.review_tracking import TRACKING_MARK, track_pending_once
from shared.services.sweeper import sweep
from tests.fakes import FakeServices

SETTINGS = Settings(model_merge_weight=float("inf"))   # the rules alone: the pairs below stay in review


class Boom(RuntimeError):
    pass


@pytest.fixture
def world() -> FakeServices:
    return FakeServices(SETTINGS)


def legacy_district(world: FakeServices) -> list[ReviewItem]:
    """Three NIK groups of two records each, each with a pending item the group does not track (written
    before ``Group.reviews`` existed); the first group's pair was rejected meanwhile."""
    items = []
    for n in range(3):
        group_id, ids = f"nik_index/legacy{n}", [f"p{n}a", f"p{n}b"]

        def seed(tx, ids=ids, rejected=n == 0):
            tx.group.members.update({pid: {"status": "review", "active": True} for pid in ids})
            if rejected:
                tx.group.reject(ids)

        world.groups.transact(group_id, seed)
        item = ReviewItem.proposed(group_id, ids, "model-review", {}, f"2025-01-0{n + 1}T00:00:00+00:00")
        world.reviews.docs[item.id] = item.to_doc()
        assert "reviews" not in world.groups.docs[group_id]
        items.append(item)
    assert [i.id for i in world.review.pending()] == [i.id for i in items]
    return items


def make_inactive(world: FakeServices, group_id: str, patient_id: str) -> None:
    def change(tx):
        tx.group.members[patient_id]["active"] = False
    world.groups.transact(group_id, change)


def test_a_sweep_tracks_legacy_items_closes_the_answered_one_and_marks_the_district_done(world):
    items = legacy_district(world)
    report = sweep(world.merge_deps, world.groups, reviews=world.reviews, marks=world.upkeep)
    assert report.reviews_tracked == 3
    assert world.review.get(items[0].id).decision["closed_reason"] == RESOLVED_BY_DECISION
    for item in items[1:]:
        assert world.review.get(item.id).status == ReviewStatus.PENDING
        assert item.id in world.groups.get(item.group).reviews
    mark = world.upkeep.get(TRACKING_MARK)
    assert mark["status"] == "done" and (mark["groups"], mark["tracked"], mark["closed"]) == (3, 3, 1)
    # Tracked now, a legacy item closes itself: one of its records made inactive.
    item = items[1]
    make_inactive(world, item.group, item.patient_ids[0])
    assert world.review.get(item.id).decision["closed_reason"] == SUPERSEDED


def test_once_done_a_sweep_leaves_the_review_items_alone(world):
    legacy_district(world)
    sweep(world.merge_deps, world.groups, reviews=world.reviews, marks=world.upkeep)
    attempts, puts = sum(world.groups.attempts.values()), world.upkeep.puts
    report = sweep(world.merge_deps, world.groups, reviews=world.reviews, marks=world.upkeep)
    assert report.reviews_tracked == 0
    assert sum(world.groups.attempts.values()) == attempts and world.upkeep.puts == puts


def test_the_pass_runs_in_slices_across_sweeps_and_resumes_after_a_crash(world, monkeypatch):
    items = legacy_district(world)
    monkeypatch.setattr(review_tracking, "PAGE_SIZE", 1)
    first = track_pending_once(world.reviews, world.groups, world.upkeep, limit=1)
    assert (first.tracked, first.finished) == (1, False)
    assert world.upkeep.get(TRACKING_MARK)["status"] == "running"
    assert world.upkeep.get(TRACKING_MARK)["after"] == items[0].id
    assert items[1].id not in world.groups.get(items[1].group).reviews
    # The next slice crashes in its group transaction: nothing recorded, the next sweep does it again.
    world.groups.fail_next(group_id=items[1].group, error=Boom("crash"))
    with pytest.raises(Boom):
        track_pending_once(world.reviews, world.groups, world.upkeep, limit=1)
    assert world.upkeep.get(TRACKING_MARK)["after"] == items[0].id
    second = track_pending_once(world.reviews, world.groups, world.upkeep, limit=1)
    third = track_pending_once(world.reviews, world.groups, world.upkeep, limit=1)
    assert (second.tracked, second.finished, third.tracked, third.finished) == (1, False, 1, True)
    assert all(item.id in world.groups.get(item.group).reviews for item in items[1:])
    mark = world.upkeep.get(TRACKING_MARK)
    assert mark["status"] == "done" and (mark["groups"], mark["tracked"], mark["closed"]) == (3, 3, 1)
    assert track_pending_once(world.reviews, world.groups, world.upkeep) is None


def test_the_ops_command_does_the_same_pass_at_once(world):
    items = legacy_district(world)
    make_inactive(world, items[1].group, items[1].patient_ids[0])   # untracked: the item stays pending
    assert world.review.get(items[1].id).status == ReviewStatus.PENDING
    assert world.review.track_pending() == {"groups": 3, "tracked": 3, "closed": 2}
    assert world.review.get(items[1].id).decision["closed_reason"] == SUPERSEDED
    assert items[2].id in world.groups.get(items[2].group).reviews
