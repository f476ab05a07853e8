"""Cloud Functions entry points. Google Cloud loads this file; each deployed function names one of
these callables as its entry point (see docs/DESIGN.md, "Functions"). Each lives in its own module."""
