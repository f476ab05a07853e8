"""The field report's cleanup as a benchmark (README "Performance").

    python -m tools.bench compare      # 68 NIKs: the report's v1 and v2, our pipeline, the floor
    python -m tools.bench scale        # backfill and incremental matching from 1k to 100k patients
    python -m tools.bench.fhir_client  # the FHIR client's throughput against the local server

Modules: ``dataset`` shapes the store (68 duplicate NIKs in a body of single patients) and clones it
per contender; ``contenders`` holds the report's two algorithms and our pipeline; ``floor`` the
writes-only lower bound; ``check`` the end-state check; ``scaling`` the backfill/incremental runs;
``emulators`` points this process at a stack's emulators; ``fhir_client`` the FHIR client's throughput.
"""
