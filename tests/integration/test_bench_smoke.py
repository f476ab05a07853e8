"""A tiny run of the performance benchmark (tools.bench): every contender — the field report's v1 and
v2, our pipeline through the emulators and functions, and the writes-only floor — on clones of one
store of 2 duplicate NIKs, no added latency. All must end in the same correct state."""

from __future__ import annotations

import time

import pytest

from tools.bench.__main__ import compare, summary_table

pytestmark = pytest.mark.timeout(180)


def test_every_contender_ends_in_the_same_correct_state(stack, tmp_path):
    began = time.monotonic()
    results = compare(tmp_path, niks=2, background=10, resources_per_patient=3.0, background_resources=1.0,
                      latency=0.0, jitter=0.0, v1_niks=2, threads=8,
                      contenders=["floor", "report-v2", "ours", "report-v1"], seed=3, stack_env=stack.env)
    entries = results["contenders"]
    assert set(entries) == {"floor", "report-v1", "report-v2", "ours"}
    for name, entry in entries.items():
        assert entry["state_ok"], (name, entry["problems"])
        assert entry["requests"] > 0, name
    # Same store modulo the master each one chose: identical resources, references to the NIK's patient.
    assert len({entry["signature"] for entry in entries.values()}) == 1
    # What the benchmark is about: the report's v1 makes more round trips per NIK than its v2.
    assert entries["report-v1"]["requests"] > entries["report-v2"]["requests"]
    # One job per NIK, plus a follow-up where force-merge's indexing matched members while the
    # first request already ran (they wait as pending, then merge in a second job).
    jobs = entries["ours"]["jobs"]
    assert set(jobs) == {"done"} and jobs["done"] >= 2, jobs
    assert entries["floor"]["failed_writes"] == 0
    assert summary_table(results).row_count == 4
    assert time.monotonic() - began < 120
