"""Splink over the matching model: the settings built from the model's JSON (no retraining), DuckDB in
process or Spark (``pyspark``: a local master, a standalone cluster, Dataproc), for the batch backfill's
score phase (``shared.ports.pair_scoring``) and the trainer (``tools/linkage/train.py``).

Both engines run the same settings: the comparisons' SQL (``shared.linkage.comparisons``: DuckDB's
dialect, ``spark_sql`` where Spark's list functions differ), ``shared.names.name_similarity`` registered
as a SQL function, the artefact's m/u per level, its prior and its name-frequency table. Pairs are the
records that share a block (the NIK group and candidate blocks the incremental path reads: ``blocks``),
found by exploding the blocks. Only the ops side imports this (Splink, DuckDB, pyarrow, pyspark are
requirements-dev.txt); the functions evaluate the same JSON in pure Python.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from shared.adapters import score_files
from shared.linkage.comparisons import COMPARISONS, HOUSEHOLD_COMPARISONS, linkage_row
from shared.names import name_similarity
from shared.ports.pair_scoring import EngineUnavailable, PairScoring, Scored

ROWS_SCHEMA = pa.schema([("unique_id", pa.string()), ("name", pa.string()), ("birth_date", pa.string()),
                         ("gender", pa.string()), ("nik_token", pa.string()), ("nik_masks", pa.list_(pa.string())),
                         ("region", pa.string()), ("phones", pa.list_(pa.string()))])
BLOCKED_SCHEMA = ROWS_SCHEMA.append(pa.field("blocks", pa.list_(pa.string())))
_TF_SCHEMA = pa.schema([("name", pa.string()), ("tf_name", pa.float64())])
ENGINES = ("duckdb", "spark")
# The master URLs Spark takes (checked before a JVM starts: its own refusal is a Java stack trace).
SPARK_MASTER = re.compile(r"^(local(\[(\d+|\*)(,\d+)?\])?|spark://[\w.-]+:\d+(,[\w.-]+:\d+)*|yarn|k8s://\S+)$")


def rows_table(records: Iterable[tuple[str, Mapping]]) -> pa.Table:
    return pa.Table.from_pylist([linkage_row(pid, record) for pid, record in records], schema=ROWS_SCHEMA)


def _name_similarity_arrow(left: pa.Array, right: pa.Array) -> pa.Array:
    """``name_similarity`` over DuckDB's vectors (an arrow UDF: needs no numpy)."""
    return pa.array([None if a is None or b is None else float(name_similarity(a, b))
                     for a, b in zip(left.to_pylist(), right.to_pylist(), strict=True)], type=pa.float64())


def _name_similarity_or_null(a: str | None, b: str | None) -> float | None:
    return None if a is None or b is None else float(name_similarity(a, b))


def connection(memory_limit: str = score_files.MEMORY_LIMIT, temp_directory: Path | None = None
               ) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with ``name_similarity`` and a memory bound: DuckDB's own default is 80 % of the
    machine's memory; past ``memory_limit`` it spills to ``temp_directory``."""
    con = duckdb.connect()
    score_files.bound(con, memory_limit, temp_directory)
    con.create_function("name_similarity", _name_similarity_arrow, ["VARCHAR", "VARCHAR"], "DOUBLE",
                        type="arrow", side_effects=False)
    return con


def settings_dict(artefact: dict | None = None, *, dialect: str = "duckdb", blocking: list | None = None) -> dict:
    """Splink settings of the comparisons; with ``artefact``, its trained m/u and prior (scoring as trained)."""
    trained = {c["name"]: c["levels"] for c in artefact["comparisons"]} if artefact else None
    comparisons = []
    for comparison in COMPARISONS:
        levels = []
        for index, level in enumerate(comparison.levels):
            sql = level.spark_sql if dialect == "spark" and level.spark_sql else level.sql
            entry: dict = {"sql_condition": sql, "label_for_charts": level.label}
            if level.is_null:
                entry["is_null_level"] = True
            if level.tf_column:
                entry["tf_adjustment_column"] = level.tf_column
                entry["tf_adjustment_weight"] = 1.0
            if trained is not None and not level.is_null:
                entry["m_probability"] = trained[comparison.name][index]["m"]
                entry["u_probability"] = trained[comparison.name][index]["u"]
            levels.append(entry)
        comparisons.append({"output_column_name": comparison.name, "comparison_levels": levels})
    prior = 0.0001 if artefact is None else 1.0 / (1.0 + 2.0 ** -artefact["prior_weight"])
    if blocking is None:
        blocking = [block_on("nik_token"), block_on("birth_date", "gender"), block_on("name"),
                    "list_has_any(l.phones, r.phones)"]
    return {"link_type": "dedupe_only", "unique_id_column_name": "unique_id",
            "probability_two_random_records_match": prior, "comparisons": comparisons,
            "blocking_rules_to_generate_predictions": blocking,
            "retain_intermediate_calculation_columns": True, "additional_columns_to_retain": []}


