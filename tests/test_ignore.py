""".kitignore matching (dockerignore semantics)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kitaudit.errors import PackError
from kitaudit.ignore import IgnoreMatcher, compile_pattern, read_patterns, walk

PACK_UNPACK = Path("/work/shared/conformance/kitops/testing/testdata/pack-unpack")
KITIGNORE_CASES = sorted(p for p in PACK_UNPACK.glob("*.yaml")
                         if "kitignore" in yaml.safe_load(p.read_text()))


# kit's own table (pkg/lib/filesystem/ignore_test.go, the .kitignore part).
@pytest.mark.parametrize("patterns,path,expected", [
    (["dir1"], "dir1/subdir1/subdir2/file.txt", True),
    (["dir1/*.txt"], "dir1/testfile.txt", True),
    (["**/testfile.txt"], "dir1/subdir1/subdir2/testfile.txt", True),
    (["dir1", "!dir1/testfile.txt"], "dir1/testfile.txt", False),
    (["**/testfile.txt"], "main/subdir/testfile.txt", True),
])
def test_kit_table(patterns: list[str], path: str, expected: bool) -> None:
    assert IgnoreMatcher(patterns).matches(path) is expected


@pytest.mark.parametrize("pattern,path,expected", [
    ("*.md", "a.md", True),
    ("*.md", "docs/a.md", False),          # '*' does not cross '/'
    ("**/*.md", "a.md", True),             # '**/' may match nothing
    ("**/*.md", "x/y/a.md", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("a/**", "a/x/y", True),
    ("a/**", "a", False),
    ("**", "anything/at/all", True),
    ("ignored-?.txt", "ignored-1.txt", True),
    ("ignored-?.txt", "ignored-10.txt", False),
    ("?", "/", False),
    ("[a-c].txt", "b.txt", True),
    ("[^a-c].txt", "b.txt", False),
    ("[^a-c].txt", "d.txt", True),
    ("\\*.txt", "*.txt", True),
    ("\\*.txt", "a.txt", False),
    ("/root.txt", "root.txt", True),       # leading '/' dropped
    ("./root.txt", "root.txt", True),
    ("dir/", "dir/file", True),            # trailing '/' cleaned away
    ("a/../b", "b/file", True),
    ("a+b(c).txt", "a+b(c).txt", True),    # regex characters are literal
    ("data", "data-v2/x", False),
    ("data", "data", True),
    ("**foo", "a/xfoo", True),             # moby: leading '**' + plain text = suffix
    ("**foo*", "xfoo", False),             # ...but not once a wildcard follows
])
def test_pattern_semantics(pattern: str, path: str, expected: bool) -> None:
    assert IgnoreMatcher([pattern]).matches(path) is expected


def test_last_match_wins_and_reexclude() -> None:
    m = IgnoreMatcher(["*.md", "!README.md", "README.md"])
    assert m.matches("README.md")
    m = IgnoreMatcher(["*.md", "!README.md"])
    assert not m.matches("README.md") and m.matches("other.md")
    m = IgnoreMatcher(["!keep", "keep"])  # an exclusion before any match does nothing
    assert m.matches("keep")


def test_reinclude_inside_excluded_dir() -> None:
    m = IgnoreMatcher(["data", "!data/keep/*.csv"])
    assert m.matches("data/drop.csv")
    assert not m.matches("data/keep/a.csv")
    assert m.matches("data/keep/a.bin")
    assert not m.ignored("data", is_dir=True)       # must be walked: keep/ may be re-included
    assert not m.ignored("data/keep", is_dir=True)
    assert m.ignored("data/other", is_dir=True)     # nothing below can come back
    assert m.ignored("data/drop.csv")
    plain = IgnoreMatcher(["data"])
    assert plain.ignored("data", is_dir=True)


def test_wildcard_reinclude_is_conservative() -> None:
    m = IgnoreMatcher(["data", "!**/*.keep"])
    assert not m.ignored("data", is_dir=True)
    assert not m.matches("data/x/y.keep")
    m = IgnoreMatcher(["data", "!dat?/x"])
    assert m.may_reinclude_below("data") and not m.may_reinclude_below("other")


def test_read_patterns_comments_and_bom() -> None:
    text = "\ufeff# comment\n\n  spaced.txt  \n # not a comment\n!keep\n"
    assert read_patterns(text) == ["spaced.txt", "# not a comment", "!keep"]


@pytest.mark.parametrize("bad", ["!", "[", "a[b", "[]", "[z-a]", "x[a-]"])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(PackError) as info:
        IgnoreMatcher([bad])
    assert info.value.fix


def test_compile_pattern_fields() -> None:
    p = compile_pattern("! /dir/sub/ ")
    assert (p.text, p.exclusion) == ("dir/sub", True)


def test_from_file(tmp_path: Path) -> None:
    assert IgnoreMatcher.from_file(tmp_path / "missing").patterns == []
    f = tmp_path / ".kitignore"
    f.write_text("# x\n*.tmp\n")
    m = IgnoreMatcher.from_file(f)
    assert m.matches("a.tmp") and not m.matches("a.txt")
    f.write_text("ok\n[bad\n")
    with pytest.raises(PackError, match="pattern 2"):
        IgnoreMatcher.from_file(f)


def test_for_context_always_ignores_kitfile(tmp_path: Path) -> None:
    (tmp_path / ".kitignore").write_text("!Kitfile\n!.kitignore\n")
    m = IgnoreMatcher.for_context(tmp_path, extra=["conf/My[1].kitfile"])
    for name in ("Kitfile", "kitfile", ".kitfile", ".kitignore", "conf/My[1].kitfile"):
        assert m.matches(name), name
    assert not m.matches("sub/Kitfile")   # only the context root, as kit
    assert not m.matches("conf/My1.kitfile")
    assert IgnoreMatcher.for_context(tmp_path / "nope").matches("Kitfile")


@pytest.mark.parametrize("case_file", KITIGNORE_CASES, ids=lambda p: p.stem)
def test_pack_unpack_fixtures(case_file: Path, tmp_path: Path) -> None:
    """The three pack-unpack fixtures with a .kitignore: every layer covers the whole
    context there, so the ignore file alone decides what is packed."""
    case = yaml.safe_load(case_file.read_text())
    (tmp_path / "Kitfile").write_text(case["kitfile"])
    (tmp_path / ".kitignore").write_text(case["kitignore"])
    for rel in case["files"] + case["ignored"]:
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"testing: {rel}")
    m = IgnoreMatcher.for_context(tmp_path)
    kept = {rel for rel, is_dir in walk(tmp_path, m) if not is_dir}
    assert kept == set(case["files"])


def test_walk_prunes_and_orders(tmp_path: Path) -> None:
    for rel in ["a/x.txt", "a/keep/k.txt", "b/y.txt", "c.txt", "Kitfile", "d/e/f.md"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / "empty-excluded").mkdir()
    (tmp_path / ".kitignore").write_text("a\n!a/keep\nb\nempty-excluded\n**/*.md\n")
    got = list(walk(tmp_path, IgnoreMatcher.for_context(tmp_path)))
    assert got == [("a", True), ("a/keep", True), ("a/keep/k.txt", False), ("c.txt", False),
                   ("d", True), ("d/e", True)]
    assert list(walk(tmp_path, IgnoreMatcher(), start="d")) == [("d/e", True),
                                                               ("d/e/f.md", False)]


# --- property: the regex translation agrees with a component-wise reference matcher ---

def _ref_component(pat: str, name: str) -> bool:
    if not pat:
        return not name
    if pat[0] == "*":
        return any(_ref_component(pat[1:], name[i:]) for i in range(len(name) + 1))
    if not name:
        return False
    if pat[0] == "?" or pat[0] == name[0]:
        return _ref_component(pat[1:], name[1:])
    return False


def _ref_match(pat: list[str], path: list[str]) -> bool:
    if not pat:
        return not path
    if pat[0] == "**":
        if len(pat) == 1:
            return bool(path)  # trailing '**': one or more components
        return any(_ref_match(pat[1:], path[i:]) for i in range(len(path) + 1))
    return bool(path) and _ref_component(pat[0], path[0]) and _ref_match(pat[1:], path[1:])


_comp = st.text(alphabet="ab*?", min_size=1, max_size=3).filter(lambda c: "**" not in c)
_pat = st.lists(st.one_of(_comp, st.just("**")), min_size=1, max_size=4).map("/".join)
_path = st.lists(st.text(alphabet="ab", min_size=1, max_size=3), min_size=1, max_size=4)


@settings(max_examples=500, deadline=None)
@given(_pat, _path)
def test_translation_matches_reference(pattern: str, path: list[str]) -> None:
    compiled = compile_pattern(pattern)
    comps = compiled.text.split("/")
    if "/".join(comps) != pattern:
        return  # cleaning changed it ('**/**' and friends): not the point here
    assert compiled.match("/".join(path)) is _ref_match(comps, path), (pattern, path)


@settings(max_examples=200, deadline=None)
@given(st.lists(_pat, max_size=3), _path, st.booleans())
def test_prune_is_safe(patterns: list[str], path: list[str], negate_last: bool) -> None:
    """If a directory may be pruned, nothing below it is kept."""
    if negate_last and patterns:
        patterns = [*patterns[:-1], "!" + patterns[-1]]
    m = IgnoreMatcher(patterns)
    directory = "/".join(path[:-1]) or path[0]
    if m.ignored(directory, is_dir=True):
        below = directory + "/" + path[-1]
        assert m.matches(below)
        assert m.matches(below + "/deeper")
