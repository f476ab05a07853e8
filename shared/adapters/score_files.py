"""The score phase's files cut by part, so that no process holds every scored pair: the parent writes
each part's share of ``rows.parquet``, ``pairs.parquet`` and ``clusters.parquet`` (``SplinkScoring.score``)
with DuckDB, on disk and within a memory limit (``split_by_part``); each deciding worker reads its own
part's back (``read_part``). Only the ops side imports this (DuckDB and pyarrow are requirements-ops.txt);
the worker's side needs pyarrow alone.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# DuckDB spills what does not fit to the work directory: the split stays bounded whatever the store's size.
# The default of ``SplinkScoring``'s bound (``Settings.duckdb_memory_limit`` is what the backfill passes).
MEMORY_LIMIT = "1GB"


def bound(con, memory_limit: str, temp_directory: Path | None) -> None:
    """DuckDB's memory limit and spill directory on ``con`` (DuckDB's own default limit is 80 % of RAM)."""
    con.execute(f"SET memory_limit = '{memory_limit}'")
    if temp_directory is not None:
        temp_directory.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = '{temp_directory}'")
_PAIR_COLUMNS = ("unique_id_l", "unique_id_r", "levels", "match_weight", "match_probability", "tf_weight")


def split_by_part(out: Path, part_of: Mapping[str, int], into: Path, memory_limit: str = MEMORY_LIMIT,
                  temp_directory: Path | None = None) -> None:
    """``out``'s scores by the part each patient id is decided in (``part_of``), into
    ``into/<kind>/part=<n>/``: the pairs whose two records are decided in one part (records of one block
    are decided in two parts only when the pair screen found their pair no-match before any score:
    nobody asks that pair's score), the rows of the records those pairs hold, the clusters' records."""
    import duckdb

    shutil.rmtree(into, ignore_errors=True)
    into.mkdir(parents=True)
    con = duckdb.connect()
    try:
        bound(con, memory_limit, temp_directory or into / "spill")
        con.execute("SET preserve_insertion_order = false")
        ids = pa.table({"unique_id": pa.array(list(part_of), pa.string()),
                        "part": pa.array(list(part_of.values()), pa.int64())})
        con.register("part_of_arrow", ids)
        del ids
        # Step by step through tables of its own: joined straight on the Arrow view, with both records'
        # parts compared, DuckDB's plan ran out of its memory limit at 700,000 pairs.
        con.execute("CREATE TEMP TABLE part_of AS SELECT * FROM part_of_arrow")
        con.unregister("part_of_arrow")
        con.execute(f"""CREATE TEMP TABLE left_part AS SELECT l.part AS part, p.*
            FROM read_parquet('{out / 'pairs.parquet'}') p JOIN part_of l ON l.unique_id = p.unique_id_l""")
        con.execute("""CREATE TEMP TABLE kept AS SELECT x.* FROM left_part x
            JOIN part_of r ON r.unique_id = x.unique_id_r WHERE r.part = x.part""")
        con.execute("DROP TABLE left_part")
        con.execute(f"COPY kept TO '{into / 'pairs'}' (FORMAT parquet, PARTITION_BY (part))")
        con.execute(f"""COPY (SELECT k.part AS part, w.* FROM read_parquet('{out / 'rows.parquet'}') w
            JOIN part_of k USING (unique_id)
            WHERE unique_id IN (SELECT unique_id_l FROM kept UNION SELECT unique_id_r FROM kept))
            TO '{into / 'rows'}' (FORMAT parquet, PARTITION_BY (part))""")
        con.execute(f"""COPY (SELECT k.part AS part, c.unique_id, CAST(c.cluster_id AS VARCHAR) AS cluster_id
            FROM read_parquet('{out / 'clusters.parquet'}') c JOIN part_of k USING (unique_id))
            TO '{into / 'clusters'}' (FORMAT parquet, PARTITION_BY (part))""")
    finally:
        con.close()
    shutil.rmtree(into / "spill", ignore_errors=True)


def _part_table(into: Path, kind: str, number: int) -> pa.Table | None:
    files = sorted((into / kind / f"part={number}").glob("*.parquet"))
    return pa.concat_tables(pq.read_table(f) for f in files) if files else None


def read_part(into: Path, number: int) -> tuple[list[dict], list[tuple], dict[str, str]]:
    """One part's rows (without ``part``), pairs (``PairScoring.pairs``' tuples) and clusters."""
    rows = _part_table(into, "rows", number)
    pairs = _part_table(into, "pairs", number)
    clusters = _part_table(into, "clusters", number)
    return ([] if rows is None else rows.drop_columns([c for c in ("part",) if c in rows.column_names]).to_pylist(),
            [] if pairs is None else list(zip(*(pairs.column(c).to_pylist() for c in _PAIR_COLUMNS))),
            {} if clusters is None else dict(zip(clusters.column("unique_id").to_pylist(),
                                                 clusters.column("cluster_id").to_pylist())))
