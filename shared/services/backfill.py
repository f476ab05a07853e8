"""Backfill: clean an existing store, and index what bulk imports loaded without notifications.

Pages through every Patient with large pages and runs each one through the same matching code the
incremental function uses (``MatchingService.handle_change`` with the resource in hand), so the
indexes and the merge requests come out exactly as if every patient had arrived as an event.

Resumable: after each page the next-page link is saved in ``backfill_runs/{run_id}``; a run that was
killed or interrupted continues from the page after the last one saved. A page processed twice does
no harm: matching skips versions it has already indexed and never publishes a request twice.

Within a page, patients are spread over worker threads by their index group, so two threads never
wait on each other's Firestore transaction for the same NIK.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from shared.config import Settings
from shared.domain.backfill import BackfillProgress
from shared.domain.patient import member_record, patient_facts
from shared.fhir.wire import next_link_path
from shared.logging import get_logger
from shared.messages import ChangeSource, PatientChange
from shared.ports.backfill_runs import BackfillRunRepository
from shared.ports.fhir import FhirPort
from shared.services.matching import MatchingService

log = get_logger(__name__)


def _group_of(resource: dict, settings: Settings) -> str:
    """The index group a patient's transactions go to; patients of one group share a worker."""
    record = member_record(patient_facts(resource, settings))
    return record.get("nik_token") or f"{record.get('birth_date')}|{record.get('gender')}"


def _shard(key: str, shards: int) -> int:
    return int(hashlib.blake2b(key.encode(), digest_size=4).hexdigest(), 16) % shards


def run_backfill(
    *,
    run_id: str,
    settings: Settings,
    fhir: FhirPort,
    matching: MatchingService,
    checkpoints: BackfillRunRepository,
    page_size: int = 1000,
    workers: int = 8,
    max_pages: int | None = None,
    on_page: Callable[[BackfillProgress], None] | None = None,
) -> BackfillProgress:
    """Runs (or resumes) backfill ``run_id``. ``max_pages`` stops early (tests of resuming)."""
    progress = checkpoints.load(run_id) or BackfillProgress(run_id=run_id)
    if progress.status == "done":
        return progress
    sort = f"&_sort={settings.scan_sort}" if settings.scan_sort else ""
    path = progress.next_path or f"Patient?_count={page_size}{sort}"
    started = time.monotonic() - progress.seconds
    pages_this_call = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="backfill") as pool:
        while path is not None:
            bundle = fhir.get_path(path)
            patients = [e["resource"] for e in bundle.get("entry") or []
                        if (e.get("resource") or {}).get("resourceType") == "Patient"
                        and (e.get("search") or {}).get("mode", "match") == "match"]
            shards: dict[int, list[dict]] = defaultdict(list)
            for resource in patients:
                shards[_shard(_group_of(resource, settings), workers)].append(resource)

            def process(batch: list[dict]) -> list:
                outcomes = []
                for resource in batch:
                    # Read from the store by this process: trusted.
                    change = PatientChange(resource["id"], "upsert", (resource.get("meta") or {}).get("versionId"),
                                           resource, source=ChangeSource.BACKFILL, trusted=True)
                    outcomes.append(matching.handle_change(change, publish=False))
                return outcomes

            touched: set[str] = set()
            for outcomes in pool.map(process, shards.values()):
                for outcome in outcomes:
                    progress.results[outcome.result] += 1
                    progress.reviews_proposed += len(outcome.reviews)
                    touched.update(outcome.groups)
            # One request per group for the whole page, published once its patients are all indexed.
            progress.requests_published += len(matching.publish_pending(touched))
            progress.patients += len(patients)
            progress.pages += 1
            link = next((item.get("url") for item in bundle.get("link") or [] if item.get("relation") == "next"), None)
            path = next_link_path(link, fhir.base_url) if link else None
            progress.next_path = path
            progress.status = "running" if path else "done"
            progress.seconds = time.monotonic() - started
            checkpoints.save(progress)
            log.info("backfill_page", run_id=run_id, page=progress.pages, patients=progress.patients,
                     published=progress.requests_published)
            if on_page:
                on_page(progress)
            pages_this_call += 1
            if max_pages is not None and pages_this_call >= max_pages and path is not None:
                break
    return progress
