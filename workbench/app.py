"""The workbench's Flask app: ``create_app(settings, services)``.

Pages: the queue (filters, counts, pages), an item (records side by side, evidence, cluster, history,
decisions), merges (list, one job, unmerge), the dashboard. Every decision calls ``ReviewService``.
Security: identity from IAP (``auth.py``), CSRF tokens on every POST (Flask-WTF), ``no-store`` and a
strict Content-Security-Policy on every page, ids only in URLs and logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import Flask, abort, flash, g, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect

from shared.config import Settings
from shared.domain.audit import AuditAction, AuditEntry
from shared.domain.review import REVIEW_REASONS, QueueFilter, ReviewStatus
from shared.logging import get_logger
from shared.ports.audit import AuditLog
from shared.ports.merge_jobs import MergeJobsRepository
from shared.services.dashboard import build_dashboard
from shared.services.report import ReportSources
from shared.services.review import ReviewAlreadyDecided, ReviewItemNotFound, ReviewRefused, ReviewService, UndoRefused
from workbench import charts
from workbench.auth import IapVerifier, dev_sign_in_allowed, load_user, requires
from workbench.config import Role, WorkbenchConfig
from workbench.evidence import evidence_view
from workbench.i18n import LANGUAGES, MESSAGES, translate

log = get_logger(__name__)
HERE = Path(__file__).resolve().parent

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'")


@dataclass
class WorkbenchServices:
    """What the workbench uses, built by ``shared.bootstrap`` (or from fakes in tests)."""
    review: ReviewService
    report_sources: ReportSources
    jobs: MergeJobsRepository
    audit: AuditLog
    unmerge: Any            # job id -> shared.services.unmerge.UnmergeReport

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkbenchServices:
        from shared import bootstrap
        from shared.services.unmerge import unmerge

        return cls(review=bootstrap.review_service(settings), report_sources=bootstrap.report_sources(settings),
                   jobs=bootstrap.merge_jobs(settings), audit=bootstrap.audit_log(settings),
                   unmerge=lambda job_id: unmerge(job_id, bootstrap.merge_deps(settings)))


def create_app(settings: Settings, services: WorkbenchServices | None = None,
               config: WorkbenchConfig | None = None) -> Flask:
    config = config or WorkbenchConfig()
    services = services or WorkbenchServices.from_settings(settings)
    app = Flask(__name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))
    app.config.update(SECRET_KEY=config.session_key(), WORKBENCH=config, SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=config.mode == "production",
                      WTF_CSRF_TIME_LIMIT=None, MAX_CONTENT_LENGTH=64 * 1024)
    app.extensions["iap"] = IapVerifier(config)
    review = services.review

    @app.before_request
    def identify():
        load_user()
        g.language = session.get("lang") or config.default_language
        # No anonymous access: refused here, before anything else (CSRF included) looks at the request.
        open_endpoints = ("static", "language", "signin") if dev_sign_in_allowed(config) else ("static",)
        if g.user is None and request.endpoint not in open_endpoints:
            if dev_sign_in_allowed(config) and not g.get("identity"):
                return redirect(url_for("signin"))
            abort(403 if g.get("identity") else 401)

    CSRFProtect(app)   # after identify(): a request without an identity is refused as such (401) first

    @app.after_request
    def secure(response):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if request.endpoint != "static":   # every page may show patient data: never cached
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def helpers():
        language = g.get("language", config.default_language)
        return {"t": lambda key: translate(language, key), "user": g.get("user"), "Role": Role,
                "language": language, "dev_sign_in": dev_sign_in_allowed(config)}

    def error_page(code: int):
        return render_template("error.html", code=code), code

    for code in (400, 401, 403, 404):
        app.register_error_handler(code, lambda error, code=code: error_page(code))
    app.register_error_handler(CSRFError, lambda error: error_page(400))

    def note() -> str | None:
        return (request.form.get("note") or "").strip()[:1000] or None

    # --- sign-in (local stack only), language ----------------------------------------------------
    @app.route("/signin", methods=["GET", "POST"])
    def signin():
        if not dev_sign_in_allowed(config):
            abort(404)
        if request.method == "POST":
            email = (request.form.get("email") or "").strip().lower()
            if config.role_of(email) is None:
                abort(403)
            session.clear()
            session["dev_user"] = email
            return redirect(url_for("queue"))
        return render_template("signin.html", users=sorted(config.roles.items()))

    @app.post("/signout")
    def signout():
        session.pop("dev_user", None)
        return redirect(url_for("signin") if dev_sign_in_allowed(config) else url_for("queue"))

    @app.post("/language")
    def language():
        chosen = request.form.get("lang")
        if chosen in LANGUAGES:
            session["lang"] = chosen
        return redirect(request.form.get("back") if str(request.form.get("back", "")).startswith("/") else "/")

    # --- queue ----------------------------------------------------------------------------------
    def queue_filter() -> QueueFilter:
        age = request.args.get("age", type=int)
        return QueueFilter(reason=request.args.get("reason") or None, source=request.args.get("source") or None,
                           older_than_days=age if age and age > 0 else None)

    @app.get("/")
    @requires(Role.VIEWER)
    def home():
        return redirect(url_for("queue"))

    @app.get("/queue")
    @requires(Role.VIEWER)
    def queue():
        chosen = queue_filter()
        page = review.queue(chosen, after=request.args.get("after") or None, size=config.page_size)
        reasons, sources = list(REVIEW_REASONS), list(settings.source_priority)
        counts = review.queue_counts(reasons, sources)
        return render_template("queue.html", page=page, counts=counts, chosen=chosen, reasons=reasons,
                               sources=sources)

    def next_item(after_id: str | None = None) -> str | None:
        items = review.queue(QueueFilter(), size=2).items
        return next((i.id for i in items if i.id != after_id), None)

    # --- an item and its decisions ------------------------------------------------------------------
    def render_item(item_id: str, revealed: dict[str, str | None] | None = None):
        try:
            details = review.details(item_id)
        except ReviewItemNotFound:
            abort(404)
        undo = review.last_decision(g.user.email) if g.user.can(Role.REVIEWER) else None
        return render_template("item.html", d=details, evidence=evidence_view(details.item.evidence),
                               charts=charts, revealed=revealed or {}, undo=undo, pending=ReviewStatus.PENDING)

    @app.get("/items/<item_id>")
    @requires(Role.VIEWER)
    def item(item_id: str):
        return render_item(item_id)

    @app.get("/items/<item_id>/next")
    @requires(Role.VIEWER)
    def next_after(item_id: str):
        # Resolved on click, not while the item page renders: the queue query stays off that path.
        following = _after_in_queue(item_id) or next_item(item_id)
        return redirect(url_for("item", item_id=following) if following else url_for("queue"))

    @app.post("/items/<item_id>/reveal")
    @requires(Role.REVIEWER)
    def reveal(item_id: str):
        patient_id = request.form.get("patient_id") or ""
        try:
            nik = review.reveal_nik(item_id, patient_id, g.user.email)
        except ReviewItemNotFound:
            abort(404)
        return render_item(item_id, revealed={patient_id: nik})

    @app.post("/items/<item_id>/decide")
    @requires(Role.REVIEWER)
    def decide(item_id: str):
        action = request.form.get("action")
        try:
            if action == "approve":
                # The records ticked as one person (an item of more than two offers the choice); default all.
                chosen = request.form.getlist("patient_ids")
                result = review.approve(item_id, g.user.email, note=note(),
                                        master=request.form.get("master") or None, patient_ids=chosen or None)
                if result["refused"]:
                    vetoes = ", ".join(sorted({translate(g.language, f"veto.{r}") for r in result["refused"].values()}))
                    flash(f"{translate(g.language, 'flash.approved_partly')}: {vetoes}", "warning")
                else:
                    flash(translate(g.language, "flash.approved"), "ok")
            elif action == "reject":
                review.reject(item_id, g.user.email, note=note())
                flash(translate(g.language, "flash.rejected"), "ok")
            elif action == "skip":
                review.skip(item_id, g.user.email, note())
                flash(translate(g.language, "flash.skipped"), "ok")
            else:
                abort(400)
        except ReviewItemNotFound:
            abort(404)
        except ReviewAlreadyDecided:
            flash(translate(g.language, "flash.already"), "warning")
            return redirect(url_for("item", item_id=item_id))
        except ReviewRefused as refused:
            rules = [r for r in str(refused).split("'") if f"veto.{r}" in _VETO_KEYS]
            vetoes = ", ".join(translate(g.language, f"veto.{r}") for r in rules) or str(refused)
            flash(f"{translate(g.language, 'flash.refused')}: {vetoes}", "error")
            return redirect(url_for("item", item_id=item_id))
        following = next_item(item_id) if action != "skip" else _after_in_queue(item_id)
        return redirect(url_for("item", item_id=following) if following else url_for("queue"))

    def _after_in_queue(item_id: str) -> str | None:
        items = review.queue(QueueFilter(), after=item_id, size=1).items
        return items[0].id if items else None

    @app.post("/undo")
    @requires(Role.REVIEWER)
    def undo():
        try:
            item = review.undo_last(g.user.email)
        except UndoRefused:
            flash(translate(g.language, "flash.undo_refused"), "warning")
            return redirect(request.referrer if _same_site(request.referrer) else url_for("queue"))
        flash(translate(g.language, "flash.undone"), "ok")
        return redirect(url_for("item", item_id=item.id))

    # --- merges ---------------------------------------------------------------------------------
    @app.get("/merges")
    @requires(Role.VIEWER)
    def merges():
        status = request.args.get("status") or None
        return render_template("merges.html", jobs=services.jobs.recent(status=status, limit=200), status=status)

    @app.get("/merges/<job_id>")
    @requires(Role.VIEWER)
    def job(job_id: str):
        found = services.jobs.get(job_id)
        if found is None:
            abort(404)
        return render_template("job.html", job=found, result=None)

    @app.post("/merges/<job_id>/unmerge")
    @requires(Role.SUPERVISOR)
    def unmerge(job_id: str):
        found = services.jobs.get(job_id)
        if found is None:
            abort(404)
        result = services.unmerge(job_id)
        services.audit.record(AuditEntry(datetime.now(UTC).isoformat(), g.user.email, AuditAction.UNMERGE,
                                         None, found.get("group"), note(),
                                         {"job_id": job_id, "conflicts": len(result.conflicts)}))
        log.info("workbench_unmerge", job_id=job_id, user=g.user.email, conflicts=len(result.conflicts))
        flash(translate(g.language, "flash.unmerged"), "ok")
        return render_template("job.html", job=services.jobs.get(job_id), result=result)

    # --- dashboard ------------------------------------------------------------------------------
    @app.get("/dashboard")
    @requires(Role.VIEWER)
    def dashboard():
        data = build_dashboard(services.report_sources, today=datetime.now(UTC).date())
        return render_template("dashboard.html", data=data, charts=charts, standalone=False,
                               generated=datetime.now(UTC).isoformat(timespec="seconds"))

    return app


_VETO_KEYS = {key for key in MESSAGES["id"] if key.startswith("veto.")}


def _same_site(url: str | None) -> bool:
    return bool(url) and url.startswith(request.host_url)


def render_dashboard_file(settings: Settings, sources: ReportSources, language: str = "id") -> str:
    """The dashboard as one standalone HTML file (inline CSS and SVG, no script): ``ops report --html``."""
    app = Flask(__name__, template_folder=str(HERE / "templates"))
    data = build_dashboard(sources, today=datetime.now(UTC).date())
    css = (HERE / "static" / "app.css").read_text()
    with app.test_request_context():
        g.language = language
        return render_template("dashboard_file.html", data=data, charts=charts, css=css, standalone=True,
                               t=lambda key: translate(language, key),
                               generated=datetime.now(UTC).isoformat(timespec="seconds"))
