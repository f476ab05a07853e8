"""The report as a dashboard: ``build_report``'s figures plus their course over the last days (review
backlog, decisions and merges per day). Counts only, from the same read model (``ReportSources``)."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from shared.domain.review import ReviewStatus
from shared.services.report import ReportSources, build_report


def _day(timestamp: str | None) -> str | None:
    return timestamp[:10] if timestamp else None


def build_dashboard(sources: ReportSources, *, today: date, days: int = 30) -> dict:
    report = build_report(sources)
    span = [(today - timedelta(days=n)).isoformat() for n in range(days - 1, -1, -1)]
    created: Counter = Counter()
    resolved: Counter = Counter()
    decisions: dict[str, Counter] = {day: Counter() for day in span}
    before_span = 0
    for item in sources.reviews.all():
        made, decided = _day(item.created_at) or span[0], _day(item.decision.get("decided_at"))
        if item.status == ReviewStatus.PENDING:
            decided = None
        if made < span[0]:
            before_span += 1 if not decided or decided >= span[0] else 0
        else:
            created[made] += 1
        if decided:
            if decided >= span[0]:
                resolved[decided] += 1
            if decided in decisions:
                decisions[decided][str(item.status)] += 1
    backlog, open_items = [], before_span
    for day in span:
        open_items += created[day] - resolved[day]
        backlog.append((day, open_items))
    merges: dict[str, Counter] = {day: Counter() for day in span}
    for job in sources.jobs.all():
        day = _day(job.get("created_at"))
        if day in merges:
            merges[day][str(job.get("status", "unknown"))] += 1
    return {
        "report": report,
        "days": span,
        "backlog": backlog,
        "decisions": [(day, dict(decisions[day])) for day in span],
        "merges": [(day, dict(merges[day])) for day in span],
        "duplicates_by_source": {source: counts.get("merged_away", 0) + counts.get("in_review", 0)
                                 for source, counts in report["by_source"].items()},
        "review_by_reason": report["review_pending_by_reason"],
    }
