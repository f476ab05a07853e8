"""`dedup merge --master ID --duplicate ID ...`: merge records a human chose, into the master they chose
(``shared.services.explicit_merge``). Shows what would change first and asks, unless ``--yes``."""

from __future__ import annotations

import json
import sys
import time

import typer
from rich.console import Console

from ops.errors import NotFoundProblem, OpsError, UsageProblem

console = Console()
err_console = Console(stderr=True)


def checked(action):
    """Runs ``action``, turning the use case's refusals into the CLI's errors (and exit codes)."""
    from shared.services.explicit_merge import MergeInputInvalid, MergeRefused, PatientMissing

    try:
        return action()
    except MergeInputInvalid as error:
        raise UsageProblem(str(error)) from None
    except PatientMissing as error:
        raise NotFoundProblem(str(error)) from None
    except MergeRefused as error:
        raise OpsError(str(error)) from None


def merge(
    ctx: typer.Context,
    master: str = typer.Option(..., "--master", help="The Patient id that stays (the golden record)"),
    duplicate: list[str] = typer.Option(..., "--duplicate", help="A Patient id merged into the master (repeatable)"),
    reason: str = typer.Option("explicit merge", help="Why (kept in the audit trail)"),
    requested_by: str = typer.Option(..., "--by", help="Who confirms these are one person (kept in the audit trail)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask (the preview is still printed)"),
    wait: float = typer.Option(0.0, "--wait", min=0.0, help="Wait up to this many seconds for the merge to finish"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Merge chosen records (NIK or not) into a chosen master, as a human-confirmed merge: the newborn
    and twin rules still apply; inactive, replaced or unknown records are refused."""
    from ops.context import print_mapping as _print_mapping
    from ops.context import settings_of as _settings
    from shared.bootstrap import explicit_merges, merge_deps
    from shared.services.merge_preview import preview

    settings = _settings(ctx)
    service = explicit_merges(settings)
    duplicates, patients = checked(lambda: service.check(master, duplicate))
    counts = preview(master, duplicates, merge_deps(settings))
    if not as_json:
        _print_mapping(f"merge into Patient/{master}: {len(duplicates)} record(s), {sum(counts.values())} "
                       "resource(s) would be rewritten", {"duplicates": ", ".join(duplicates), **counts})
    if not yes and not sys.stdin.isatty():
        raise OpsError("nothing merged: not confirmed (standard input is not a terminal)",
                       "add --yes once the preview above is what you want")
    if not yes and not typer.confirm(f"Merge {len(duplicates)} record(s) into Patient/{master}?", err=True):
        raise OpsError("nothing merged (not confirmed)", "add --yes to merge without asking")
    outcome = checked(lambda: service.merge(master, duplicates, reason=reason, requested_by=requested_by))
    result = {"request_id": outcome.request_id, "job_id": outcome.request_id, "group": outcome.group,
              "master": master, "duplicates": outcome.duplicates, "refused": outcome.refused,
              "published": outcome.published, "preview": counts, "status": "requested"}
    if wait:
        job = _wait_for_job(merge_deps(settings).jobs, outcome.request_id, wait)
        result["status"] = (job or {}).get("status", "requested")
    if as_json:
        console.print_json(json.dumps(result))
    else:
        console.print(f"merge requested: job [bold]{outcome.request_id}[/bold] ({result['status']}); "
                      f"follow it with `dedup status {outcome.request_id}`")
        if outcome.refused:
            err_console.print(f"refused by rule: {outcome.refused}")
    if wait and result["status"] != "done":
        raise OpsError(f"merge job {outcome.request_id} not done after {wait:.0f} s (status {result['status']})",
                       f"`dedup status {outcome.request_id}`")


def _wait_for_job(jobs, job_id: str, seconds: float) -> dict | None:
    deadline = time.monotonic() + seconds
    job = None
    while time.monotonic() < deadline:
        job = jobs.get(job_id)
        if job and job.get("status") in ("done", "failed", "unmerged"):
            return job
        time.sleep(0.5)
    return job


def register(app: typer.Typer) -> None:
    app.command()(merge)
