"""Unit tests for kitaudit.kitfile: strict loading, errors with lines, validation,
serialisation details (Go yaml.v3 / encoding/json compatibility), helpers."""

from __future__ import annotations

import json
import os
import stat
import statistics
import time
from pathlib import Path

import pytest

from kitaudit import kitfile as kf
from kitaudit.errors import KitfileError, NotFound
from kitaudit.kitfile import (
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


def problems_of(text: str, *, validate: bool = False) -> list[str]:
    with pytest.raises(KitfileError) as info:
        k = kf.loads(text)
        if validate:
            k.validate()
    return info.value.problems


# --------------------------------------------------------------------------- parsing


FULL = """\
manifestVersion: 1.0.0
package:
  name: demo
  version: 1.0.0
  description: A demo
  license: Apache-2.0
  authors: [Alice, Bob]
model:
  name: llm
  path: model.gguf
  license: MIT
  framework: llama.cpp
  format: gguf
  version: "2"
  description: the model
  parts:
    - name: adapter
      path: adapters/lora.bin
      license: MIT
      type: lora
  parameters:
    temperature: 0.7
code:
  - path: src
    description: code
    license: MIT
datasets:
  - name: train
    path: data/train.csv
    description: training
    license: CC-BY-4.0
    parameters:
      rows: 10
  - name: remote
    path: data/remote
    remotePath: s3://bucket/key
    remoteHash: abc
docs:
  - path: README.md
    description: readme
prompts:
  - name: system
    path: prompts/system.md
    description: sys
mcpServers:
  - name: fs
    path: servers/fs.mcpb
    description: filesystem
"""


def test_full_kitfile_fields() -> None:
    k = kf.loads(FULL)
    assert k.manifest_version == "1.0.0"
    assert k.package == Package("demo", "1.0.0", "A demo", "Apache-2.0", ["Alice", "Bob"])
    assert k.model is not None
    assert k.model.parts == [ModelPart("adapter", "adapters/lora.bin", "MIT", "lora")]
    assert k.model.parameters == {"temperature": 0.7}
    assert k.model.version == "2"
    assert k.code == [Code("src", "code", "MIT")]
    assert k.datasets[0].parameters == {"rows": 10}
    assert k.datasets[1].remote_path == "s3://bucket/key"
    assert k.datasets[1].remote_hash == "abc"
    assert k.docs == [Doc("README.md", "readme")]
    assert k.prompts == [Prompt("system", "prompts/system.md", "sys")]
    assert k.mcp_servers == [McpServer("fs", "servers/fs.mcpb", "filesystem")]
    k.validate()
    assert k.to_yaml() == FULL
    assert kf.loads(k.to_yaml()) == k


def test_unknown_field_names_file_line_and_path() -> None:
    text = "manifestVersion: 1.0.0\ndatasets:\n  - path: a\n  - pathh: b\n"
    assert problems_of(text) == ["Kitfile:4: datasets[1].pathh: unknown field"]


def test_error_message_format_and_source() -> None:
    with pytest.raises(KitfileError) as info:
        kf.loads("manifestVersion: 1.0.0\nmodle: {}\n", source="dir/Kitfile")
    assert str(info.value) == "dir/Kitfile:2: modle: unknown field"
    assert info.value.source == "dir/Kitfile"
    assert info.value.fix


def test_all_problems_collected() -> None:
    text = """\
manifestVersion: 1.0.0
package:
  name: [a, b]
  authors: Alice
  colour: red
model:
  path: m
  parts: {path: x}
  digest: sha256:abc
code:
  path: src
extra: 1
"""
    assert problems_of(text) == [
        "Kitfile:3: package.name: expected a string, got a list",
        "Kitfile:4: package.authors: expected a list of strings, got the scalar 'Alice'",
        "Kitfile:5: package.colour: unknown field",
        "Kitfile:8: model.parts: expected a list, got a mapping",
        "Kitfile:9: model.digest: unknown field",
        "Kitfile:11: code: expected a list, got a mapping",
        "Kitfile:12: extra: unknown field",
    ]
    with pytest.raises(KitfileError) as info:
        kf.loads(text)
    assert str(info.value).startswith("7 problems: Kitfile:3: package.name")


def test_duplicate_keys_are_errors() -> None:
    text = "manifestVersion: 1.0.0\npackage:\n  name: a\n  name: b\n"
    assert problems_of(text) == [
        "Kitfile:4: package.name: mapping key already defined at line 3"]


def test_yaml_syntax_error_has_line() -> None:
    probs = problems_of("manifestVersion: 1.0.0\npackage:\n  name: [a\n")
    assert len(probs) == 1
    assert probs[0].startswith("Kitfile:4: invalid YAML:")


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "~\n", "null"])
def test_empty_kitfile(text: str) -> None:
    assert problems_of(text) == ["Kitfile: Kitfile is empty"]


