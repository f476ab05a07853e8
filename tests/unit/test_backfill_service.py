"""Backfill over ``InMemoryFhir``: paging with next links, one request per NIK published once its
patients are indexed, and resuming from the checkpoint after an interrupted run."""

from __future__ import annotations

from shared.config import Settings
from shared.services.backfill import run_backfill
from tests.fakes import FakeServices, InMemoryFhir, patient_resource

SETTINGS = Settings()
PAIRS = 10
SINGLES = 3
PAGE = 4
PAGES = -(-(2 * PAIRS + SINGLES) // PAGE)


def loaded_world() -> tuple[FakeServices, dict[str, set[str]]]:
    """PAIRS people with two records each, their second record PAIRS records after the first (so on
    a later page), and SINGLES people with one record."""
    world = FakeServices(SETTINGS, fhir=InMemoryFhir(page_size=1000))
    niks = [f"32010115059{serial:05d}" for serial in range(1, PAIRS + SINGLES + 1)]
    records: dict[str, set[str]] = {nik: set() for nik in niks}
    for round_niks in (niks[:PAIRS], niks):
        for nik in round_niks:
            created = world.fhir.create(patient_resource(SETTINGS, "Budi Santoso", nik))
            records[nik].add(created["id"])
    return world, records


def backfill(world: FakeServices, run_id: str = "run-1", **options):
    return run_backfill(run_id=run_id, settings=SETTINGS, fhir=world.fhir, matching=world.matching,
                        checkpoints=world.backfill_runs, page_size=PAGE, workers=4, **options)


def assert_one_request_per_pair(world: FakeServices, records: dict[str, set[str]]) -> None:
    messages = world.merge_requests_published()
    assert len({m["request_id"] for m in messages}) == len(messages) == PAIRS
    assert sorted(sorted({m["master"], *m["duplicates"]}) for m in messages) == sorted(
        sorted(ids) for ids in records.values() if len(ids) == 2)


def test_backfill_pages_through_every_patient_and_publishes_each_request_once():
    world, records = loaded_world()
    progress = backfill(world)
    assert progress.status == "done" and progress.next_path is None
    assert (progress.pages, progress.patients) == (PAGES, 2 * PAIRS + SINGLES)
    assert progress.results == {"indexed": 2 * PAIRS + SINGLES} and progress.requests_published == PAIRS
    assert world.backfill_runs.saves == PAGES and world.backfill_runs.load("run-1").status == "done"
    assert world.keys.count() == 2 * PAIRS + SINGLES
    assert_one_request_per_pair(world, records)


def test_an_interrupted_backfill_resumes_from_its_checkpoint():
    world, records = loaded_world()
    first = backfill(world, max_pages=2)
    assert first.status == "running" and (first.pages, first.patients) == (2, 2 * PAGE)
    assert world.backfill_runs.load("run-1").next_path == first.next_path
    assert first.next_path.startswith("Patient?") and "_sort=_id" in first.next_path

    resumed = backfill(world)
    assert resumed.status == "done" and (resumed.pages, resumed.patients) == (PAGES, 2 * PAIRS + SINGLES)
    assert resumed.results == {"indexed": 2 * PAIRS + SINGLES} and resumed.requests_published == PAIRS
    assert_one_request_per_pair(world, records)

    searches = world.fhir.requests["search"]
    assert backfill(world).pages == PAGES                 # a finished run is not run again
    assert world.fhir.requests["search"] == searches


def test_a_second_backfill_over_an_indexed_store_changes_nothing():
    world, records = loaded_world()
    backfill(world)
    again = backfill(world, run_id="run-2")
    assert again.status == "done" and again.results == {"stale": 2 * PAIRS + SINGLES}
    assert again.requests_published == 0
    assert_one_request_per_pair(world, records)
