"""How a newly trained model would decide the district's candidate pairs, against the current model.

Candidate pairs are what the product's candidate keys reach (``CANDIDATE_BLOCKING``, Splink blocking on
DuckDB): the same NIK, birth date + sex, NIKs one digit apart, the same name within a birth year, a
shared phone. The product's first-name + birth-year block is left out: on 100,000 generated patients it
alone adds 23 million pairs (97 % of the total; 11 minutes to score), almost all of them no-match under
any model. Splink computes each pair's comparison levels once; both models are then evaluated on the
distinct level vectors with ``MatchModel.score_levels`` (the evaluation the match function runs) and each
pair's band, merge / review / no-match (``Score.band`` with the district's thresholds), is counted
under each. The band is the model's, before the deterministic rules above it.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from shared.adapters.splink_scoring import connection, rows_table, settings_dict
from shared.linkage.model import MatchModel

BANDS = ("merge", "review", "no-match")
CANDIDATE_BLOCKING = (
    block_on("nik_token"),
    block_on("birth_date", "gender"),
    block_on("nik_masks", arrays_to_explode=["nik_masks"]),
    block_on("name", "substr(birth_date, 1, 4)"),
    block_on("phones", arrays_to_explode=["phones"]),
)


@dataclass
class BandComparison:
    current_version: str
    pairs: int = 0
    counts: Counter = field(default_factory=Counter)     # (current band, new band) -> pairs
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return sum(n for (before, after), n in self.counts.items() if before != after)

    def as_dict(self) -> dict:
        """What the stored version keeps (``trained_on.compared_with``)."""
        return {"model_version": self.current_version, "pairs": self.pairs, "changed": self.changed,
                "bands": {f"{before}->{after}": self.counts.get((before, after), 0)
                          for before in BANDS for after in BANDS},
                "seconds": round(self.seconds, 1)}


def level_vectors(artefact: dict, records: list[tuple[str, Mapping]]) -> tuple[Counter, list[str]]:
    """Candidate pairs counted by (level index per comparison..., exact name or None); the comparison names
    in vector order. The exact name is kept where the name level is term-frequency adjusted."""
    con = connection()
    db = DuckDBAPI(connection=con)
    table = db.register(rows_table(records), table_name="records")
    settings = settings_dict(artefact) | {"blocking_rules_to_generate_predictions": list(CANDIDATE_BLOCKING)}
    linker = Linker(table, SettingsCreator.from_path_or_dict(settings), log_level=logging.WARNING)
    predicted = linker.inference.predict()
    comparisons = linker._settings_obj.comparisons
    names = [c.output_column_name for c in comparisons]
    # Splink's gamma (-1 null, then counting up from the else level) -> the index in our level list.
    to_index = [{level.comparison_vector_value: i for i, level in enumerate(c.comparison_levels)} for c in comparisons]
    tf_gamma = {c.output_column_name: level.comparison_vector_value for c in comparisons
                for level in c.comparison_levels if not level.is_null_level and level._has_tf_adjustments}
    name_gamma = tf_gamma.get("name")
    tf_column = f"CASE WHEN gamma_name = {name_gamma} THEN name_l END" if name_gamma is not None else "NULL"
    rows = con.execute(f"SELECT {', '.join(f'gamma_{n}' for n in names)}, {tf_column} AS tf_value, count(*) "
                       f"FROM {predicted.physical_name} GROUP BY ALL").fetchall()
    vectors: Counter = Counter()
    for row in rows:
        levels = tuple(to_index[i][gamma] for i, gamma in enumerate(row[:len(names)]))
        vectors[(*levels, row[len(names)])] += row[-1]
    return vectors, names


def compare_bands(current: MatchModel, new_artefact: dict, records: list[tuple[str, Mapping]], *,
                  merge_weight: float, review_weight: float) -> BandComparison:
    started = time.perf_counter()
    new = MatchModel.from_json(json.dumps(new_artefact))
    vectors, names = level_vectors(new_artefact, records)
    result = BandComparison(current.version)
    for (*levels, tf_value), pairs in vectors.items():
        indices = dict(zip(names, levels))
        side = {"name": tf_value}
        before = current.score_levels(indices, side, side).band(merge_weight, review_weight)
        after = new.score_levels(indices, side, side).band(merge_weight, review_weight)
        result.counts[(before, after)] += pairs
        result.pairs += pairs
    result.seconds = time.perf_counter() - started
    return result
