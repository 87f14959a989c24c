"""The audit as one self-contained HTML page: inline CSS and SVG charts, no scripts, no links out."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

from .audit import AuditReport

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{padding:3px 8px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:1rem}.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem}
.card b{display:block;font-size:1.3rem}.ok{color:#1a7f37}.bad{color:#c62828}code{font-size:12px}
svg text{font:11px system-ui,sans-serif;fill:#444}
"""
_LOGICAL, _PHYSICAL, _SHARED = "#9ab8d8", "#1f5f99", "#e39b3a"


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int]) -> str:
    # `numeric`: 1 for a right-aligned (number) column, else 0; digits line up under the headers.
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{escape(str(v))}</td>' if numeric[i] else f"<td>{escape(str(v))}</td>"
                         for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def growth_chart(report: AuditReport, width: int = 900, height: int = 300) -> str:
    """Cumulative full-copy bytes vs stored bytes, one step per version in save order."""
    points = report.growth
    if not points:
        return "<p>No versions yet.</p>"
    logical, physical, lsum, psum = [], [], 0, 0
    for p in points:
        lsum += p.logical_bytes
        psum += p.new_bytes
        logical.append(lsum)
        physical.append(psum)
    left, bottom, top = 70, 30, 10
    w, h = width - left - 10, height - bottom - top
    ymax = max([*logical, 1])
    n = len(points)

    def xy(i: int, v: int) -> str:
        x = left + (w * i / max(n - 1, 1))
        return f"{x:.1f},{top + h - h * v / ymax:.1f}"

    grid = "".join(
        f'<line x1="{left}" x2="{left + w}" y1="{top + h - h * k / 4:.1f}" y2="{top + h - h * k / 4:.1f}" '
        f'stroke="#eee"/><text x="{left - 6}" y="{top + h - h * k / 4 + 4:.1f}" text-anchor="end">'
        f"{escape(human(ymax * k / 4))}</text>" for k in range(5))
    lines = "".join(
        f'<polyline fill="none" stroke="{color}" stroke-width="2.5" '
        f'points="{" ".join(xy(i, v) for i, v in enumerate(vals))}"/>'
        for vals, color in ((logical, _LOGICAL), (physical, _PHYSICAL)))
    legend = (f'<rect x="{left + 10}" y="{top + 6}" width="12" height="4" fill="{_LOGICAL}"/>'
              f'<text x="{left + 28}" y="{top + 12}">full copies (logical): {escape(human(lsum))}</text>'
              f'<rect x="{left + 10}" y="{top + 22}" width="12" height="4" fill="{_PHYSICAL}"/>'
              f'<text x="{left + 28}" y="{top + 28}">stored after dedup and compression: {escape(human(psum))}</text>')
    axis = (f'<text x="{left + w / 2:.0f}" y="{height - 6}" text-anchor="middle">versions in save order '
            f"(1 … {n})</text>")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="cumulative logical vs stored bytes">{grid}{lines}{legend}{axis}</svg>')


def model_chart(report: AuditReport, limit: int = 25, width: int = 900) -> str:
    """Per model: full-copy bytes against stored bytes (split into its own and shared)."""
    models = sorted(report.models, key=lambda m: m.logical_bytes, reverse=True)[:limit]
    if not models:
        return ""
    row, label = 26, 200
    scale = (width - label - 120) / max([*(m.logical_bytes for m in models), 1])
    bars = []
    for i, m in enumerate(models):
        y = 24 + i * row
        own, shared = m.reclaimable_bytes * scale, m.shared_bytes * scale
        bars.append(
            f'<text x="{label - 6}" y="{y + 13}" text-anchor="end">{escape(m.model_id[:30])}</text>'
            f'<rect x="{label}" y="{y}" width="{max(m.logical_bytes * scale, 1):.1f}" height="8" fill="{_LOGICAL}"/>'
            f'<rect x="{label}" y="{y + 9}" width="{max(own, 0):.1f}" height="8" fill="{_PHYSICAL}"/>'
            f'<rect x="{label + own:.1f}" y="{y + 9}" width="{max(shared, 0):.1f}" height="8" fill="{_SHARED}"/>'
            f'<text x="{label + max(m.logical_bytes * scale, own + shared) + 6:.1f}" y="{y + 13}">'
            f"{escape(human(m.logical_bytes))} → {escape(human(m.physical_bytes))}</text>")
    legend = (f'<rect x="{label}" y="4" width="12" height="8" fill="{_LOGICAL}"/><text x="{label + 16}" y="12">'
              f'full copies</text><rect x="{label + 100}" y="4" width="12" height="8" fill="{_PHYSICAL}"/>'
              f'<text x="{label + 116}" y="12">stored, own (freed by a purge)</text>'
              f'<rect x="{label + 320}" y="4" width="12" height="8" fill="{_SHARED}"/>'
              f'<text x="{label + 336}" y="12">stored, shared with other models</text>')
    height = 30 + len(models) * row
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
            f'aria-label="bytes per model">{legend}{"".join(bars)}</svg>')


