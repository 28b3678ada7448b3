"""The rating web app: raters grade answers A–D one at a time, blind; the admin watches progress and agreement.

Reads and writes one study database (`herd.rate.store`); serves server-rendered HTML (Jinja2 templates and static
files shipped in this package). `create_app(folder)` builds the FastAPI application; `serve(...)` runs it with uvicorn.

Who may do what:
- A rater opens `/r/<token>`: the token is checked (hashed) and kept in an HttpOnly, SameSite=Lax cookie, and the
  browser moves on to `/rate/<n>`, so the token leaves the address bar. Positions 1..n index the rater's own list;
  nothing a rater sees (pages, URLs, HTML source) carries a model name or an answer id.
- The admin opens `/admin/login/<token>`; the admin cookie is a separate one, scoped to /admin. A rater's cookie never
  opens an admin page.
- Every form post carries a CSRF token (an HMAC of the session under the study's secret) and is refused when the
  browser says it comes from another origin (Origin / Sec-Fetch-Site). The Content-Security-Policy allows no inline
  script, and every answer is rendered through Jinja2's autoescaping, so an answer holding `<script>` is shown as text.
- uvicorn's access log is off: it would write tokens (they are in the login paths) to the terminal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from herd.rate import RATINGS, agreement, figures
from herd.rate.store import Rater, Study, csv_text, token_hash

RATER_COOKIE = "herd_rater"
ADMIN_COOKIE = "herd_admin"
MAX_COMMENT = 2000
CHOICES = [("A", "Valid, satisfying"), ("B", "Minor errors"), ("C", "Major errors"), ("D", "Invalid")]
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: under no-referrer browsers send "Origin: null" with our own form posts.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
ERRORS = {
    401: ("Link needed", "Open this study with the link you were given."),
    403: ("Not allowed", "This page is not part of your link, or the form came from another site."),
    404: ("Not found", "There is nothing here."),
}


def create_app(folder: str | Path, *, public_url: str = "") -> FastAPI:
    """The rating app for one study folder; `public_url` is the address raters use, when not 127.0.0.1."""
    study = Study(folder)
    secret = study.meta()["secret"].encode("utf-8")
    public = public_url or study.meta().get("url", "")
    app = FastAPI(title="herd rating", docs_url=None, redoc_url=None, openapi_url=None)
    hosts = ["127.0.0.1", "localhost", "[::1]", "::1"] + ([urlsplit(public).hostname or ""] if public else [])
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=[h for h in hosts if h])
    app.mount("/static", StaticFiles(packages=[("herd.rate", "static")]), name="static")
    env = Environment(loader=PackageLoader("herd.rate", "templates"), autoescape=True)
    env.globals.update(fmt=_fmt, pct=_pct, strength=agreement.strength)
    templates = Jinja2Templates(env=env)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(HEADERS)
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(StarletteHTTPException)
    def error_page(request: Request, exc: StarletteHTTPException) -> Response:
        title, message = ERRORS.get(exc.status_code, ("Error", str(exc.detail)))
        if exc.status_code == 400:
            title, message = "Not accepted", str(exc.detail)
        return templates.TemplateResponse(request, "error.html", {"title": title, "message": message},
                                          status_code=exc.status_code)

    def page(request: Request, name: str, context: dict[str, Any]) -> Response:
        return templates.TemplateResponse(request, name, context)

    _rater_routes(app, study, secret, public, page)
    _admin_routes(app, study, public, page)
    return app


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _set_cookie(response: Response, request: Request, public: str, name: str, value: str, path: str) -> None:
    secure = request.url.scheme == "https" or public.startswith("https://")
    # Lax, not Strict: a rater who follows the link from a mail client arrives from another site, and Strict would
    # drop the cookie on the redirect that follows. Cross-site posts still carry no cookie under Lax.
    response.set_cookie(name, value, httponly=True, samesite="lax", secure=secure, path=path, max_age=90 * 24 * 3600)


def _csrf(secret: bytes, token: str) -> str:
    return hmac.new(secret, f"csrf:{token_hash(token)}".encode(), hashlib.sha256).hexdigest()


def _same_origin(request: Request, public: str) -> bool:
    """False when the browser says the request comes from another site or origin (no header: not a browser)."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = {f"{request.url.scheme}://{request.headers.get('host', '')}"}
    if public:
        parts = urlsplit(public)
        own.add(f"{parts.scheme}://{parts.netloc}")
    return origin in own


