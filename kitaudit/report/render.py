"""Render the report data as HTML, Markdown and JSON, and write the files.

Templates are package data (``kitaudit/report/templates/``: ``report.html.j2``,
``report.md.j2``, ``report.css``), so an installed kitaudit renders without a checkout;
``template_dir`` points at a copy to customise them. HTML is autoescaped; the SVG charts
are built in :mod:`kitaudit.report.charts` and inlined. Markdown references the charts
as ``.svg`` files written next to it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kitaudit.errors import UsageError

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
FORMATS = ("html", "md", "json")
FILE_NAMES = {"html": "report.html", "md": "report.md", "json": "report.json"}
SVG_FILES = {"lineage": "lineage.svg", "coverage": "signing-coverage.svg",
             "violations": "violations-by-rule.svg"}
LIST_LIMIT = 50


def parse_formats(text: str | Iterable[str]) -> list[str]:
    """``"html,md"`` → ``["html", "md"]`` (order kept, duplicates dropped)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        f = raw.strip().lower()
        if f == "markdown":
            f = "md"
        if not f:
            continue
        if f not in FORMATS:
            raise UsageError(f"unknown report format {raw.strip()!r}",
                             fix="use --format with html, md and/or json, e.g. html,md,json")
        if f not in out:
            out.append(f)
    if not out:
        raise UsageError("no report format given", fix="use --format html,md,json")
    return out


# ---------------------------------------------------------------------- filters
def _when(value: Any) -> str:
    if not value:
        return "—"
    text = str(value)
    return text[:16].replace("T", " ") + " UTC" if "T" in text else text


def _pct(part: Any, whole: Any) -> str:
    try:
        return f"{100 * float(part) / float(whole):.0f}%" if whole else "0%"
    except (TypeError, ValueError):
        return "0%"


def _short(digest: Any, n: int = 19) -> str:
    text = str(digest or "")
    return text[:n] + "…" if len(text) > n else text


def _kitname(item: dict[str, Any]) -> str:
    tags = item.get("tags") or []
    if tags:
        more = len(tags) - 1
        return str(tags[0]) + (f" (+{more} tag{'s' if more > 1 else ''})" if more else "")
    repo = item.get("repository") or ""
    return f"{repo}@{_short(item.get('digest'))}" if repo else _short(item.get("digest"))


def _was(item: dict[str, Any]) -> str:
    """A removed digest: ``repo@sha256:abc… (was repo:tag)``."""
    tags = item.get("tags") or []
    head = f"{item.get('repository') or ''}@{_short(item.get('digest'))}"
    return head + (f" (was {', '.join(tags)})" if tags else "")


def _md(text: Any) -> str:
    """Make text safe inside a Markdown table cell (no pipes or newlines, no raw HTML
    except the ``<br>`` the template itself puts)."""
    s = str(text if text is not None else "")
    s = s.replace("&", "&amp;").replace("<br>", "\x00").replace("<", "&lt;")
    s = s.replace(">", "&gt;").replace("\x00", "<br>").replace("|", "\\|")
    return " ".join(s.split())


def _refs(controls: Sequence[dict[str, Any]], framework: str) -> str:
    refs = [str(c.get("ref")) for c in controls if c.get("framework") == framework]
    return _md("; ".join(refs)) if refs else "—"


def _environment(template_dir: Path | None = None) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir or TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                            default_for_string=True, default=False),
        undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False,
        keep_trailing_newline=True)
    env.filters.update(when=_when, pct=_pct, short=_short, kitname=_kitname, md=_md, was=_was,
                       refs=_refs)

    def kitref(digest: str, report: dict[str, Any]) -> str:
        for k in report.get("inventory", []):
            if k["digest"] == digest:
                return _kitname(k)
        return _short(digest)

    env.filters["kitref"] = kitref
    return env


def _svgs(report: dict[str, Any]) -> dict[str, str]:
    from kitaudit.report import charts

    return {"lineage": charts.lineage_svg(report["lineage"]),
            "coverage": charts.signing_coverage_svg(report["charts"]["signing_coverage"]),
            "violations": charts.violations_by_rule_svg(
                report["charts"]["violations_by_rule"])}


def render_html(report: dict[str, Any], *, template_dir: str | Path | None = None,
                svgs: dict[str, str] | None = None) -> str:
    """The self-contained HTML page (inline CSS and SVG, no scripts, no fetches)."""
    tdir = Path(template_dir) if template_dir else TEMPLATE_DIR
    env = _environment(tdir)
    css_path = tdir / "report.css"
    css = (css_path if css_path.is_file() else TEMPLATE_DIR / "report.css").read_text(
        encoding="utf-8")
    import markupsafe

    return str(env.get_template("report.html.j2").render(
        r=report, css=markupsafe.Markup(css),  # noqa: S704 - our own stylesheet
        svg=svgs or _svgs(report), limit=LIST_LIMIT, waivers_file=False))


def render_markdown(report: dict[str, Any], *, template_dir: str | Path | None = None,
                    svg_files: dict[str, str] | None = None) -> str:
    """GitHub-flavoured Markdown; the charts are referenced as ``svg_files``."""
    env = _environment(Path(template_dir) if template_dir else None)
    return str(env.get_template("report.md.j2").render(
        r=report, svg_files=svg_files or SVG_FILES, limit=LIST_LIMIT))


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_report(report: dict[str, Any], out_dir: str | Path, *,
                 formats: Sequence[str] = FORMATS,
                 template_dir: str | Path | None = None) -> list[Path]:
    """Write the report into ``out_dir`` (created if needed): ``report.html``,
    ``report.md`` with its ``*.svg`` charts, ``report.json``. Each file is written to a
    temporary name and renamed, so a reader never sees half a report. Returns the paths
    written, in a stable order."""
    fmts = parse_formats(formats)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the output directory {out}: {err.strerror}",
                         fix="pass a writable --out directory") from None
    svgs = _svgs(report)
    written: list[Path] = []
    rendered: dict[str, str] = {}
    # render everything before writing anything: a template error writes nothing
    if "html" in fmts:
        rendered["html"] = render_html(report, template_dir=template_dir, svgs=svgs)
    if "md" in fmts:
        rendered["md"] = render_markdown(report, template_dir=template_dir)
    if "json" in fmts:
        rendered["json"] = render_json(report)
    for f in fmts:
        path = out / FILE_NAMES[f]
        _atomic_write(path, rendered[f])
        written.append(path)
    if "md" in fmts:
        for key, name in SVG_FILES.items():
            path = out / name
            _atomic_write(path, svgs[key] + "\n")
            written.append(path)
    return written
