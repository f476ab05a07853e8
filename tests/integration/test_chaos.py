"""The chaos run, small (tools/runtime/chaos.py; the full run is ``python -m tools.runtime.chaos --merges
300``, figures in the README), and the local pipeline's restart it depends on."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tools.runtime.chaos import FAULTS, KILLED_STEPS, run_chaos
from tools.runtime.pipeline import LocalPipeline

pytestmark = pytest.mark.fresh_fhir


def test_a_function_restarted_from_a_thread_that_ends_keeps_running(settings, stack, tmp_path):
    """A process gets SIGTERM when the thread that launched it ends (tools.runtime.stack.launch): the
    chaos killer's thread restarted functions, and they died with it when the run stopped killing,
    so the pipeline stopped delivering and the run never drained."""
    env = {**stack.env, "DEDUP_PROJECT_ID": settings.project_id, "DEDUP_FHIR_BASE_URL": settings.fhir_base_url}
    with LocalPipeline(settings, env, tmp_path, threads_per_function=1, register_fhir_subscription=False) as pipeline:
        killer = threading.Thread(target=pipeline.kill_and_restart, args=("reconcile",))
        killer.start()
        killer.join(timeout=120)
        restarted = pipeline.functions["reconcile"]
        time.sleep(2)   # the parent-death signal is immediate; give the process time to act on it
        assert restarted.process.alive(), restarted.process.log_tail()
        with socket.create_connection(("127.0.0.1", restarted.port), timeout=5):
            pass


def test_a_small_chaos_run_keeps_every_invariant(stack, fhir_base_url, tmp_path):
    result = run_chaos(4, seed=3, kills_per_step=1, stuck_after_seconds=5, timeout=600, stack=stack,
                       fhir_base_url=fhir_base_url, log_dir=tmp_path)
    assert result.counts, "the run ended before counting"
    assert {name: count for name, count in result.counts.items() if count} == {}, result.problems
    assert all(result.kills[step] >= 1 for step in KILLED_STEPS)
    assert all(result.faults[kind] >= 1 for kind in FAULTS)
    assert result.merges + result.unmerges + result.failed_jobs >= 4 and result.unmerges == 1