def _rater_routes(app: FastAPI, study: Study, secret: bytes, public: str, page: Any) -> None:
    def who(request: Request) -> tuple[Rater, str]:
        token = request.cookies.get(RATER_COOKIE, "")
        rater = study.rater(token) if token else None
        if rater is None:
            raise HTTPException(401)
        return rater, token

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/r/{token}")
    def login(token: str, request: Request) -> Response:
        if study.rater(token) is None:
            raise HTTPException(404)
        response = RedirectResponse("/rate", status_code=303)
        _set_cookie(response, request, public, RATER_COOKIE, token, "/")
        return response

    @app.get("/rate")
    def resume(request: Request) -> Response:
        rater, _ = who(request)
        position = study.next_unrated(rater)
        return RedirectResponse(f"/rate/{position}" if position else "/rate/done", status_code=303)

    @app.get("/rate/done", response_class=HTMLResponse)
    def done(request: Request) -> Response:
        rater, _ = who(request)
        item = study.item(rater, 1)
        total, rated = (item.total, len(item.rated)) if item else (0, 0)
        return page(request, "done.html", {"rater": rater.name, "total": total, "rated": rated, "left": total - rated})

    @app.get("/rate/{position}", response_class=HTMLResponse)
    def show(position: int, request: Request) -> Response:
        rater, token = who(request)
        item = study.item(rater, position)
        if item is None:
            raise HTTPException(404)
        return page(request, "rate.html", {"rater": rater.name, "item": item, "csrf": _csrf(secret, token),
                                           "choices": CHOICES, "max_comment": MAX_COMMENT})

    @app.post("/rate/{position}")
    def save(position: int, request: Request, csrf: str = Form(""), rating: str = Form(""),
             comment: str = Form("")) -> Response:
        rater, token = who(request)
        if not _same_origin(request, public) or not hmac.compare_digest(csrf, _csrf(secret, token)):
            raise HTTPException(403)
        if rating not in RATINGS:
            raise HTTPException(400, "Pick one of A, B, C or D.")
        if len(comment) > MAX_COMMENT:
            raise HTTPException(400, f"A comment may be at most {MAX_COMMENT} characters.")
        if not study.save(rater, position, rating, comment.strip()):
            raise HTTPException(404)
        following = study.next_unrated(rater, after=position)
        return RedirectResponse(f"/rate/{following}" if following else "/rate/done", status_code=303)


def _admin_routes(app: FastAPI, study: Study, public: str, page: Any) -> None:
    def admin(request: Request) -> None:
        token = request.cookies.get(ADMIN_COOKIE, "")
        if not token:
            raise HTTPException(401)
        if not study.is_admin(token):
            raise HTTPException(403)

    @app.get("/admin/login/{token}")
    def login(token: str, request: Request) -> Response:
        if not study.is_admin(token):
            raise HTTPException(404)
        response = RedirectResponse("/admin", status_code=303)
        _set_cookie(response, request, public, ADMIN_COOKIE, token, "/admin")
        return response

    @app.get("/admin", response_class=HTMLResponse)
    def dashboard(request: Request) -> Response:
        admin(request)
        rows = study.export_rows()
        counts = _all_models(study, rows)
        progress = study.progress()
        return page(request, "admin.html", {
            "meta": study.meta(), "counts": study.counts(), "progress": progress,
            "rated_assigned": sum(r["rated"] for r in progress), "agreement": agreement.summary(rows),
            "model_counts": counts, "order": figures.sort_models(counts),
        })

    @app.get("/admin/chart.png")
    def chart(request: Request) -> Response:
        admin(request)
        counts = _all_models(study, study.export_rows())
        return Response(figures.png_bytes([("Ratings by people", counts)]), media_type="image/png")

    @app.get("/admin/ratings.csv")
    def export_csv(request: Request) -> Response:
        admin(request)
        return Response(csv_text(study.export_rows()), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="ratings.csv"'})

    @app.get("/admin/ratings.jsonl")
    def export_jsonl(request: Request) -> Response:
        admin(request)
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in study.export_rows())
        return Response(text, media_type="application/jsonl; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="ratings.jsonl"'})


def _all_models(study: Study, rows: list[dict[str, Any]]) -> figures.Counts:
    """Counts per model, with a row of zeros for a model nobody has rated yet."""
    counts = {a["model"]: dict.fromkeys(RATINGS, 0) for a in study.answers().values()}
    counts.update(figures.count_ratings(rows))
    return counts


def serve(folder: str | Path, host: str = "127.0.0.1", port: int = 8765, public_url: str = "") -> None:
    """Run the app until interrupted (no access log: login paths carry tokens)."""
    import uvicorn

    uvicorn.run(create_app(folder, public_url=public_url), host=host, port=port, access_log=False,
                log_level="warning")
