"""Cloud Functions entry points. Google Cloud loads this file; each deployed function names one of
these callables as its entry point (see docs/DESIGN.md, "Functions"). Each lives in its own module of
the `functions` package; the deployed source holds this file at its root beside `functions/` and
`shared/`, so the same package imports work there and in the repo."""

from functions.relay import subscription_relay  # noqa: F401
from functions.merge import merge_fanout, merge_finaliser, merge_worker  # noqa: F401