@pytest.mark.parametrize("text,kind", [("- a\n- b\n", "a list"),
                                       ("just text\n", "the scalar 'just text'")])
def test_top_level_must_be_mapping(text: str, kind: str) -> None:
    assert problems_of(text) == [f"Kitfile:1: expected a mapping of Kitfile fields, got {kind}"]


def test_control_characters_rejected() -> None:
    probs = problems_of("manifestVersion: 1.0.0\npackage:\n  name: a\x07b\n")
    assert probs[0].startswith("Kitfile:3: invalid YAML: unacceptable character")


def test_only_first_document_is_read() -> None:
    # Go's yaml Decoder.Decode reads one document; kit ignores what follows.
    k = kf.loads("manifestVersion: 1.0.0\n---\nnot: read\n")
    assert k.manifest_version == "1.0.0"


def test_scalars_in_string_fields_keep_their_text() -> None:
    k = kf.loads("manifestVersion: 1.0.0\npackage:\n  name: true\n  version: 1.10\n"
                 "  description: ~\n  license: 0x1F\n")
    assert k.package == Package(name="true", version="1.10", license="0x1F")


def test_null_sections_are_empty() -> None:
    k = kf.loads("manifestVersion: 1.0.0\npackage:\nmodel:\ncode:\ndatasets: ~\n")
    assert k.package == Package()
    assert k.model is None
    assert k.code == [] and k.datasets == []


def test_empty_model_section_is_none() -> None:
    assert kf.loads("manifestVersion: 1.0.0\nmodel: {}\n").model is None


def test_null_list_item_is_an_empty_entry() -> None:
    k = kf.loads("manifestVersion: 1.0.0\ncode:\n  - ~\n")
    assert k.code == [Code()]


def test_anchor_alias_and_merge_keys() -> None:
    text = """\
manifestVersion: 1.0.0
code:
  - &c {path: src, license: MIT}
  - <<: *c
    path: lib
model:
  path: m
  parameters:
    base: &b {lr: 0.1, epochs: 3}
    run:
      <<: *b
      epochs: 5
"""
    k = kf.loads(text)
    assert k.code == [Code("src", license="MIT"), Code("lib", license="MIT")]
    assert k.model is not None
    assert k.model.parameters == {"base": {"lr": 0.1, "epochs": 3},
                                  "run": {"lr": 0.1, "epochs": 5}}


def test_recursive_alias_is_an_error() -> None:
    text = "manifestVersion: 1.0.0\nmodel:\n  path: m\n  parameters: &a [1, *a]\n"
    assert problems_of(text) == ["Kitfile:4: model.parameters[1]: recursive alias"]


