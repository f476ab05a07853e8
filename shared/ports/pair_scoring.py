"""Port: scoring a whole store's candidate pairs in bulk with the matching model, and clustering them.

The batch backfill's "score" phase: Splink's ``predict`` on DuckDB in process, or on Spark beyond one
machine (``shared/adapters/splink_scoring.py``). Scores and clusters go to files in the run's work
directory (the phase's checkpoint); the decide phase reads the scores back into a
``shared.linkage.scores.ScoreTable`` the model asks first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path


class EngineUnavailable(RuntimeError):
    """The engine cannot start here (no Java, a bad Spark master URL, Splink not installed): one line,
    no patient data."""


@dataclass
class Scored:
    pairs: int = 0
    clusters: int = 0                                      # clusters of two records or more
    cluster_sizes: dict[int, int] = field(default_factory=dict)   # size -> clusters of that size
    seconds: dict[str, float] = field(default_factory=dict)


class PairScoring(ABC):
    engine: str

    @abstractmethod
    def score(self, pages: Iterable[list[dict]], artefact: dict, out: Path, cluster_weight: float) -> Scored:
        """``pages``: lists of rows, one linkage row per patient (``comparisons.linkage_row``) plus
        ``blocks``, the groups it is compared in, taken in one page at a time; ``artefact``: the model's
        JSON; pairs scored in the same blocks are written to ``out`` with their levels, weight and
        probability, and the clusters of pairs whose identity weight (evidence without household
        comparisons) reaches ``cluster_weight``."""

    @abstractmethod
    def close(self) -> None:
        """Frees what the engine holds (a Spark session) once the scores are saved."""

    @abstractmethod
    def rows(self, out: Path) -> Iterator[dict]:
        """The rows ``score`` was given (without ``blocks``), as it saved them."""

    @abstractmethod
    def pairs(self, out: Path) -> Iterator[tuple[str, str, int, float, float, float]]:
        """The scored pairs: id_l, id_r, packed levels, match weight, match probability, name tf weight."""

    @abstractmethod
    def clusters(self, out: Path) -> dict[str, str]:
        """Patient id -> cluster id, for the records in clusters of two or more."""

    @abstractmethod
    def split_by_part(self, out: Path, part_of: Mapping[str, int], into: Path) -> None:
        """The scores in ``out`` cut by the part each patient id is decided in, into files under ``into``
        (the parent never holds every pair): per part, the pairs whose two records it decides, those
        records' rows, its records' clusters."""

    @property
    @abstractmethod
    def part_reader(self) -> Callable[[Path, int], tuple[list[dict], list[tuple], dict[str, str]]]:
        """A function (picklable: a deciding worker calls it) reading one part's rows, pairs and clusters
        back from ``split_by_part``'s folder."""
