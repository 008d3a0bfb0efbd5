"""Hugging Face-style model cards: YAML front matter plus Markdown sections.

:func:`parse_model_card` extracts the facts the ML-BOM needs and nothing else:

* front matter: ``license`` (and ``license_name``), ``base_model``, ``datasets``,
  ``pipeline_tag``, ``library_name``, ``tags``, ``language``, ``model-index`` metrics,
  ``co2_eq_emissions``;
* Markdown sections, matched on their heading: intended uses, out-of-scope uses,
  limitations, bias/risks, recommendations, fairness, users, architecture,
  performance trade-offs, environmental impact.

Template placeholders (``[More Information Needed]``) and HTML comments count as
absent: nothing is invented. :func:`find_model_card` finds the card of a ModelKit
context (``MODEL_CARD.md``, ``README.md``, or a model card among the Kitfile's docs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitaudit.errors import KitauditError

__all__ = [
    "Metric",
    "ModelCard",
    "ModelCardError",
    "find_model_card",
    "load_model_card",
    "parse_model_card",
]

MAX_CARD_BYTES = 4 << 20  # a model card is text; refuse anything larger


class ModelCardError(KitauditError):
    """A model card given explicitly could not be read or its front matter is malformed."""


@dataclass(frozen=True)
class Metric:
    """One ``model-index`` result metric (values kept as strings, as CycloneDX wants)."""

    type: str
    value: str
    name: str | None = None
    task: str | None = None
    dataset: str | None = None
    split: str | None = None
    config: str | None = None


@dataclass
class ModelCard:
    """Facts read from a model card. Empty lists / ``None`` mean "not stated"."""

    source: str | None = None          # path relative to the ModelKit context, if packed
    license: str | None = None
    license_name: str | None = None    # HF ``license_name`` (used with ``license: other``)
    base_models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    tags: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    model_name: str | None = None      # ``model-index[0].name``
    metrics: list[Metric] = field(default_factory=list)
    co2: dict[str, str] = field(default_factory=dict)   # flattened ``co2_eq_emissions``
    # Markdown sections (each entry is one list item or paragraph)
    intended_uses: list[str] = field(default_factory=list)
    out_of_scope: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    limitations: list[str] = field(default_factory=list)
    risks: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    fairness: list[str] = field(default_factory=list)
    tradeoffs: list[str] = field(default_factory=list)
    architecture: str | None = None
    environmental: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def is_empty(self) -> bool:
        """True when the card states none of the facts above."""
        return not any(v for k, v in vars(self).items() if k not in ("source", "warnings"))


# --------------------------------------------------------------------------- parsing

_FRONT_MATTER_RE = re.compile(r"\A(?:\ufeff)?---[ \t]*\r?\n(.*?)(?:\r?\n)?^(?:---|\.\.\.)[ \t]*$",
                              re.S | re.M)
_HEADING_RE = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_SETEXT_RE = re.compile(r"^(=+|-+)[ \t]*$")
_FENCE_RE = re.compile(r"^[ \t]*(```|~~~)")
_COMMENT_RE = re.compile(r"<!--.*?-->", re.S)
_PLACEHOLDER_RE = re.compile(r"\[\s*(more information needed|optional|needs? more information"
                             r"|tbd|todo|n/?a)\s*\]", re.I)
_LIST_ITEM_RE = re.compile(r"^[ \t]{0,3}(?:[-*+]|\d{1,3}[.)])[ \t]+(.*)$")
_KEY_VALUE_RE = re.compile(r"^\*\*(.+?):?\*\*:?\s*(.*)$")

# Heading (normalised) → field.  Checked in order; first match wins.
_SECTION_RULES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"out[- ]of[- ]scope|misuse|prohibited use|not intended"), ("out_of_scope",)),
    (re.compile(r"bias.*limitation|risk.*limitation|limitation.*(bias|risk)"),
     ("risks", "limitations")),
    (re.compile(r"(intended )?uses?\b.*limitation"), ("intended_uses", "limitations")),
    (re.compile(r"limitation"), ("limitations",)),
    (re.compile(r"fairness"), ("fairness",)),
    (re.compile(r"\bbias|\brisks?\b|ethic"), ("risks",)),
    (re.compile(r"recommendation|mitigation"), ("recommendations",)),
    (re.compile(r"(intended|primary|target) users|^users$"), ("users",)),
    (re.compile(r"intended use|^uses?$|direct use|downstream use|use cases?|^usage$"
                r"|intended purpose"), ("intended_uses",)),
    (re.compile(r"trade[- ]?offs?"), ("tradeoffs",)),
    (re.compile(r"architecture"), ("architecture",)),
    (re.compile(r"environmental impact|carbon|energy"), ("environmental",)),
)


def _normalise_heading(text: str) -> str:
    text = _PLACEHOLDER_RE.sub("", text)
    text = re.sub(r"[*_`]", "", text)
    text = re.sub(r"^\s*(?:\d+(?:\.\d+)*\.?)\s*", "", text)   # "3.1 Limitations"
    text = text.strip().rstrip(":").strip().lower()
    return re.sub(r"\s+", " ", text)


def _section_fields(heading: str) -> tuple[str, ...]:
    norm = _normalise_heading(heading)
    for pattern, fields in _SECTION_RULES:
        if pattern.search(norm):
            return fields
    return ()


def _clean(text: str) -> str:
    """Collapse whitespace; drop placeholders. Empty string when nothing is left."""
    text = _PLACEHOLDER_RE.sub("", text)
    text = re.sub(r"\s+", " ", text).strip()
    return "" if text in ("", "-", ":") else text


def _entries(lines: list[str]) -> list[str]:
    """Split a section body into list items / paragraphs (code blocks and tables dropped)."""
    out: list[str] = []
    current: list[str] = []
    in_fence = False

    def flush() -> None:
        if current:
            text = _clean(" ".join(current))
            if text:
                out.append(text)
            current.clear()

    for line in lines:
        if _FENCE_RE.match(line):
            flush()
            in_fence = not in_fence
            continue
        if in_fence or line.lstrip().startswith("|"):
            continue
        if not line.strip():
            flush()
            continue
        item = _LIST_ITEM_RE.match(line)
        if item:
            flush()
            current.append(item.group(1))
        else:
            current.append(line.strip())
    flush()
    return out


def _sections(body: str) -> list[tuple[str, int, list[str]]]:
    """(heading, level, own body lines) for every heading, in order; preamble skipped."""
    body = _COMMENT_RE.sub("", body)
    lines = body.splitlines()
    sections: list[tuple[str, int, list[str]]] = []
    in_fence = False
    i = 0
    while i < len(lines):
        line = lines[i]
        if _FENCE_RE.match(line):
            in_fence = not in_fence
        if not in_fence:
            m = _HEADING_RE.match(line)
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if m:
                sections.append((m.group(2), len(m.group(1)), []))
                i += 1
                continue
            if (line.strip() and _SETEXT_RE.match(nxt) and not _LIST_ITEM_RE.match(line)
                    and not line.lstrip().startswith("|")):
                sections.append((line.strip(), 1 if nxt.strip().startswith("=") else 2, []))
                i += 2
                continue
        if sections:
            sections[-1][2].append(line)
        i += 1
    return sections


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if v is not None and str(v).strip()]
    text = str(value).strip()
    return [text] if text else []


def _as_str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip()
    return text or None


def _metric_value(value: Any) -> str | None:
    if isinstance(value, float):
        return repr(value)
    return _as_str(value)


def _parse_model_index(data: Any, card: ModelCard) -> None:
    if not isinstance(data, list):
        if data is not None:
            card.warnings.append("model-index is not a list; ignored")
        return
    for entry in data:
        if not isinstance(entry, dict):
            continue
        if card.model_name is None:
            card.model_name = _as_str(entry.get("name"))
        for result in entry.get("results") or []:
            if not isinstance(result, dict):
                continue
            task = result.get("task") if isinstance(result.get("task"), dict) else {}
            ds = result.get("dataset") if isinstance(result.get("dataset"), dict) else {}
            for metric in result.get("metrics") or []:
                if not isinstance(metric, dict):
                    continue
                mtype = _as_str(metric.get("type")) or _as_str(metric.get("name"))
                value = _metric_value(metric.get("value"))
                if not mtype or value is None:
                    continue
                card.metrics.append(Metric(
                    type=mtype, value=value, name=_as_str(metric.get("name")),
                    task=_as_str(task.get("type")) or _as_str(task.get("name")),
                    dataset=_as_str(ds.get("name")) or _as_str(ds.get("type")),
                    split=_as_str(ds.get("split")), config=_as_str(ds.get("config"))))


def _apply_front_matter(meta: dict[str, Any], card: ModelCard) -> None:
    card.license = _as_str(meta.get("license"))
    if isinstance(meta.get("license"), list):   # some cards list several
        names = _as_list(meta["license"])
        card.license = " OR ".join(names) if names else None
    card.license_name = _as_str(meta.get("license_name"))
    card.base_models = _as_list(meta.get("base_model"))
    card.datasets = _as_list(meta.get("datasets"))
    card.pipeline_tag = _as_str(meta.get("pipeline_tag"))
    card.library_name = _as_str(meta.get("library_name"))
    card.tags = _as_list(meta.get("tags"))
    card.languages = _as_list(meta.get("language"))
    _parse_model_index(meta.get("model-index", meta.get("model_index")), card)
    co2 = meta.get("co2_eq_emissions")
    if isinstance(co2, dict):
        card.co2 = {str(k): v for k, v in ((k, _as_str(v)) for k, v in co2.items()) if v}
    elif _as_str(co2):
        card.co2 = {"emissions": _as_str(co2) or ""}


def _apply_sections(body: str, card: ModelCard) -> None:
    for heading, _level, lines in _sections(body):
        fields = _section_fields(heading)
        if not fields:
            continue
        entries = _entries(lines)
        if not entries:
            continue
        for name in fields:
            if name == "architecture":
                if card.architecture is None:
                    card.architecture = entries[0]
            elif name == "environmental":
                for entry in entries:
                    kv = _KEY_VALUE_RE.match(entry)
                    if kv and _clean(kv.group(2)):
                        card.environmental[_clean(kv.group(1))] = _clean(kv.group(2))
            else:
                target: list[str] = getattr(card, name)
                target.extend(e for e in entries if e not in target)


def parse_model_card(text: str, *, source: str | None = None,
                     strict: bool = False) -> ModelCard:
    """Parse a model card.

    Malformed YAML front matter (or front matter that is not a mapping) raises
    :class:`ModelCardError` when ``strict`` (a card the user named explicitly);
    otherwise the front matter is ignored, a warning is recorded in
    ``ModelCard.warnings`` and the Markdown sections are still read.
    """
    import yaml

    card = ModelCard(source=source)
    body = text
    m = _FRONT_MATTER_RE.match(text)
    if m:
        body = text[m.end():]
        where = source or "model card"
        try:
            meta = yaml.safe_load(m.group(1))
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f" (line {mark.line + 2})" if mark is not None else ""
            problem = getattr(err, "problem", None) or "invalid YAML"
            msg = f"{where}: front matter is not valid YAML{line}: {problem}"
            if strict:
                raise ModelCardError(msg, fix="fix the YAML between the leading '---' lines") \
                    from None
            card.warnings.append(msg + "; front matter ignored")
            meta = None
        if meta is not None and not isinstance(meta, dict):
            msg = f"{where}: front matter is not a YAML mapping"
            if strict:
                raise ModelCardError(msg, fix="write the front matter as 'key: value' lines")
            card.warnings.append(msg + "; ignored")
        elif isinstance(meta, dict):
            _apply_front_matter({str(k): v for k, v in meta.items()}, card)
    _apply_sections(body, card)
    return card


def load_model_card(path: str | Path, *, source: str | None = None,
                    strict: bool = True) -> ModelCard:
    """Read and parse a model card file (UTF-8, at most 4 MiB)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_CARD_BYTES + 1)
    except OSError as err:
        raise ModelCardError(f"cannot read model card {p}: {err.strerror}",
                             fix="check the --model-card path") from None
    if len(raw) > MAX_CARD_BYTES:
        raise ModelCardError(f"model card {p} is larger than 4 MiB",
                             fix="a model card is a Markdown file; name the right file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelCardError(f"model card {p} is not UTF-8 text",
                             fix="save the model card as UTF-8 Markdown") from None
    return parse_model_card(text, source=source, strict=strict)


