"""Train the matching model with Splink 5 on DuckDB and export the artefact ``shared.linkage.model`` reads.

The comparisons are ``shared.linkage.comparisons`` (one definition; here their SQL side, with
``shared.names.name_similarity`` registered in DuckDB). Training, on the district's own index records:
the prior from deterministic rules (same NIK token), u by random sampling, m by EM on two blockings (same
NIK token; same birth date) so each comparison is estimated on pairs that are not blocked on it, and
term frequencies of the normalised name. ``predict_pairs`` scores pairs in batch with Splink's ``predict``
(the test comparing batch and incremental uses it).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from shared.adapters.splink_scoring import connection, rows_table, settings_dict
from shared.clock import now_iso
from shared.linkage.model import FORMAT, MatchModel

# Names kept in the artefact's frequency table (the most frequent ones: where the adjustment matters and
# is negative; a rarer exact name simply gets the level's average weight, which is conservative).
TF_TABLE_SIZE = 200
U_MAX_PAIRS = 2e5
EM_MAX_PAIRS = 2e5   # blocked pairs per EM session: enough for m, keeps 100,000 patients under a minute


@dataclass
class Trained:
    model: MatchModel
    artefact: dict
    seconds: float


def train(records: list[tuple[str, Mapping]], version: str, *, seed: int = 1, note: str = "",
          on_step: Callable[[str], None] = lambda step: None) -> Trained:
    """``on_step`` is told each step as it starts (progress for the ops command)."""
    started = time.perf_counter()
    on_step("records into DuckDB")
    db = DuckDBAPI(connection=connection())
    table = db.register(rows_table(records), table_name="records")
    linker = Linker(table, SettingsCreator.from_path_or_dict(settings_dict()), log_level=logging.WARNING)
    timings = {}
    on_step("prior (same-NIK pairs)")
    linker.training.estimate_probability_two_random_records_match([block_on("nik_token")], recall=0.7)
    timings["prior"] = time.perf_counter() - started
    on_step("u (random pairs)")
    linker.training.estimate_u_using_random_sampling(max_pairs=U_MAX_PAIRS, seed=seed)
    timings["u"] = time.perf_counter() - started
    on_step("m by EM (same NIK)")
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("nik_token"),
                                                                       max_pairs=EM_MAX_PAIRS)
    timings["em_nik"] = time.perf_counter() - started
    on_step("m by EM (same birth date)")
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"),
                                                                       max_pairs=EM_MAX_PAIRS)
    timings["em_birth_date"] = time.perf_counter() - started
    on_step("name frequencies")
    tf = linker.table_management.compute_tf_table("name").as_record_list()
    tf = sorted(tf, key=lambda r: (-r["tf_name"], r["name"]))[:TF_TABLE_SIZE]
    artefact = export(linker, version, {r["name"]: r["tf_name"] for r in tf if r["name"]},
                      {"patients": len(records), "trained_at": now_iso(), "seed": seed, "note": note,
                       "seconds": {k: round(v, 1) for k, v in timings.items()}})
    return Trained(MatchModel.from_json(json.dumps(artefact)), artefact, time.perf_counter() - started)


def export(linker: Linker, version: str, name_tf: dict[str, float], trained_on: dict) -> dict:
    settings = linker._settings_obj
    prior = settings._probability_two_random_records_match
    comparisons, tf_levels = [], {}
    for comparison in settings.comparisons:
        levels = []
        for index, level in enumerate(comparison.comparison_levels):
            weight = 0.0 if level.is_null_level else level._match_weight
            levels.append({"label": level.label_for_charts, "match_weight": weight if weight is not None else 0.0,
                           "m": None if level.is_null_level else level.m_probability,
                           "u": None if level.is_null_level else level.u_probability})
            if not level.is_null_level and level._has_tf_adjustments:
                tf_levels[comparison.output_column_name] = {
                    "level": index, "column": level._tf_adjustment_input_column_name,
                    "u": level._u_probability_corresponding_to_exact_match(comparison.comparison_levels),
                    "weight": level._tf_adjustment_weight, "min": level._tf_minimum_u_value}
        comparisons.append({"name": comparison.output_column_name, "levels": levels})
    return {"format": FORMAT, "version": version, "prior_weight": math.log2(prior / (1 - prior)),
            "comparisons": comparisons, "tf_levels": tf_levels, "term_frequencies": {"name": name_tf},
            "trained_on": trained_on}


def predict_pairs(artefact: dict, records: list[tuple[str, Mapping]]) -> dict[tuple[str, str], float]:
    """Splink's batch ``predict`` with the artefact's parameters and name-frequency table: pair -> probability."""
    db = DuckDBAPI(connection=connection())
    table = db.register(rows_table(records), table_name="records")
    linker = Linker(table, SettingsCreator.from_path_or_dict(settings_dict(artefact)), log_level=logging.WARNING)
    tf_rows = [{"name": name, "tf_name": freq} for name, freq in artefact["term_frequencies"]["name"].items()]
    tf_table = db.register(pa.Table.from_pylist(tf_rows, schema=pa.schema([("name", pa.string()),
                                                                           ("tf_name", pa.float64())])))
    linker.table_management.register_term_frequency_lookup(tf_table, "name")
    out = {}
    for row in linker.inference.predict().as_record_list():
        out[tuple(sorted((row["unique_id_l"], row["unique_id_r"])))] = row["match_probability"]
    return out
