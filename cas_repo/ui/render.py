"""Jinja2 for the web view: the templates beside this module, autoescaped, no other loader.

Every value a template prints is escaped as text (a tag, a model id, a metric name from
the store can hold ``<script>``); only the audit's SVG, which escapes its own labels, is
passed in as ``Markup``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from ..text import cell_text, who

_ENV = Environment(loader=FileSystemLoader(Path(__file__).with_name("templates")),
                   autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _json_text(v: Any, indent: int | None = None) -> str:
    """JSON as plain text (autoescaping then makes it safe), so ``<`` shows as ``<``."""
    return json.dumps(v, indent=indent, sort_keys=True, ensure_ascii=False, default=str)


_ENV.filters["fmt"] = lambda v: cell_text(v, missing="–")
_ENV.filters["jsontext"] = _json_text
_ENV.globals["who"] = who


def trusted_svg(svg: str) -> Markup:
    """SVG built by the audit report, which escapes every label it writes."""
    return Markup(svg)


def page(name: str, *, at: datetime | None, path: str, params: dict[str, Any], **context: Any) -> str:
    """Render template ``name``; ``url(path, **params)`` in it keeps the as-of time in links."""
    at_text = at.strftime("%Y-%m-%dT%H:%M:%SZ") if at else ""

    def url(target: str, **query: Any) -> str:
        items = {k: v for k, v in query.items() if v not in (None, "", False)}
        if at_text:
            items["at"] = at_text
        return target + ("?" + urlencode(items) if items else "")

    return _ENV.get_template(name).render(at=at, at_text=at_text, url=url, path=path, params=params, **context)