def test_alias_bomb_is_stopped() -> None:
    lines = ["manifestVersion: 1.0.0", "model:", "  path: m", "  parameters:",
             "    a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"    a{i}: &a{i} [{', '.join([prev] * 10)}]")
    start = time.monotonic()
    probs = problems_of("\n".join(lines) + "\n")
    assert time.monotonic() - start < 20
    assert any("aliases expand to too many values" in p for p in probs)


# --------------------------------------------------------------------------- parameters


def params(yaml_value: str) -> object:
    k = kf.loads(f"manifestVersion: 1.0.0\nmodel:\n  path: m\n  parameters: {yaml_value}\n")
    assert k.model is not None
    return k.model.parameters


@pytest.mark.parametrize("text,value", [
    ("0xFF", 255), ("1.2e+3", 1200.0), ("0o17", 15), ("017", 15), ("08", 8.0),
    ("1_000", 1000), ("-12", -12), ("+7", 7), (".5", 0.5), ("1.", 1.0),
    ("true", True), ("False", False), ("~", None), ("null", None),
    # YAML 1.1 words that Go yaml.v3 keeps as strings
    ("yes", "yes"), ("off", "off"), ("y", "y"),
    # timestamps decoded into `any` stay strings in Go yaml.v3
    ("2024-01-02", "2024-01-02"), ("2024-01-02T03:04:05Z", "2024-01-02T03:04:05Z"),
    ("1e400", "1e400"), ("18446744073709551615", 18446744073709551615),
    ("99999999999999999999", 1e20), ('"0xFF"', "0xFF"), ("!!str 12", "12"),
    ("!!float 3", 3.0), ("!custom text", "text"),
])
def test_parameter_scalars_follow_go_yaml(text: str, value: object) -> None:
    got = params(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", [".inf", "-.Inf", ".nan", "!!int abc", "{1: a}", "{true: a}",
                                  "{[a]: b}"])
def test_parameters_must_be_json_compatible(text: str) -> None:
    with pytest.raises(KitfileError) as info:
        params(text)
    assert "model.parameters" in str(info.value)


def test_parameter_numbers_normalised_in_json() -> None:
    k = kf.loads("manifestVersion: 1.0.0\nmodel:\n  path: m\n  parameters:\n"
                 "    hex: 0xFF\n    exp: 1.2e+3\n    big: 1e21\n    tiny: 1e-7\n"
                 "    small: 0.000001\n    b: [1, 2.5, -0.0]\n")
    assert k.to_json() == (
        '{"manifestVersion":"1.0.0","package":{},"model":{"path":"m","parameters":'
        '{"b":[1,2.5,-0],"big":1e+21,"exp":1200,"hex":255,"small":0.000001,"tiny":1e-7}}}')


def test_parameter_map_keys_sorted_yaml_natural_json_bytewise() -> None:
    k = kf.loads("manifestVersion: 1.0.0\nmodel:\n  path: m\n  parameters:\n"
                 "    a10: 1\n    a2: 2\n    B: 3\n    a: 4\n")
    assert k.model is not None
    assert list(k.model.parameters) == ["B", "a", "a10", "a2"]
    assert '"parameters":{"B":3,"a":4,"a10":1,"a2":2}' in k.to_json()
    # yaml.v3 sorts map keys "naturally" (numbers by value)
    assert k.to_yaml().endswith("    B: 3\n    a: 4\n    a2: 2\n    a10: 1\n")


# --------------------------------------------------------------------------- output


def test_yaml_string_quoting_like_go_yaml_v3() -> None:
    values = {
        "plain": "plain", "num": "123", "float": "1.5", "bool": "true", "yes": "yes",
        "null": "null", "empty": "", "colon": "a: b", "dash": "- x", "hash": "#x",
        "space": " lead", "tab": "a\tb", "quote": "it's", "date": "2024-01-02",
        "base60": "1:20", "emoji": "hi 😀", "merge": "<<", "dots": "...", "bang": "!x",
        "lit": "line1\nline2", "litnl": "line1\nline2\n", "lead": " x\ny",
    }
    k = Kitfile("1.0.0", model=Model(path="m", parameters=values))
    out = k.to_yaml()
    expected = """\
manifestVersion: 1.0.0
model:
  path: m
  parameters:
    bang: '!x'
    base60: "1:20"
    bool: "true"
    colon: 'a: b'
    dash: '- x'
    date: "2024-01-02"
    dots: '...'
    emoji: "hi \\U0001F600"
    empty: ""
    float: "1.5"
    hash: '#x'
    lead: |2-
       x
      y
    lit: |-
      line1
      line2
    litnl: |
      line1
      line2
    merge: "<<"
    "null": "null"
    num: "123"
    plain: plain
    quote: it's
    space: ' lead'
    tab: "a\\tb"
    "yes": "yes"
"""
    assert out == expected
    assert kf.loads(out) == k