def render_html(report: AuditReport) -> str:
    """The whole report as a standalone HTML document."""
    t = report.totals
    cards = [("full copies would take", human(t.logical_bytes)), ("stored (all packs)", human(t.physical_bytes)),
             ("dedup ratio", f"{t.dedup_ratio:.1f}×"), ("models", f"{t.models} ({t.deleted_models} deleted)"),
             ("versions stored", f"{t.versions} (+{t.purged_versions} purged)"),
             ("freeable by gc", human(max(t.unreferenced_bytes, 0)))]
    walk = report.walk
    check = ("" if walk is None else
             f'<p class="ok">The object store agrees: {walk.packs} packs, {escape(human(walk.pack_bytes))}.</p>'
             if walk.agrees else
             '<p class="bad">The object store disagrees with the catalog (run <code>cas-repo fsck</code>):</p><ul>'
             + "".join(f"<li>{escape(d)}</li>" for d in walk.differences) + "</ul>")
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>cas-repo audit</title><style>{_CSS}</style>"
        f"</head><body><h1>cas-repo dedup audit</h1><p>{report.at:%Y-%m-%d %H:%M} UTC</p>",
        '<div class="cards">' + "".join(f'<div class="card">{escape(k)}<b>{escape(v)}</b></div>' for k, v in cards)
        + "</div>", check,
        "<h2>Stored bytes as versions accumulate</h2>", growth_chart(report),
        "<h2>Models</h2>", model_chart(report),
        _table(["model", "experiment", "versions", "logical", "stored", "own (reclaimable)", "shared", "ratio",
                "deleted"],
               [(m.model_id, m.experiment_name, m.versions, human(m.logical_bytes), human(m.physical_bytes),
                 human(m.reclaimable_bytes), human(m.shared_bytes), f"{m.dedup_ratio:.1f}", "yes" if m.deleted else "")
                for m in report.models], [0, 0, 1, 1, 1, 1, 1, 1, 0]),
        "<h2>Experiments</h2>",
        _table(["experiment", "models", "versions", "logical", "stored", "unique", "shared", "ratio"],
               [(e.experiment_name, e.models, e.versions, human(e.logical_bytes), human(e.physical_bytes),
                 human(e.unique_bytes), human(e.shared_bytes), f"{e.dedup_ratio:.1f}") for e in report.experiments],
               [0, 1, 1, 1, 1, 1, 1, 1]),
        "<h2>Most-shared chunks</h2>",
        _table(["chunk", "size", "stored", "versions", "models", "saved"],
               [(c.digest[:16] + "…", human(c.size), human(c.stored_size), c.versions, c.models, human(c.bytes_saved))
                for c in report.shared_chunks], [0, 1, 1, 1, 1, 1]),
        "<h2>Identical versions across model_ids</h2>",
        _table(["manifest", "size", "versions"],
               [(i.manifest[:16] + "…", human(i.logical_bytes), ", ".join(i.refs)) for i in report.identical_versions],
               [0, 1, 0]),
        "<h2>Versions</h2>",
        _table(["version", "saved", "logical", "stored", "unique", "shared"],
               [(f"{v.model_id}@{v.version}", f"{v.saved_at:%Y-%m-%d %H:%M}", human(v.logical_bytes),
                 human(v.physical_bytes), human(v.unique_bytes), human(v.shared_bytes)) for v in report.versions],
               [0, 0, 1, 1, 1, 1]),
        "<p>Every figure is reproducible with the SQL in docs/maintenance.md.</p></body></html>",
    ]
    return "\n".join(parts)
