"""Compliance reports from the audit database (``docs/report.md``).

* :func:`build_report` reads a crawled audit database and returns the report as plain
  data following the documented JSON schema (:data:`REPORT_SCHEMA`);
* :func:`write_report` renders it as HTML (self-contained), Markdown and JSON;
* :func:`sign_report_files` writes a Sigstore bundle next to each file, and
  :func:`verify_report_file` checks one.

Heavy parts (Jinja2, signing) are imported lazily.
"""

from __future__ import annotations

from kitaudit._lazy import lazy_exports

_EXPORTS = {
    "build_report": "kitaudit.report.data",
    "REPORT_SCHEMA_VERSION": "kitaudit.report.data",
    "CONTROLS_NOTE": "kitaudit.report.data",
    "report_schema": "kitaudit.report.schema",
    "validate_report": "kitaudit.report.schema",
    "write_report": "kitaudit.report.render",
    "render_html": "kitaudit.report.render",
    "render_markdown": "kitaudit.report.render",
    "render_json": "kitaudit.report.render",
    "sign_report_files": "kitaudit.report.sign",
    "verify_report_file": "kitaudit.report.sign",
    "REPORT_PREDICATE": "kitaudit.report.sign",
    "fail_on_triggered": "kitaudit.report.data",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