def test_yaml_authors_flow_and_omitted_fields() -> None:
    k = Kitfile("1.0.0", package=Package(name="p", authors=["A B", "x,y", ""]),
                docs=[Doc()], code=[Code()])
    assert k.to_yaml() == ('manifestVersion: 1.0.0\npackage:\n  name: p\n'
                           '  authors: [A B, \'x,y\', ""]\ncode:\n  - {}\ndocs:\n'
                           '  - path: ""\n')
    assert kf.loads(k.to_yaml()) == k


def test_yaml_has_no_layer_digests_json_has_them() -> None:
    k = kf.loads("manifestVersion: 1.0.0\nmodel:\n  path: m\ncode:\n  - path: c\n")
    assert k.model is not None
    k.model.digest, k.model.diff_id = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    k.code[0].digest = "sha256:" + "c" * 64
    assert "digest" not in k.to_yaml()
    assert k.to_json() == (
        '{"manifestVersion":"1.0.0","package":{},"model":{"path":"m","digest":"sha256:'
        + "a" * 64 + '","diffId":"sha256:' + "b" * 64 + '"},"code":[{"path":"c","digest":'
        '"sha256:' + "c" * 64 + '"}]}')
    assert kf.from_json(k.to_json()) == k


def test_json_escapes_like_go() -> None:
    k = Kitfile("1.0.0", package=Package(description="<a&b>\u2028\b\f\x01é"))
    assert k.to_json() == ('{"manifestVersion":"1.0.0","package":{"description":'
                           '"\\u003ca\\u0026b\\u003e\\u2028\\b\\f\\u0001é"}}')


def test_json_order_is_go_struct_order() -> None:
    k = kf.loads(FULL)
    assert list(json.loads(k.to_json())) == ["manifestVersion", "package", "model", "code",
                                             "datasets", "docs", "prompts", "mcpServers"]
    assert k.to_dict() == json.loads(k.to_json())


def test_to_dict_always_has_package_and_version() -> None:
    assert Kitfile().to_dict() == {"manifestVersion": "", "package": {}}


# --------------------------------------------------------------------------- config JSON


def test_from_json_is_lenient_about_unknown_keys_and_case() -> None:
    data = json.dumps({"manifestVersion": "1.0.0", "futureField": {"x": 1},
                       "Package": {"name": "p", "newThing": 1},
                       "model": {"path": "m", "digest": "sha256:x", "diffId": "sha256:y"}})
    k = kf.from_json(data.encode())
    assert k.package.name == "p"
    assert k.model == Model(path="m", digest="sha256:x", diff_id="sha256:y")


@pytest.mark.parametrize("data,fragment", [
    (b"not json", "not valid JSON"),
    (b"[1]", "expected a JSON object"),
    (b'{"manifestVersion": 1}', "manifestVersion: expected a string, got a number"),
    (b'{"model": {"parts": {}}}', "model.parts: expected a list, got an object"),
    (b'{"model": {"path": "m", "parameters": NaN}}', "not valid JSON"),
    (b'{"package": {"authors": [1]}}', "package.authors[0]: expected a string"),
])
def test_from_json_type_errors(data: bytes, fragment: str) -> None:
    with pytest.raises(KitfileError) as info:
        kf.from_json(data)
    assert fragment in str(info.value)


