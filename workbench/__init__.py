"""The review workbench: uncertain matches decided in a browser, merges, and the report as a dashboard.

Server-rendered (Flask + Jinja2), a little plain JavaScript served from ``static/`` (keyboard
shortcuts), no front-end build. Every decision goes through ``shared.services.review.ReviewService``,
the same service as ``ops review``. ``create_app(settings, services)`` builds the app (``app.py``).
"""
