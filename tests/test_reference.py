"""References: kit's conformance table (references.yaml) plus properties."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kitaudit.errors import InvalidReference
from kitaudit.reference import (
    Reference,
    is_digest,
    is_reference,
    parse,
    parse_for_command,
)

CONFORMANCE = Path("/work/shared/conformance/kitops/references.yaml")
CASES = yaml.safe_load(CONFORMANCE.read_text())["cases"]
DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def _reference_field(ref: Reference) -> str:
    return ref.digest or ref.tag or ""


@pytest.mark.parametrize("case", CASES, ids=[c["input"] or "<empty>" for c in CASES])
def test_conformance_parse(case: dict) -> None:
    if case.get("expect_error"):
        with pytest.raises(InvalidReference):
            parse(case["input"])
        return
    ref, extra = parse(case["input"])
    exp = case["expected"]
    assert ref.registry == exp["registry"]
    assert ref.repository == exp["repository"]
    # parse() follows later kit: no tag and no digest stays empty.
    assert _reference_field(ref) == case.get("expected_reference_later", exp["reference"])
    assert extra == case["expected_extra_tags"]


@pytest.mark.parametrize("case", [c for c in CASES if not c.get("expect_error")],
                         ids=lambda c: c["input"])
def test_conformance_parse_for_command(case: dict) -> None:
    if case["expected_extra_tags"]:
        with pytest.raises(InvalidReference, match="one reference"):
            parse_for_command(case["input"])
        return
    ref = parse_for_command(case["input"])
    exp = case["expected"]
    assert (ref.registry, ref.repository, ref.reference) == (
        exp["registry"], exp["repository"], exp["reference"])


def test_digest_and_tag_split() -> None:
    ref, _ = parse("testrepo:ignoredtag@" + DIGEST)
    assert ref.tag is None and ref.digest == DIGEST
    ref, _ = parse("reg.io:5000/a/b:v1")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("reg.io:5000", "a/b", "v1", None)


@pytest.mark.parametrize("text,fragment", [
    ("", "empty"),
    ("Repo:tag", "must be lowercase"),
    ("org/Repo", "must be lowercase"),
    ("repo-:tag", "must start and end"),
    ("-repo", "must start and end"),
    ("repo:", "tag '' is not valid"),
    ("repo:.bad", "tag '.bad' is not valid"),
    ("repo:" + "x" * 129, "is not valid"),
    ("repo@sha256:abc", "digest"),
    ("repo@md5:" + "a" * 32, "digest"),
    ("repo@sha256:" + "A" * 64, "digest"),
    ("reg.io/", "repository is missing"),
    ("bad host.io/repo", "registry"),
    ("repo:v1,", "tag '' is not valid"),
    ("repo:v1,bad tag", "is not valid"),
])
def test_invalid(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference) as info:
        parse(text)
    assert fragment in str(info.value)
    assert info.value.fix


def test_str_and_helpers() -> None:
    ref, _ = parse("reg.io/org/model:v1")
    assert str(ref) == "reg.io/org/model:v1"
    assert ref.name == "reg.io/org/model"
    assert str(ref.with_tag("v2")) == "reg.io/org/model:v2"
    pinned = ref.with_digest(DIGEST)
    assert str(pinned) == f"reg.io/org/model:v1@{DIGEST}"
    assert pinned.reference == DIGEST
    assert pinned.with_tag("x").digest is None
    with pytest.raises(InvalidReference):
        ref.with_tag("bad tag")
    with pytest.raises(InvalidReference):
        ref.with_digest("sha256:nope")
    assert ref.display == "reg.io/org/model:v1"
    assert parse("org/m:v1")[0].display == "org/m:v1"
    plain, _ = parse(DIGEST)
    assert plain.display == DIGEST
    assert str(plain) == f"localhost/_@{DIGEST}"
    assert parse(str(plain))[0] == plain


def test_localhost_first_component_is_registry() -> None:
    # kit would make this repository "localhost/model"; we read our canonical form back.
    ref, _ = parse("localhost/model:v1")
    assert (ref.registry, ref.repository) == ("localhost", "model")
    assert parse("model:v1")[0] == ref


def test_parse_for_command_latest() -> None:
    assert parse_for_command("a/b").tag == "latest"
    assert str(parse_for_command("a/b")) == "localhost/a/b:latest"
    assert parse_for_command("a@" + DIGEST).tag is None


def test_default_registry_option() -> None:
    ref, _ = parse("team/model:v1", default_registry="registry.example.com")
    assert ref.name == "registry.example.com/team/model"


@pytest.mark.parametrize("text,expected", [
    ("model:v1", True), ("reg.io/m@" + DIGEST, True), ("models/llama", False),
    ("data/train.csv", False),
    ("C:/x", True),  # kit too: "C:" is a registry with an empty port
    ("http://example.com/x", False),
    ("a:b:c", False),
])
def test_is_reference(text: str, expected: bool) -> None:
    assert is_reference(text) is expected


@pytest.mark.parametrize("text,kit_accepts,parse_accepts", [
    ("a+b.io/m:v1", True, False),          # kit: Go URL sub-delimiters in a registry name
    ("m:v1,x y", True, False),             # kit does not check extra tags
    ("_:v1", False, True),                 # the "_" placeholder repository is ours
    ("localhost/_@" + DIGEST, False, True),
    ("localhost/m:v1", True, True),        # both; only the split differs
])
def test_is_reference_is_kits_rule_not_parse(text: str, kit_accepts: bool,
                                             parse_accepts: bool) -> None:
    """is_reference is kit's model.path rule; the documented cases where parse differs."""
    assert is_reference(text) is kit_accepts
    if parse_accepts:
        parse(text)
    else:
        with pytest.raises(InvalidReference):
            parse(text)


def test_is_digest() -> None:
    assert is_digest(DIGEST)
    assert is_digest("sha512:" + "0" * 128)
    assert not is_digest("sha256:" + "0" * 63)
    assert not is_digest("sha256:layer1")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60))
def test_parse_only_raises_invalid_reference(text: str) -> None:
    try:
        parse(text)
    except InvalidReference:
        pass


_component = st.from_regex(r"[a-z0-9]{1,4}(?:[._-][a-z0-9]{1,3})?", fullmatch=True)
_refs = st.builds(
    lambda reg, parts, tag, dig: (
        (f"{reg}/" if reg else "") + "/".join(parts)
        + (f":{tag}" if tag else "") + (f"@{dig}" if dig else "")),
    st.sampled_from(["", "reg.io", "localhost:5000", "localhost", "a.b.c:1"]),
    st.lists(_component, min_size=1, max_size=3),
    st.one_of(st.none(), st.from_regex(r"\w[\w.-]{0,10}", fullmatch=True)),
    st.one_of(st.none(), st.just(DIGEST)),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_refs, st.text(max_size=40)))
def test_round_trip(text: str) -> None:
    try:
        ref, _ = parse(text)
    except InvalidReference:
        return
    again, extra = parse(str(ref))
    assert again == ref
    assert extra == []
    assert parse(ref.display)[0] == ref
