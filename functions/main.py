"""Cloud Functions entry points. Google Cloud loads this file; each deployed function names one of
these callables as its entry point (see docs/DESIGN.md, "Functions"). Each lives in its own module of
the `functions` package; the deployed source holds this file at its root beside `functions/` and
`shared/`, so the same package imports work there and in the repo."""

import importlib.util
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("functions") is None:
    # Loaded with this directory as the source root (Cloud Functions deploying functions/): make the
    # directory importable as the ``functions`` package, and ``shared/`` beside it importable too.
    if importlib.util.find_spec("shared") is None and (_HERE.parent / "shared").is_dir():
        sys.path.append(str(_HERE.parent))
    _spec = importlib.util.spec_from_file_location("functions", _HERE / "__init__.py",
                                                   submodule_search_locations=[str(_HERE)])
    sys.modules["functions"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["functions"])

from functions.matching import force_merge, match_patient  # noqa: E402, F401
from functions.relay import subscription_relay  # noqa: E402, F401
from functions.merge import merge_fanout, merge_finaliser, merge_worker  # noqa: E402, F401