def test_from_json_repairs_lone_surrogates_like_go() -> None:
    k = kf.from_json(b'{"manifestVersion":"1.0.0","package":{"name":"a\\ud800b"}}')
    assert k.package.name == "a\ufffdb"
    k.to_json().encode("utf-8")


# --------------------------------------------------------------------------- validation


def test_validation_reports_every_problem_with_lines() -> None:
    text = """\
manifestVersion: 1.0.0
model:
  path: /abs/model
code:
  - path: ../outside
  - path: https://example.com
datasets:
  - path: data
    remoteHash: x
mcpServers:
  - path: tool.zip
"""
    k = kf.loads(text, source="Kitfile")
    with pytest.raises(KitfileError) as info:
        k.validate()
    assert info.value.problems == [
        "Kitfile:6: code[1].path: invalid path for code (https://example.com): HTTP urls are "
        "not supported in paths",
        "Kitfile:9: datasets[0].remoteHash: remote hash is only applicable when remotePath is "
        "set",
        "Kitfile:11: mcpServers[0].path: invalid path for mcpServer (tool.zip): path must point "
        "to a single .mcpb file",
        "Kitfile:11: mcpServers[0]: mcpServer with path tool.zip must have a name",
        "Kitfile:3: model.path: absolute paths are not supported in a Kitfile (path /abs/model "
        "in model)",
        "Kitfile:5: code[0].path: paths outside the context directory are not supported in a "
        "Kitfile (path ../outside in code layer 0)",
    ]


def test_validation_of_programmatic_kitfile_has_field_paths() -> None:
    k = Kitfile("1.0.0", code=[Code("a"), Code("./a/")])
    with pytest.raises(KitfileError) as info:
        k.validate()
    assert info.value.problems == [
        "code[1].path: code layer 0 and code layer 1 use the same path a"]


def test_manifest_version_strictness() -> None:
    k = Kitfile("2.0", model=Model(path="m"))
    with pytest.raises(KitfileError, match=r"invalid manifestVersion: expect 1\.0\.0 but got 2\.0"):
        k.validate()
    k.validate(strict_version=False)
    assert k.validation_warnings(strict_version=False) == [
        "Unrecognized manifestVersion 2.0: treating Kitfile as 1.0.0"]


def test_remote_modelkit_dataset_hash_is_a_warning() -> None:
    k = Kitfile("1.0.0", datasets=[Dataset(path="d", remote_path="reg.io/a/b:1",
                                           remote_hash="h")])
    k.validate()
    assert k.validation_warnings() == [
        "remoteHash is ignored for ModelKit references in datasets (d)"]


def test_remote_dataset_at_context_root_contains_everything() -> None:
    k = Kitfile("1.0.0", datasets=[Dataset(path=".", remote_path="reg.io/a/b:1")],
                code=[Code("src")])
    with pytest.raises(KitfileError, match=r"code layer 0 uses a path \(src\) that is within"):
        k.validate()


def test_model_part_type_limits() -> None:
    ok = Kitfile("1.0.0", model=Model(path="m", parts=[ModelPart(path="p", type="a" * 64)]))
    ok.validate()
    bad = Kitfile("1.0.0", model=Model(path="m", parts=[ModelPart(path="p", type="a" * 65)]))
    with pytest.raises(KitfileError, match="type is too long"):
        bad.validate()
    # Go's \w is ASCII only
    uni = Kitfile("1.0.0", model=Model(path="m", parts=[ModelPart(path="p", type="é")]))
    with pytest.raises(KitfileError, match="has invalid type"):
        uni.validate()


