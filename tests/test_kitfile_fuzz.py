"""Property tests for kitaudit.kitfile.

* Any text, and any YAML-ish structure, gives a Kitfile or a KitfileError, never another
  exception and never the last-resort fallback of loads() (which would mean a bug of ours;
  it chains the unexpected exception as ``__cause__``).
* Any Kitfile survives to_yaml -> loads and to_json -> from_json unchanged, which checks
  the YAML emitter's quoting/escaping against a real YAML parser (libyaml).
"""

from __future__ import annotations

import json
import os

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kitaudit import kitfile as kf
from kitaudit.errors import KitfileError
from kitaudit.kitfile import (
    INTERNAL_ERROR_MARKER,
    Code,
    Dataset,
    Doc,
    Kitfile,
    McpServer,
    Model,
    ModelPart,
    Package,
    Prompt,
)

# KITAUDIT_FUZZ_EXAMPLES raises the example count for a longer local fuzzing run.
FUZZ = settings(max_examples=int(os.environ.get("KITAUDIT_FUZZ_EXAMPLES", "100")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def load_or_error(text: str) -> Kitfile | None:
    try:
        k = kf.loads(text)
    except KitfileError as err:
        # The last-resort handler in loads() chains the unexpected exception.
        assert err.__cause__ is None, f"{INTERNAL_ERROR_MARKER}: {err.__cause__!r}"
        assert err.problems
        return None
    # Whatever loads must also validate (or fail cleanly) and serialise.
    try:
        k.validate()
    except KitfileError as err:
        assert err.problems
    k.to_json()
    k.to_yaml()
    return k


# --------------------------------------------------------------------------- arbitrary text

YAML_ALPHABET = st.sampled_from([*"abc:-[]{}!&*#?|>'\"%@`,.~ \t\n\r\\0123456789eE+_x",
                                 "\x00", "\x85", "\u2028", "\ufeff", "é", "😀", "\ud800"])


@FUZZ
@given(st.text())
def test_arbitrary_text_never_crashes(text: str) -> None:
    load_or_error(text)


@FUZZ
@given(st.text(alphabet=YAML_ALPHABET, max_size=200))
def test_yaml_punctuation_soup_never_crashes(text: str) -> None:
    load_or_error(text)


@FUZZ
@given(st.lists(st.sampled_from([
    "manifestVersion: 1.0.0", "package:", "  name: x", "  authors: [a, b]", "model:",
    "  path: m", "  parts:", "    - path: p", "      type: t", "  parameters:",
    "    a: &x [1, 2]", "    b: *x", "    <<: {c: 3}", "datasets:", "  - path: d",
    "    remotePath: s3://b/k", "code: ~", "docs: [{path: r}]", "- x", "  - y", "? k",
    ": v", "---", "...", "%YAML 1.1", "!!str", "  !!map {}", "&a b", "*a", "|", ">-",
    "   text", "\t", "mcpServers:", "  - name: n", "prompts: {}", "{", "]",
]), max_size=25))
def test_kitfile_shaped_line_soup_never_crashes(lines: list[str]) -> None:
    load_or_error("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- YAML structures

KEYS = st.sampled_from(["manifestVersion", "package", "model", "datasets", "code", "docs",
                        "prompts", "mcpServers", "name", "path", "parts", "parameters",
                        "remotePath", "remoteHash", "authors", "type", "digest", "x"])
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=20) | st.sampled_from(["1.0.0", "s3://b/k", "/abs", "../up",
                                                     "a:b", "yes", "0x1F", ".inf"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(KEYS | st.text(max_size=5), inner, max_size=5)
                      | st.dictionaries(st.integers() | st.booleans(), inner, max_size=2),
                      max_leaves=25)


@FUZZ
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_yaml_structures_never_crash(doc: dict) -> None:
    load_or_error(yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(VALUES)
def test_any_yaml_value_never_crashes(value: object) -> None:
    load_or_error(yaml.safe_dump(value, allow_unicode=True))


@FUZZ
@given(st.dictionaries(KEYS, VALUES, max_size=8))
def test_config_json_structures_never_crash(doc: dict) -> None:
    try:
        text = json.dumps(doc)
    except ValueError:
        return
    try:
        k = kf.from_json(text)
    except KitfileError as err:
        assert err.problems
        return
    k.to_json()
    k.to_yaml()


# --------------------------------------------------------------------------- round trips

TEXT = st.text(max_size=30)
JSON_SCALAR = (st.none() | st.booleans()
               | st.integers(min_value=-(2**63), max_value=2**63 - 1)
               | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
PARAMS = st.none() | st.recursive(
    JSON_SCALAR, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20)
DIGEST = st.just("") | st.just("sha256:" + "ab" * 32)


# JSON (the config blob) carries numbers as Go float64: integers beyond 2**53 are not
# exact there, so the JSON round trip uses integers within that range.
JSON_SCALAR_53 = (st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53)
                  | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
PARAMS_53 = st.none() | st.recursive(
    JSON_SCALAR_53, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(TEXT, inner, max_size=4), max_leaves=20)


def kitfiles(with_digests: bool) -> st.SearchStrategy[Kitfile]:
    dig = DIGEST if with_digests else st.just("")
    params = PARAMS_53 if with_digests else PARAMS
    part = st.builds(ModelPart, TEXT, TEXT, TEXT, TEXT, dig, dig)
    model = st.builds(Model, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT,
                      st.lists(part, max_size=2), params, dig, dig)
    return st.builds(
        Kitfile, TEXT,
        st.builds(Package, TEXT, TEXT, TEXT, TEXT, st.lists(TEXT, max_size=3)),
        st.none() | model,
        st.lists(st.builds(Dataset, TEXT, TEXT, TEXT, TEXT, TEXT, TEXT, params, dig, dig),
                 max_size=2),
        st.lists(st.builds(Code, TEXT, TEXT, TEXT, dig, dig), max_size=2),
        st.lists(st.builds(Doc, TEXT, TEXT, dig, dig), max_size=2),
        st.lists(st.builds(Prompt, TEXT, TEXT, TEXT, dig, dig), max_size=2),
        st.lists(st.builds(McpServer, TEXT, TEXT, TEXT, dig, dig), max_size=2),
    )


def normalised(k: Kitfile) -> Kitfile:
    """An empty model section reads back as no model (documented behaviour)."""
    if k.model is not None and k.model == Model():
        k.model = None
    return k


@FUZZ
@given(kitfiles(with_digests=False))
def test_yaml_round_trip(k: Kitfile) -> None:
    k = normalised(k)
    text = k.to_yaml()
    back = kf.loads(text)
    assert back == k, text
    # Re-serialising is stable; the one exception is Go's own: float -0.0 is written
    # "-0", which reads back as the integer 0 (equal, but written "0").
    again = back.to_yaml()
    assert again == text or "-0" in text
    assert kf.loads(again).to_yaml() == again


@FUZZ
@given(kitfiles(with_digests=True))
def test_json_round_trip(k: Kitfile) -> None:
    k = normalised(k)
    text = k.to_json()
    assert json.loads(text) == k.to_dict()
    back = kf.from_json(text.encode("utf-8"))
    assert back == k
    assert back.to_json() == text


@FUZZ
@given(kitfiles(with_digests=False))
def test_validation_only_raises_kitfile_error(k: Kitfile) -> None:
    try:
        k.validate()
    except KitfileError as err:
        assert err.problems
    k.validation_warnings()
    k.local_entries()
    k.base_model_reference()


@FUZZ
@given(st.text(max_size=40))
def test_path_helpers_total(p: str) -> None:
    cleaned = kf.clean_path(p)
    assert kf.clean_path(cleaned) == cleaned
    assert cleaned == "/" or (cleaned != "" and not cleaned.endswith("/"))
    assert kf.get_path_type(p) in ("local", "modelkit-reference", "s3", "http", "url")
    kf.is_modelkit_reference(p)
