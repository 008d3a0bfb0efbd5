"""--filter grammar: kit's tables (filters.yaml) plus our aliases and path handling."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kitaudit.errors import UsageError
from kitaudit.filters import (
    FILTER_TYPES,
    FilterSet,
    LayerFilter,
    filters_from_unpack_flags,
    parse_filter,
    parse_filters,
)

DATA = yaml.safe_load(Path("/work/shared/conformance/kitops/filters.yaml").read_text())


def test_valid_types_are_the_newest_kit_set() -> None:
    newest = DATA["valid_types"]["0cbcf21a2e355bfae9b054482b0567d1d7fd6451"]
    assert sorted(FILTER_TYPES) == sorted(newest)
    assert list(FILTER_TYPES) == newest  # same order as kit's error message


@pytest.mark.parametrize("case", DATA["parse_filter"], ids=lambda c: c["name"])
def test_parse_filter(case: dict) -> None:
    if case["expect_error"]:
        with pytest.raises(UsageError) as info:
            parse_filter(case["filter"])
        assert case["error_contains"] in str(info.value)
        assert info.value.fix
        return
    flt = parse_filter(case["filter"])
    assert list(flt.types) == case["expected_types"]
    assert list(flt.targets) == case["expected_filters"]


@pytest.mark.parametrize("case", DATA["filters_from_unpack_conf"], ids=lambda c: c["name"])
def test_filters_from_unpack_flags(case: dict) -> None:
    fs = filters_from_unpack_flags(**case["flags"])
    assert len(fs) == 1
    (only,) = fs
    assert len(only.types) == case["expected_type_count"]
    assert set(case.get("expected_types", [])) <= set(only.types)
    assert only.targets == ()


def test_unpack_flags_order() -> None:
    (f,) = filters_from_unpack_flags(kitfile=True, models=True, code=True, datasets=True,
                                     docs=True)
    assert f.types == ("kitfile", "model", "docs", "datasets", "code")
    (none,) = filters_from_unpack_flags()
    assert not none.matches("model", SimpleNamespace(name="m", path="m.bin"))


@pytest.mark.parametrize("case", DATA["layer_matching"], ids=lambda c: c["name"])
def test_layer_matching(case: dict) -> None:
    entry = SimpleNamespace(**case["layer"])  # a missing name is a missing attribute
    fs = parse_filters([case["filter"]])
    assert fs.matches(case["layer_type"], entry) is case["expect"]
    assert parse_filter(case["filter"]).matches(case["layer_type"], case["layer"]) \
        is case["expect"]


def test_aliases_and_case() -> None:
    assert parse_filter("config").types == ("kitfile",)
    assert parse_filter("dataset:validation").types == ("datasets",)
    assert parse_filter("Model,MCPServers").types == ("model", "mcpservers")
    assert parse_filter("model,model").types == ("model",)
    assert parse_filter("model: a , b").targets == ("a", "b")
    with pytest.raises(UsageError, match="invalid filter type modelpart"):
        parse_filter("modelpart")


@pytest.mark.parametrize("text", ["model:", "model:a,,b", "datasets:,"])
def test_empty_target_is_an_error(text: str) -> None:
    with pytest.raises(UsageError, match="empty name or path"):
        parse_filter(text)


def test_model_covers_parts_and_kinds() -> None:
    part = SimpleNamespace(name="adapter", path="lora.safetensors")
    assert parse_filters(["model"]).matches("modelpart", part)
    assert parse_filters(["model:adapter"]).matches("modelpart", part)
    assert not parse_filters(["model:base"]).matches("modelpart", part)
    assert parse_filters(["datasets:train"]).matches("dataset", {"name": "train", "path": "d"})
    assert not parse_filters(["code"]).matches("dataset", {"name": "train", "path": "d"})
    with pytest.raises(ValueError):
        parse_filters(["code"]).matches("bogus", {})


def test_code_and_docs_match_by_path_only() -> None:
    doc = {"name": "readme", "path": "./README.md"}
    assert not parse_filters(["docs:readme"]).matches("docs", doc)
    assert parse_filters(["docs:./README.md"]).matches("docs", doc)
    assert parse_filters(["docs:README.md"]).matches("docs", doc)  # same path, cleaned
    assert parse_filters(["code:src"]).matches("code", {"path": "src/"})
    assert not parse_filters(["code:src"]).matches("code", {"path": "src2"})


def test_nameless_entry_never_matches_by_empty_name() -> None:
    assert not parse_filters(["model:x"]).matches("model", {"name": "", "path": "m.bin"})


def test_or_semantics_and_kitfile() -> None:
    empty = parse_filters([])
    assert not empty and empty.wants_kitfile() and empty.matches("docs", {"path": "x"})
    assert parse_filters(None) == FilterSet()
    fs = parse_filters(["docs", "datasets:train"])
    assert fs.matches("docs", {"path": "a.md"})
    assert fs.matches("dataset", {"name": "train", "path": "t"})
    assert not fs.matches("dataset", {"name": "val", "path": "v"})
    assert not fs.wants_kitfile()
    assert parse_filters(["config:anything"]).wants_kitfile()
    assert parse_filters(["kitfile:x"]).matches("kitfile")


def test_selects_any() -> None:
    kf = SimpleNamespace(
        model=SimpleNamespace(name="m", path="m.gguf",
                              parts=[SimpleNamespace(name="", path="p.bin")]),
        datasets=[], code=[SimpleNamespace(path="src")], docs=[], prompts=[], mcp_servers=[])
    assert parse_filters(["model:p.bin"]).selects_any(kf)
    assert parse_filters(["code:src"]).selects_any(kf)
    assert not parse_filters(["datasets"]).selects_any(kf)
    assert parse_filters(["kitfile"]).selects_any(kf)


def test_str_round_trip() -> None:
    f = parse_filter("model,datasets:a,b")
    assert str(f) == "model,datasets:a,b"
    assert parse_filter(str(f)) == f
    assert LayerFilter(("docs",)).matches("docs", None)


_words = st.sampled_from([*FILTER_TYPES, "config", "dataset", "bogus", "", "MODEL"])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdemolst:,./ ", max_size=30)
       | st.lists(_words, max_size=3).map(",".join))
def test_parse_filter_only_raises_usage_error(text: str) -> None:
    try:
        f = parse_filter(text)
    except UsageError:
        return
    assert f.types and set(f.types) <= set(FILTER_TYPES)
    assert parse_filter(str(f)) == f
