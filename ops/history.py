"""`dedup jobs` (the merge jobs, filtered) and `dedup links PATIENT` (a patient's merges, unmerges and
review decisions, from the Provenance and the index)."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console
from rich.table import Table

from ops.errors import UsageProblem

console = Console()
_AGE = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_age(text: str) -> timedelta:
    match = _AGE.match(text.strip())
    if not match:
        raise UsageProblem(f"{text!r} is not an age", "e.g. 30s, 15m, 2h, 7d")
    return timedelta(**{_UNITS[match[2] or "s"]: int(match[1])})   # a bare number is seconds


def _created(job: dict) -> datetime | None:
    value = job.get("created_at")
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def select_jobs(jobs: list[dict], *, statuses: list[str], patient: str | None, nik_token: str | None,
                older_than: timedelta | None, now: datetime) -> list[dict]:
    selected = []
    for job in jobs:
        created = _created(job)
        if statuses and job.get("status") not in statuses:
            continue
        if patient and patient != job.get("master") and patient not in (job.get("duplicates") or []):
            continue
        if nik_token and job.get("nik_token") != nik_token:
            continue
        if older_than and (created is None or now - created < older_than):
            continue
        selected.append(job)
    return sorted(selected, key=lambda job: (job.get("created_at") or "", job["job_id"]))


def jobs(
    ctx: typer.Context,
    status: list[str] = typer.Option([], "--status", help="Only jobs in this status (repeatable): running, "
                                      "finalising, done, failed, unmerged"),
    patient: str | None = typer.Option(None, "--patient", help="Only jobs with this patient (master or duplicate)"),
    nik_from_stdin: bool = typer.Option(False, "--nik-from-stdin", help="Only the jobs of the NIK read from "
                                        "standard input (never on the command line)"),
    older_than: str | None = typer.Option(None, "--older-than", help="Only jobs created longer ago, e.g. 15m, 2h"),
    stuck: bool = typer.Option(False, "--stuck", help="Merge work (jobs, and requests without a job) with no "
                               "progress for DEDUP_STUCK_AFTER_SECONDS (or --older-than): what the sweeper "
                               "continues or fails"),
    as_json: bool = typer.Option(False, "--json"),
):
    """The merge jobs: id, status, master, duplicates, age (filters combine)."""
    from ops.context import settings_of as _settings
    from shared.bootstrap import merge_jobs
    from shared.nik import NikError, nik_token, parse_nik

    age = parse_age(older_than) if older_than else None   # a usage error before any service is asked
    settings = _settings(ctx)
    token = None
    if nik_from_stdin:
        try:
            token = nik_token(parse_nik(sys.stdin.readline().strip()).value, settings.nik_hash_key)
        except NikError as error:
            raise UsageProblem(f"standard input is not a valid NIK ({error.reason})") from None
    if stuck:
        _print_stuck(settings, age, as_json)
        return
    now = datetime.now(UTC)
    selected = select_jobs(merge_jobs(settings).all(), statuses=status, patient=patient, nik_token=token,
                           older_than=age, now=now)
    rows = [{"job_id": job["job_id"], "status": job.get("status"), "master": job.get("master"),
             "duplicates": list(job.get("duplicates") or []), "reason": job.get("reason"),
             "requested_by": job.get("requested_by"), "created_at": job.get("created_at"),
             "age_seconds": int((now - created).total_seconds()) if (created := _created(job)) else None,
             "remaining_tasks": job.get("remaining")} for job in selected]
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table(title=f"{len(rows)} merge job(s)")
    for column in ("job", "status", "master", "duplicates", "age", "requested by"):
        table.add_column(column, overflow="fold")
    for row in rows:
        age = row["age_seconds"]
        table.add_row(row["job_id"], str(row["status"]), str(row["master"]), "\n".join(row["duplicates"]),
                      "" if age is None else str(timedelta(seconds=age)), str(row["requested_by"] or ""))
    console.print(table)


def _print_stuck(settings, age: timedelta | None, as_json: bool) -> None:
    """The sweeper's view (``shared.services.sweeper.find_stuck``): one notion of stuck for both."""
    from shared.bootstrap import groups, merge_jobs
    from shared.services.sweeper import find_stuck

    seconds = age.total_seconds() if age is not None else settings.stuck_after_seconds
    rows = [{"id": item.id, "kind": item.kind, "status": item.status, "age_seconds": round(item.age_seconds),
             "group": item.group.split("/", 1)[-1] if item.group else None, "sweeps": item.sweeps}
            for item in find_stuck(merge_jobs(settings), groups(settings), seconds)]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table(title=f"stuck merge work: {len(rows)}")
    for column in ("id", "kind", "status", "age (s)", "group token", "sweeps"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["id"], row["kind"], row["status"], str(row["age_seconds"]), row["group"] or "",
                      str(row["sweeps"]))
    console.print(table)


def links(ctx: typer.Context, patient_id: str = typer.Argument(..., help="A Patient id"),
          as_json: bool = typer.Option(False, "--json")):
    """A patient's link history: merges and unmerges (jobs, Provenance), review decisions, index state."""
    from ops.context import print_mapping as _print_mapping
    from ops.context import settings_of as _settings
    from shared.bootstrap import fhir_client, groups, merge_jobs, patient_keys, review_items
    from shared.services.links import LinkSources, patient_links

    settings = _settings(ctx)
    history = patient_links(patient_id, LinkSources(fhir_client(settings), patient_keys(settings), groups(settings),
                                                    review_items(settings), merge_jobs(settings)))
    if as_json:
        console.print_json(json.dumps(history, default=str))
        return
    _print_mapping(f"Patient/{patient_id}", {"active": history["active"],
                                             "replaced by": ", ".join(history["replaced_by"]) or "-"})
    sections = (("index", ("group", "status", "group_master", "confirmed_with", "do_not_match_with")),
                ("merges", ("job_id", "role", "status", "master", "duplicates", "created_at", "unmerged_at")),
                ("provenance", ("id", "recorded", "activity", "targets")),
                ("reviews", ("id", "reason", "status", "patient_ids", "decided_by", "decided_at")))
    for name, columns in sections:
        table = Table(title=f"{name} ({len(history[name])})")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in history[name]:
            table.add_row(*[", ".join(map(str, v)) if isinstance(v, list) else str(v if v is not None else "")
                            for v in (row.get(c) for c in columns)])
        console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(jobs)
    app.command()(links)