def _packed_levels_sql() -> str:
    """Each comparison's level index (the order of ``comparisons``; Splink's gamma counts down from the
    first non-null level, -1 for null) packed as one integer, 3 bits per comparison."""
    terms = []
    for position, comparison in enumerate(COMPARISONS):
        shift = 8 ** (len(COMPARISONS) - 1 - position)
        last = len(comparison.levels) - 1
        gamma = f"gamma_{comparison.name}"
        terms.append(f"(CASE WHEN {gamma} = -1 THEN 0 ELSE {last} - {gamma} END) * {shift}")
    return " + ".join(terms)


def _identity_weight_sql() -> str:
    """The match weight without household evidence (a shared phone): what an automatic merge needs."""
    return "match_weight" + "".join(f" - mw_{name}" for name in HOUSEHOLD_COMPARISONS)


class SplinkScoring(PairScoring):
    """``engine`` duckdb (in process) or spark (``spark_master``: ``local[2]``, ``spark://host:7077``,
    ``yarn``; on Dataproc Serverless the batch's own session is used, no master is given)."""

    def __init__(self, engine: str = "duckdb", spark_master: str | None = None, *,
                 memory_limit: str = score_files.MEMORY_LIMIT, temp_directory: str | None = None):
        if engine not in ENGINES:
            raise EngineUnavailable(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
        self.engine = engine
        self.spark_master = spark_master
        # DuckDB's bound (settings ``duckdb_memory_limit``, ``duckdb_temp_directory``: unset, under the
        # scores' folder): the score phase and the parent's cut by part.
        self.memory_limit = memory_limit
        self.temp_directory = temp_directory
        self._spark = None

    # --- the engines -----------------------------------------------------------------------------
    def _db_api(self, out: Path):
        if self.engine == "duckdb":
            return DuckDBAPI(connection=connection(self.memory_limit, self._spill(out)))
        from splink import SparkAPI

        spark = self.spark_session()
        if spark.sparkContext.getCheckpointDir() is None:
            # Splink breaks long lineages by writing parquet there: on a cluster, storage every executor
            # reaches (gs://..., DEDUP_SPARK_CHECKPOINT_DIR); locally, the work directory.
            spark.sparkContext.setCheckpointDir(os.environ.get("DEDUP_SPARK_CHECKPOINT_DIR")
                                                or str(out / "spark-checkpoints"))
        return SparkAPI(spark_session=spark, register_udfs_automatically=False,
                        num_partitions_on_repartition=int(spark.conf.get("spark.sql.shuffle.partitions")))

    def close(self) -> None:
        """Stops the Spark session this engine started (its JVM holds memory the deciding needs)."""
        if self._spark is not None:
            self._spark.stop()
            self._spark = None

    def spark_session(self):
        if self._spark is None:
            self._spark = spark_session(self.spark_master)
        return self._spark

    # --- scoring ---------------------------------------------------------------------------------
    def score(self, pages: Iterable[list[dict]], artefact: dict, out: Path, cluster_weight: float) -> Scored:
        scored, started = Scored(), time.monotonic()
        db = self._db_api(out)
        # Columnar page by page: a page's Python rows are freed once converted.
        arrow = pa.Table.from_batches([pa.RecordBatch.from_pylist(rows, schema=BLOCKED_SCHEMA)
                                       for rows in pages if rows], schema=BLOCKED_SCHEMA)
        out.mkdir(parents=True, exist_ok=True)
        pq.write_table(arrow.drop_columns(["blocks"]), out / "rows.parquet")
        table = db.register(arrow, table_name="patients")
        blocking = [block_on("blocks", arrays_to_explode=["blocks"])]
        linker = Linker(table, SettingsCreator.from_path_or_dict(
            settings_dict(artefact, dialect=self.engine, blocking=blocking)), log_level=logging.WARNING)
        tf_rows = [{"name": name, "tf_name": freq} for name, freq in artefact["term_frequencies"]["name"].items()]
        linker.table_management.register_term_frequency_lookup(
            db.register(pa.Table.from_pylist(tf_rows, schema=_TF_SCHEMA), table_name="name_frequencies"), "name")
        predicted = linker.inference.predict()
        pairs = predicted.query_sql(
            f"SELECT unique_id_l, unique_id_r, CAST({_packed_levels_sql()} AS BIGINT) AS levels, match_weight, "
            f"match_probability, mw_tf_adj_name AS tf_weight FROM {{this}}")
        # To the driver: deciding reads every pair in one process anyway, and a local file is what a
        # resumed run finds whatever the engine (a cluster's executors share no disk with the driver).
        scored.pairs = _save(pairs, out / "pairs.parquet")
        scored.seconds["predict"] = time.monotonic() - started

        began = time.monotonic()
        identity = predicted.query_sql(
            f"SELECT unique_id_l, unique_id_r, {_identity_weight_sql()} AS match_weight, "
            f"1.0 / (1.0 + power(2.0, -({_identity_weight_sql()}))) AS match_probability FROM {{this}}")
        clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
            identity, threshold_match_weight=artefact["prior_weight"] + cluster_weight)
        clusters = clustered.query_sql(
            "SELECT unique_id, cluster_id FROM {this} WHERE cluster_id IN "
            "(SELECT cluster_id FROM {this} GROUP BY cluster_id HAVING count(*) > 1)")
        _save(clusters, out / "clusters.parquet")
        sizes = {}
        for cluster_size in _cluster_sizes(self.clusters(out)):
            sizes[cluster_size] = sizes.get(cluster_size, 0) + 1
        scored.clusters, scored.cluster_sizes = sum(sizes.values()), dict(sorted(sizes.items()))
        scored.seconds["cluster"] = time.monotonic() - began
        return scored

    def rows(self, out: Path) -> Iterator[dict]:
        for batch in pq.ParquetFile(out / "rows.parquet").iter_batches(batch_size=65536):
            yield from batch.to_pylist()

    def pairs(self, out: Path) -> Iterator[tuple[str, str, int, float, float, float]]:
        for batch in pq.ParquetFile(out / "pairs.parquet").iter_batches(batch_size=65536):
            columns = [batch.column(name).to_pylist() for name in
                       ("unique_id_l", "unique_id_r", "levels", "match_weight", "match_probability", "tf_weight")]
            yield from zip(*columns)

    def clusters(self, out: Path) -> dict[str, str]:
        table = pq.read_table(out / "clusters.parquet", columns=["unique_id", "cluster_id"])
        return dict(zip(table.column("unique_id").to_pylist(), map(str, table.column("cluster_id").to_pylist())))

    def _spill(self, out: Path) -> Path:
        return Path(self.temp_directory) if self.temp_directory else out / "duckdb-spill"

    def split_by_part(self, out: Path, part_of: Mapping[str, int], into: Path) -> None:
        # The files are local whatever the engine.
        score_files.split_by_part(out, part_of, into, self.memory_limit, self._spill(into))

    @property
    def part_reader(self):
        return score_files.read_part