def test_unrecognized_url_scheme_refused() -> None:
    k = Kitfile("1.0.0", code=[Code("ftp://host/x")])
    with pytest.raises(KitfileError, match="unrecognized URL in path"):
        k.validate()


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize("raw,clean", [
    ("", "."), (".", "."), ("./", "."), ("a/", "a"), ("./a/b/", "a/b"), ("a//b", "a/b"),
    ("a/../b", "b"), ("a/..", "."), ("../a", "../a"), ("a/../../b", "../b"), ("/../a", "/a"),
    ("//a", "/a"), ("/", "/"), ("..", ".."), ("./some/meandering/../../test-path", "test-path"),
])
def test_clean_path_is_go_path_clean(raw: str, clean: str) -> None:
    assert kf.clean_path(raw) == clean


@pytest.mark.parametrize("path,ptype", [
    ("data/train", "local"), ("", "local"), ("s3://b/k", "s3"), ("S3://b/k", "s3"),
    ("https://x.org/a", "http"), ("http://x", "http"), ("ftp://x/y", "url"),
    ("//host/share", "url"), ("test-ref:model-1", "modelkit-reference"),
    ("reg.io/org/repo@sha256:" + "a" * 64, "modelkit-reference"),
    ("localhost:5000/repo:tag", "modelkit-reference"), ("data%zz/x", "local"),
    ("a b:c", "local"), ("Repo:Tag", "url"), ("mailto:x@y.org", "url"),
    ("file:name", "modelkit-reference"),
])
def test_path_types(path: str, ptype: str) -> None:
    assert kf.get_path_type(path) == ptype


@pytest.mark.parametrize("text,expected", [
    ("registry/repo:tag", True), ("test-ref:model-1", True), ("repo@sha256:" + "0" * 64, True),
    ("docker.io/kit-org/kit-repo:latest", True), ("data/train", False), ("s3://a/b", False),
    ("Upper/repo:tag", False), ("UPPER:tag", False), ("repo:", False), (":tag", False),
    ("repo@sha256:short", False), ("repo:bad tag", False),
])
def test_is_modelkit_reference(text: str, expected: bool) -> None:
    # "Upper/repo:tag": registry localhost, repository "Upper/repo" is not lowercase.
    assert kf.is_modelkit_reference(text) is expected


def test_is_modelkit_reference_linear_time() -> None:
    """A long repository that fails at its last character: the regular expression once
    backtracked exponentially on it (2.7 s at 24 characters, years at 60)."""
    for text in ("a" * 60 + "!:v1", "reg.io/" + "a0" * 40 + "-:v1", "a" * 5000 + "A:v1"):
        started = time.perf_counter()
        assert not kf.is_modelkit_reference(text)
        assert time.perf_counter() - started < 0.5, text[:20]


def test_local_entries_in_kit_layer_order() -> None:
    k = kf.loads(FULL)
    kinds = [(kind, entry.path) for kind, entry in k.local_entries()]
    assert kinds == [("model", "model.gguf"), ("modelpart", "adapters/lora.bin"),
                     ("code", "src"), ("dataset", "data/train.csv"), ("docs", "README.md"),
                     ("prompts", "prompts/system.md"), ("mcpservers", "servers/fs.mcpb")]
    assert k.base_model_reference() is None


def test_base_model_reference_excludes_model_layer() -> None:
    k = kf.loads("manifestVersion: 1.0.0\nmodel:\n  path: test-ref:model-1\n  parts:\n"
                 "    - path: extra.bin\n")
    assert k.base_model_reference() == "test-ref:model-1"
    assert [kind for kind, _ in k.local_entries()] == ["modelpart"]


def test_local_entries_are_the_objects_themselves() -> None:
    k = kf.loads(FULL)
    _kind, entry = k.local_entries()[2]
    entry.digest = "sha256:" + "1" * 64
    assert k.code[0].digest == entry.digest


# --------------------------------------------------------------------------- files


