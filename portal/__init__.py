"""Pay Box: the web system a Comune uses to collect its taxes and fees through pagoPA."""

import logging

from flask import Flask, render_template, request

from portal import jobs, routing
from portal.config import ROOT, load_config
from portal.extensions import babel, csrf, db, htmx, login_manager, migrate, ping_idle_connections, static_digest


def create_app(config: dict | None = None) -> Flask:
    """Build the application.

    :param config: overrides on top of the settings read from the environment (tests pass their own).
    """
    app = Flask(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        instance_path=str(ROOT / "instance"),
    )
    app.config.update(load_config())
    if config:
        app.config.update(config)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    register_extensions(app)
    trust_proxies(app)
    routing.register(app)
    register_operations(app)
    register_blueprints(app)
    register_template_helpers(app)
    register_errorhandlers(app)
    register_cli(app)
    register_hooks(app)
    return app


def register_extensions(app: Flask) -> None:
    """Attach the unbound extensions of :mod:`portal.extensions`."""
    from portal import models  # noqa: F401  (every table registered before Migrate looks at metadata)

    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            ping_idle_connections(engine)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"), render_as_batch=True, compare_type=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    htmx.init_app(app)
    register_languages(app)
    static_digest.init_app(app)
    jobs.init_app(app)
    serve_static_files(app)


def register_languages(app: Flask) -> None:
    """Flask-Babel with the catalogues of ``translations/`` (``make translations``): Italian by default
    (``PAYBOX_LOCALE``), another of ``LANGUAGES`` when the visitor picks it (``?lang=de``, kept in the session).

    Untranslated texts fall back to the Italian source. The Flask-free layers translate through
    :mod:`portal.i18n`, which gets Flask-Babel's translations of the current request here.
    """
    import flask_babel
    from flask import has_request_context, session

    from portal import i18n

    languages = tuple(app.config.get("LANGUAGES") or ("it",))

    def select_locale() -> str:
        if has_request_context():
            chosen = request.args.get("lang")
            if chosen in languages:
                if session.get("lang") != chosen:
                    session["lang"] = chosen
                return chosen
            if session.get("lang") in languages:
                return session["lang"]
        return app.config.get("BABEL_DEFAULT_LOCALE") or "it"

    babel.init_app(app, locale_selector=select_locale)
    # Flask-Babel keeps the locale on ``g``, which outlives a request when an application context was already
    # pushed (tests, CLI): each request chooses again.
    app.before_request(flask_babel.refresh)
    i18n.install(lambda message: flask_babel.get_translations().ugettext(message))

    @app.context_processor
    def language_context():
        current = str(flask_babel.get_locale() or "it")
        return {"html_lang": current, "languages": languages, "current_language": current}


#: Seconds a browser keeps a static file whose name has no fingerprint (fonts referenced by the CSS, ...).
STATIC_MAX_AGE = 24 * 3600


def serve_static_files(app: Flask) -> None:
    """Serve ``static/`` through WhiteNoise: fingerprinted files (``name-<md5>.ext``, made by ``flask digest
    compile`` in ``make assets``) are cached for a year as immutable, the rest for a day, gzipped when the
    browser accepts it. The web server of the deploy kit may serve them instead; the URLs are the same."""
    import re

    from whitenoise import WhiteNoise

    digested = re.compile(r"-[0-9a-f]{32}\.[^/]+$")
    app.wsgi_app = WhiteNoise(app.wsgi_app, root=app.static_folder, prefix=app.static_url_path,
                              max_age=STATIC_MAX_AGE, autorefresh=app.debug,
                              immutable_file_test=lambda path, url: bool(digested.search(url)))


def trust_proxies(app: Flask) -> None:
    """Behind ``TRUSTED_PROXIES`` reverse proxies (nginx of the deploy kit), take the client's address and scheme
    from their ``X-Forwarded-For``/``X-Forwarded-Proto``, never from a header a client could send past them."""
    count = int(app.config.get("TRUSTED_PROXIES") or 0)
    if count > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count)


def register_operations(app: Flask) -> None:
    """``/healthz``, ``/readyz``, ``/metrics`` and the request timings (first, so every request is timed)."""
    from portal.ops import views

    views.register(app)


def register_blueprints(app: Flask) -> None:
    """Mount the citizen portal at ``/`` and the back office at ``/officer``."""
    from portal.citizen import bp as citizen_bp
    from portal.officer import bp as officer_bp

    app.register_blueprint(citizen_bp)
    app.register_blueprint(officer_bp, url_prefix="/officer")
    # The station's SOAP endpoint for the pagoPA node (POST /pagopa/paForNode), exempt from CSRF.
    from portal.pagopa.node import bp as pagopa_node_bp
    app.register_blueprint(pagopa_node_bp)
    # The REST API for the Comune's other systems (/api/v1, bearer tokens, OpenAPI at /api/v1/openapi.json).
    from portal import api
    api.init_app(app)


def register_template_helpers(app: Flask) -> None:
    """Filters the templates use to show money, dates, numbers and statuses the Italian way."""
    from portal import formatting

    formatting.register(app)


def register_errorhandlers(app: Flask) -> None:
    """Italian error pages; HTMX requests get just the message fragment."""

    def render_error(error):
        code = getattr(error, "code", 500)
        if request.path.startswith("/api/"):
            from portal.api.problems import problem

            return problem(code, None)
        template = "errors/_message.html" if htmx else "errors/error.html"
        return render_template(template, code=code, description=getattr(error, "description", "")), code

    for code in (400, 403, 404, 405, 409, 410, 413, 429, 500):
        app.register_error_handler(code, render_error)


def register_cli(app: Flask) -> None:
    """``flask demo``, ``flask positions``, ``flask users``."""
    from portal import cli

    cli.register(app)


def register_hooks(app: Flask) -> None:
    """One commit per request, and responses that caches and htmx can tell apart."""
    production = app.config.get("PAYBOX_ENV") == "production"

    @app.after_request
    def commit_and_tag(response):
        # Views never commit. A request that succeeded commits once, before the response leaves, so a
        # failed commit becomes a 500 instead of a success page for something that was not saved.
        if response.status_code < 400:
            db.session.commit()
        else:
            db.session.rollback()
        # The same URL renders a full page or a fragment, so caches must key on HX-Request.
        response.vary.add("HX-Request")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if production:
            # Production is served over HTTPS only (the deploy kit's web server redirects plain HTTP).
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response

    @app.teardown_request
    def discard_uncommitted(exc):
        if exc is not None:
            db.session.rollback()