def _save(frame, path: Path) -> int:
    table = frame.as_pyarrow_table()
    partial = path.with_suffix(".partial")
    pq.write_table(table, partial)
    os.replace(partial, path)
    return table.num_rows


def _cluster_sizes(clusters: dict[str, str]) -> Iterator[int]:
    counts: dict[str, int] = {}
    for cluster in clusters.values():
        counts[cluster] = counts.get(cluster, 0) + 1
    return iter(counts.values())


def spark_session(master: str | None):
    """A Spark session for Splink, with ``name_similarity`` registered. The Python workers run this
    interpreter with this checkout's code on their path (a cluster gets the code as the batch's files)."""
    if master is not None and not SPARK_MASTER.match(master):
        raise EngineUnavailable(f"--spark-master {master!r} is not a Spark master URL: local[N], spark://host:port, "
                                f"yarn or k8s://...")
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise EngineUnavailable("--engine spark needs Java 17 (java on PATH or JAVA_HOME): none found")
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise EngineUnavailable("--engine spark needs pyspark: pip install -r requirements-dev.txt") from error
    root = str(Path(__file__).resolve().parents[2])
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    builder = SparkSession.builder.appName("dedup-backfill-scoring").config("spark.ui.showConsoleProgress", "false")
    if master:
        builder = builder.master(master)
    if master and master.startswith("local"):
        # Spark's default of 200 partitions per shuffle costs a task each: seconds on one machine; its 1 GB
        # heap (driver and executors are one JVM here) does not hold 100,000 patients' pairs. A cluster's
        # session (spark-submit, Dataproc) keeps its own settings.
        builder = (builder.config("spark.sql.shuffle.partitions", "4").config("spark.ui.enabled", "false")
                   .config("spark.driver.memory", os.environ.get("DEDUP_SPARK_DRIVER_MEMORY", "4g")))
    try:
        spark = builder.getOrCreate()
    except Exception as error:  # the JVM's own message may name the master URL, never patient data
        raise EngineUnavailable(f"Spark did not start with master {master!r}: "
                                f"{type(error).__name__}: {str(error).splitlines()[0][:200]}") from error
    spark.sparkContext.setLogLevel("ERROR")
    spark.udf.register("name_similarity", _name_similarity_or_null, "double")
    return spark