def test_find_kitfile_names(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as info:
        kf.find_kitfile(tmp_path)
    assert info.value.fix
    (tmp_path / ".kitfile").write_text("manifestVersion: 1.0.0\n")
    assert kf.find_kitfile(tmp_path).name == ".kitfile"
    (tmp_path / "Kitfile").write_text("manifestVersion: 1.0.0\n")
    assert kf.find_kitfile(tmp_path).name == "Kitfile"
    with pytest.raises(NotFound, match="does not exist"):
        kf.find_kitfile(tmp_path / "missing")


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        kf.load(tmp_path / "Kitfile")
    bad = tmp_path / "Kitfile"
    bad.write_bytes(b"manifestVersion: 1.0.0\npackage:\n  name: \xff\n")
    with pytest.raises(KitfileError, match="not UTF-8"):
        kf.load(bad)
    with pytest.raises(KitfileError, match="is a directory"):
        kf.load(tmp_path)


def test_load_uses_path_as_source(tmp_path: Path) -> None:
    p = tmp_path / "Kitfile"
    p.write_text("manifestVersion: 1.0.0\nmodel:\n  path: /abs\n")
    k = kf.load(p)
    with pytest.raises(KitfileError) as info:
        k.validate()
    assert info.value.problems[0].startswith(f"{p}:3: model.path: absolute paths")


def test_save_is_atomic_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "Kitfile"
    k = kf.loads(FULL)
    kf.save(k, target)
    assert target.read_text() == FULL
    os.chmod(target, 0o600)
    k.package.name = "renamed"
    kf.save(k, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert kf.load(target).package.name == "renamed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Kitfile"]


def test_save_failure_leaves_old_file(tmp_path: Path) -> None:
    target = tmp_path / "Kitfile"
    target.write_text("old\n")
    bad = Kitfile("1.0.0", model=Model(path="m", parameters={"x": object()}))
    with pytest.raises(KitfileError):
        kf.save(bad, target)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Kitfile"]


# --------------------------------------------------------------------------- speed


def test_loading_a_typical_kitfile_is_fast() -> None:
    """Regression guard for the verify hot path (typically ~0.1 ms; bound is generous)."""
    kf.loads(FULL)  # warm up (imports yaml once)
    timings = []
    for _ in range(30):
        start = time.perf_counter()
        kf.loads(FULL).validate()
        timings.append(time.perf_counter() - start)
    assert statistics.median(timings) < 0.005


def test_top_level_fields_have_lines_for_validation() -> None:
    k = kf.loads("package:\n  name: x\nmanifestVersion: 2.0\n")
    with pytest.raises(KitfileError) as info:
        k.validate()
    assert info.value.problems == [
        "Kitfile:3: manifestVersion: invalid manifestVersion: expect 1.0.0 but got 2.0"]
    with pytest.raises(KitfileError, match=r"^Kitfile: manifestVersion: .* got \(none\)$"):
        kf.loads("package:\n  name: x\n").validate()


@pytest.mark.parametrize("value", [{1: "a"}, {"a": object()}, float("nan"), [float("inf")]])
def test_serialising_non_json_parameters_is_a_kitfile_error(value: object) -> None:
    k = Kitfile("1.0.0", model=Model(path="m", parameters=value))
    with pytest.raises(KitfileError):
        k.to_json()
    if not isinstance(value, float) and value != [float("inf")]:
        with pytest.raises(KitfileError):
            k.to_yaml()


def test_last_resort_handler_wraps_unexpected_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net of loads(): forces a bug (monkeypatched decoder, since no real input
    is known to reach it) and checks it still surfaces as a chained KitfileError."""

    def broken(self: object, text: str) -> Kitfile:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(kf._Decoder, "decode", broken)
    with pytest.raises(KitfileError) as info:
        kf.loads("manifestVersion: 1.0.0\n")
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert kf.INTERNAL_ERROR_MARKER in str(info.value)


def test_json_negative_zero_survives_like_go() -> None:
    text = '{"manifestVersion":"1.0.0","package":{},"model":{"path":"m","parameters":[-0,0]}}'
    assert kf.from_json(text).to_json() == text
