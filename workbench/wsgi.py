"""The workbench as Cloud Run serves it: ``gunicorn workbench.wsgi:app`` (workbench/Dockerfile).
Settings come from ``DEDUP_*`` and ``DEDUP_WORKBENCH_*`` (infra/modules/workbench)."""

from __future__ import annotations

from shared.config import get_settings
from shared.logging import configure_logging
from workbench.app import create_app

configure_logging()
app = create_app(get_settings())