# --------------------------------------------------------------------------- finding

_CARD_NAMES = ("MODEL_CARD.md", "model_card.md", "MODELCARD.md", "modelcard.md",
               "README.md", "readme.md", "Readme.md")


def _attr(obj: Any, *names: str) -> Any:
    for name in names:
        if isinstance(obj, dict):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    return None


def find_model_card(kitfile: Any, context_dir: str | Path) -> Path | None:
    """The model card of a ModelKit context, or None.

    Looks, in this order, at: a docs entry that is a model-card file (``MODEL_CARD.md``,
    ``README.md`` ...) or a docs directory holding one; then the same names inside the
    model directory; then at the context root. Files outside the context (symlinks
    included) are never returned. Whether the card is packed in the ModelKit is decided
    by :func:`kitaudit.mlbom.build_mlbom` from the layer paths.
    """
    root = Path(context_dir).resolve()
    candidates: list[Path] = []

    def add_dir_or_file(rel: str | None) -> None:
        if not rel or "://" in rel:
            return
        p = (root / rel)
        if p.is_dir():
            candidates.extend(p / n for n in _CARD_NAMES)
        elif p.name in _CARD_NAMES or p.name.lower().endswith(("model_card.md", "modelcard.md")):
            candidates.append(p)

    docs = _attr(kitfile, "docs") or []
    for doc in docs:
        add_dir_or_file(_attr(doc, "path"))
    model = _attr(kitfile, "model")
    if model is not None:
        add_dir_or_file(_attr(model, "path"))
    candidates.extend(root / n for n in _CARD_NAMES)
    for cand in candidates:
        try:
            resolved = cand.resolve()
        except OSError:
            continue
        if resolved.is_file() and (resolved == root or root in resolved.parents):
            return resolved
    return None
