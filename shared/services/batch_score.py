"""The batch backfill's score phase: every candidate pair of the store scored in bulk by a Splink engine
(``shared.ports.pair_scoring``), and clustered at the auto-merge threshold.

The feature table is the incremental path's own: each Patient's index record (``member_record``) as a
linkage row, and the groups ``MatchingService`` places it in (its NIK group, its candidate blocks) as
the blocks Splink pairs records within. A demographic block takes its first ``block_member_cap``
patients in the source's order, as the live index does. The model is the district's current one (the
JSON the functions evaluate, as the model store loads it): Splink's settings are built from it, nothing
is retrained.

Deciding stays the production ``MatchingService``, in parts that share no group (``batch_parts``): the
scores only answer the model's questions first, so the decisions are the incremental path's. Two records
Splink pairs share a block, so a pair never spans two parts: each part gets its own pairs
(``scores_by_part``). The clusters are Splink's view of the same pairs, before the deterministic rules:
``clusters_split`` counts, per part, the ones the rules did not merge whole (a veto, a household, a twin,
a rule that sends the pair to review); a cluster lies in one part too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import Settings
from shared.domain.group import Group
from shared.domain.patient import member_record, patient_facts
from shared.linkage.comparisons import linkage_row
from shared.linkage.scores import ScoreTable
from shared.ports.pair_scoring import PairScoring, Scored
from shared.services.matching import MatchingService


def feature_pages(pages: Iterable[list[dict]], matching: MatchingService, settings: Settings,
                  on_page: Callable[[int], None] | None = None) -> Iterator[list[dict]]:
    """The feature table, one page of rows at a time: the engine turns each into its columnar form as it
    comes (``PairScoring.score``), so the store's rows are never all held as Python objects (~4 KB a
    patient: gigabytes at a million)."""
    block_sizes: Counter = Counter()
    for page in pages:
        rows = []
        for resource in page:
            facts = patient_facts(resource, settings)
            row = linkage_row(resource["id"], member_record(facts))
            blocks = []
            for group in matching.groups_of(resource, facts):
                if group.startswith("demographic_index/"):
                    if block_sizes[group] >= settings.block_member_cap:
                        continue
                    block_sizes[group] += 1
                blocks.append(group)
            row["blocks"] = blocks
            rows.append(row)
        yield rows
        if on_page:
            on_page(len(page))


def feature_rows(pages: Iterable[list[dict]], matching: MatchingService, settings: Settings) -> list[dict]:
    """Every row of ``feature_pages`` in one list (a small store's, to look at)."""
    return [row for rows in feature_pages(pages, matching, settings) for row in rows]


def score_store(pages: Iterable[list[dict]], matching: MatchingService, settings: Settings, engine: PairScoring,
                out: Path, on_page: Callable[[int], None] | None = None) -> Scored:
    """Scores with ``matching``'s model (the district's current one)."""
    return engine.score(feature_pages(pages, matching, settings, on_page), matching.model.artefact, out,
                        settings.model_merge_weight)


def scores_table(engine: PairScoring, out: Path) -> ScoreTable:
    table = ScoreTable()
    for row in engine.rows(out):
        table.add_record(row["unique_id"], row)
    for pair in engine.pairs(out):
        table.add_pair(*pair)
    return table


@dataclass
class PartScores:
    """One part's share of the scores, in files (``PairScoring.split_by_part``): its records' rows, the
    pairs among them, its Splink clusters. Travels to the part's deciding worker as a folder and a number,
    read there: the parent never holds every pair (at a million patients, millions of them)."""
    read: Callable[[Path, int], tuple[list[dict], list[tuple], dict[str, str]]]
    folder: Path
    number: int
    clusters: dict[str, str] = field(default_factory=dict)

    def table(self) -> ScoreTable:
        rows, pairs, self.clusters = self.read(self.folder, self.number)
        table = ScoreTable()
        for row in rows:
            table.add_record(row["unique_id"], row)
        for pair in pairs:
            table.add_pair(*pair)
        return table

    def outcome(self, table: ScoreTable, groups: Iterable[Group]) -> Counter:
        """What the part's deciding asked the table, and how the decisions treated its clusters."""
        return Counter({"scored_by_engine": table.hits, "scored_by_model": table.misses,
                        **clusters_split(self.clusters, groups)})


def scores_by_part(engine: PairScoring, out: Path, part_of: Mapping[str, int]) -> dict[int, PartScores]:
    """The scores in ``out`` split by the part each patient id is decided in (``part_of``), on disk in
    ``out/by_part`` (a pair across two parts is left out: only the pair screen's no-match pairs are, and
    nobody asks their score)."""
    folder = out / "by_part"
    engine.split_by_part(out, part_of, folder)
    held = {int(path.name.removeprefix("part=")) for kind in ("pairs", "clusters") if (folder / kind).is_dir()
            for path in (folder / kind).iterdir()}
    return {number: PartScores(engine.part_reader, folder, number) for number in sorted(held)}


def clusters_split(clusters: Mapping[str, str], groups: Iterable[Group]) -> dict[str, int]:
    """How the decisions treated Splink's clusters: kept whole (one merge request holds all its records),
    or split by the rules (its records end in several requests or none)."""
    person: dict[str, str] = {}
    for group in groups:
        if group.request:
            for pid in (group.request.master, *group.request.duplicates):
                person.setdefault(pid, group.request.id)
    members: dict[str, set[str]] = {}
    for pid, cluster in clusters.items():
        members.setdefault(cluster, set()).add(person.get(pid, f"alone:{pid}"))
    split = {c for c, persons in members.items() if len(persons) > 1}
    return {"clusters": len(members), "kept_whole": len(members) - len(split), "split_by_rules": len(split),
            "records_in_split_clusters": sum(1 for c in clusters.values() if c in split)}
