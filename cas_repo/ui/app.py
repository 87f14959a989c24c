"""The web view's routes (Starlette): GET only, each page read from the store in a thread.

No route changes the store: there is no POST, and the SQL box goes through the read-only
``store.sql``. An error a page shows is a ``CasRepoError``'s message, rendered as text;
anything else is logged by the server and shown as a bare "internal error".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..as_of import as_timestamp
from ..errors import CasRepoError, InvalidMetadataError
from ..repository import ModelStore
from . import choose, pages
from .render import page, trusted_svg

_HEADERS = {
    # Pages load nothing from elsewhere and run no script: say so to the browser too.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _at(request: Request) -> datetime | None:
    text = request.query_params.get("at", "").strip()
    return as_timestamp(text) if text else None


def _status(exc: CasRepoError) -> int:
    return 404 if isinstance(exc, (LookupError, FileNotFoundError)) else 400


def create_app(store: ModelStore) -> Starlette:
    """The web view of ``store`` (opened by the caller, who closes it)."""

    def handler(name: str, build: Callable[[Request, datetime | None], dict[str, Any]]):
        async def endpoint(request: Request) -> Response:
            params = dict(request.query_params)
            at = None
            try:
                at = _at(request)
                context = await run_in_threadpool(build, request, at)
                html = page(name, at=at, path=request.url.path, params=params, **context)
                return HTMLResponse(html, headers=_HEADERS)
            except CasRepoError as exc:
                html = page("error.html", at=at, path=request.url.path, params=params, message=str(exc))
                return HTMLResponse(html, status_code=_status(exc), headers=_HEADERS)
        return endpoint

    def models(request: Request, at: datetime | None) -> dict[str, Any]:
        p = request.query_params
        q = pages.ModelQuery(
            experiment=p.get("experiment") or None, model_type=p.get("type") or None, tag=p.get("tag") or None,
            deleted=p.get("deleted") == "1", sort=p.get("sort") or "saved_at", metric=p.get("metric") or None,
            descending=p.get("order", "desc") != "asc", page=pages.whole_number(p.get("page"), "page", 1))
        return pages.models_page(store, q, at)

    def model(request: Request, at: datetime | None) -> dict[str, Any]:
        p = request.query_params
        return pages.model_page(store, p.get("id", ""), at, pages.whole_number(p.get("page"), "page", 1),
                                p.get("all") not in (None, "", "0"))

    def version(request: Request, at: datetime | None) -> dict[str, Any]:
        p = request.query_params
        version = pages.whole_number(p.get("v"), "v", 0)
        return pages.version_page(store, p.get("id", ""), version, p.get("against") or None, at)

    def store_view(request: Request, at: datetime | None) -> dict[str, Any]:
        ctx = pages.store_page(store)
        ctx["growth_svg"], ctx["models_svg"] = trusted_svg(ctx["growth_svg"]), trusted_svg(ctx["models_svg"])
        return ctx

    def sql(request: Request, at: datetime | None) -> dict[str, Any]:
        query = request.query_params.get("q", "").strip()
        ctx: dict[str, Any] = {"query": query, "result": None, "error": None}
        if query:
            try:
                ctx["result"] = pages.sql_rows(store, query)
            except CasRepoError as exc:
                ctx["error"] = str(exc)
        return ctx

    def compare(request: Request, at: datetime | None) -> dict[str, Any]:
        return choose.compare_page(store, request.query_params.getlist("ref"))

    def leaderboard(request: Request, at: datetime | None) -> dict[str, Any]:
        p = request.query_params
        return choose.leaderboard_page(store, p.get("metric") or None, p.get("experiment") or None,
                                       p.get("order") == "lower", p.get("where") or None)

    async def download(request: Request) -> Response:
        fmt = request.query_params.get("format", "csv")
        query = request.query_params.get("q", "")
        try:
            if fmt not in ("csv", "parquet"):
                raise InvalidMetadataError(f"download as csv or parquet, not {fmt!r}")
            body = await run_in_threadpool(pages.sql_download, store, query, fmt)
        except CasRepoError as exc:
            return Response(str(exc), status_code=400, media_type="text/plain; charset=utf-8", headers=_HEADERS)
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/vnd.apache.parquet"
        return Response(body, media_type=media, headers={
            **_HEADERS, "Content-Disposition": f'attachment; filename="cas-repo-query.{fmt}"'})

    routes = [
        Route("/", handler("models.html", models), methods=["GET"]),
        Route("/model", handler("model.html", model), methods=["GET"]),
        Route("/version", handler("version.html", version), methods=["GET"]),
        Route("/store", handler("store.html", store_view), methods=["GET"]),
        Route("/sql", handler("sql.html", sql), methods=["GET"]),
        Route("/sql/download", download, methods=["GET"]),
        Route("/compare", handler("compare.html", compare), methods=["GET"]),
        Route("/leaderboard", handler("leaderboard.html", leaderboard), methods=["GET"]),
    ]
    return Starlette(routes=routes)
