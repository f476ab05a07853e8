"""Cloud Functions entry points. Google Cloud loads this file; each deployed function names one of
these callables as its entry point (see docs/DESIGN.md, "Functions"). Each lives in its own module of
the `functions` package; the deployed source holds a copy of this file at its root beside the
`functions/` and `shared/` packages (infra/package_source.py), so these imports work there as in the
repo (run from the repo root)."""

from functions.late_references import fix_late_references  # noqa: F401
from functions.matching import force_merge, match_patient  # noqa: F401
from functions.merge import merge_fanout, merge_finaliser, merge_worker  # noqa: F401
from functions.ops import reconcile_late_references, sweep_stuck_work  # noqa: F401
from functions.patient_merge import patient_merge  # noqa: F401
from functions.relay import subscription_relay  # noqa: F401
