"""Scores computed in bulk (Splink's ``predict``, ``shared/adapters/splink_scoring.py``), looked up by the
model before it evaluates a pair itself. Pure; no Splink here.

A pair's score is a function of its two linkage rows (``comparisons.linkage_row``) alone, so the table is
keyed by the rows' contents, not by patient ids: a lookup finds a pair only when both records are exactly
the ones the engine scored (a member indexed from an older version of a record misses, and the
evaluator scores it). What a hit gives the model is the level each comparison reached (Splink's gamma):
the model weighs them itself (``MatchModel.score_levels``), so the evidence a decision stores is the
evaluator's, bit for bit; the engine's weight and probability serve its clustering.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

from shared.linkage.comparisons import COMPARISONS

# Every column a comparison reads: a pair's levels depend on these and nothing else.
ROW_COLUMNS = tuple(dict.fromkeys(column for comparison in COMPARISONS for column in comparison.columns))
_LEVELS = [len(c.levels) for c in COMPARISONS]


def row_key(row: Mapping) -> tuple:
    """A linkage row's contents, hashable (its ``unique_id`` left out)."""
    return tuple(tuple(v) if isinstance(v, list | tuple) else v for v in (row[c] for c in ROW_COLUMNS))


def pack_levels(levels: list[int]) -> int:
    """The level index reached in each comparison, as one int (each index is below 8)."""
    code = 0
    for index in levels:
        code = code * 8 + index
    return code


def unpack_levels(code: int) -> list[int]:
    out = []
    for _ in _LEVELS:
        out.append(code % 8)
        code //= 8
    return out[::-1]


class PairScores(ABC):
    """What the model asks first: a score already computed for these two rows, or None."""

    @abstractmethod
    def get(self, left: Mapping, right: Mapping) -> tuple[int, float, float, float] | None:
        """(packed levels, match weight, match probability, exact-name tf adjustment) of the pair."""


class ScoreTable(PairScores):
    """The engine's pairs in memory. ``add_record`` first (patient id -> its row), then ``add_pair``."""

    def __init__(self) -> None:
        self._key_of: dict[str, int] = {}        # patient id -> row number
        self._rows: dict[tuple, int] = {}        # row contents -> row number
        self._pairs: dict[tuple[int, int], tuple[int, float, float, float]] = {}
        self.hits = 0
        self.misses = 0

    def add_record(self, patient_id: str, row: Mapping) -> None:
        self._key_of[patient_id] = self._rows.setdefault(row_key(row), len(self._rows))

    def add_pair(self, id_l: str, id_r: str, levels: int, match_weight: float, probability: float,
                 tf_weight: float) -> None:
        a, b = self._key_of[id_l], self._key_of[id_r]
        self._pairs[(a, b) if a <= b else (b, a)] = (levels, match_weight, probability, tf_weight)

    def __len__(self) -> int:
        return len(self._pairs)

    def get(self, left: Mapping, right: Mapping):
        a, b = self._rows.get(row_key(left)), self._rows.get(row_key(right))
        found = None if a is None or b is None else self._pairs.get((a, b) if a <= b else (b, a))
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found
