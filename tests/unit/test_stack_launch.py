"""The local stack's children die with the thread that started them (tools.runtime.stack.launch arms
the parent-death signal with setpriv, so no Python runs in the child between fork and exec)."""

from __future__ import annotations

import threading
import time

from tools.runtime import stack


def _launch_from_thread(tmp_path, name: str) -> stack.ManagedProcess:
    launched: list[stack.ManagedProcess] = []

    def start_then_end() -> None:
        launched.append(stack.launch(name, ["sleep", "60"], 0, tmp_path / f"{name}.log"))
        time.sleep(1)   # setpriv arms the signal just after exec; a thread lives longer than that

    thread = threading.Thread(target=start_then_end)
    thread.start()
    thread.join()
    return launched[0]


def _dies_within(proc: stack.ManagedProcess, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not proc.alive():
            return True
        time.sleep(0.05)
    return False


def test_a_child_dies_when_the_thread_that_started_it_ends(tmp_path):
    proc = _launch_from_thread(tmp_path, "short-lived-parent")
    try:
        assert _dies_within(proc, 5)
    finally:
        proc.stop()


def test_a_child_started_by_a_living_thread_keeps_running(tmp_path):
    proc = stack.launch("long-lived-parent", ["sleep", "60"], 0, tmp_path / "long.log")
    try:
        assert not _dies_within(proc, 1)
    finally:
        proc.stop()
