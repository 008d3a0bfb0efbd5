""".kitignore: .dockerignore semantics (as moby's patternmatcher implements them).

File format: one pattern a line; lines starting with ``#`` are comments; blank lines
are skipped; surrounding whitespace is trimmed; ``!`` re-includes. Each pattern is
cleaned like a path (``./a`` → ``a``, ``a/`` → ``a``, ``a/../b`` → ``b``) and a leading
``/`` is dropped, so patterns are always relative to the context root.

Pattern syntax: Go ``filepath.Match`` (``*`` and ``?`` never cross ``/``, ``[...]``
classes, ``\\`` escapes) plus ``**``, which matches any number of directories
(``**/x``, ``a/**/b``, ``a/**``).

Decision: patterns are tried in order and the last one that matches wins. A pattern
matches a path when it matches the path itself or one of its parent directories, so
excluding ``data`` excludes ``data/x`` — unless a later ``!`` pattern matches it.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kitaudit.errors import PackError

IGNORE_FILE_NAME = ".kitignore"
KITFILE_NAMES = ("Kitfile", "kitfile", ".kitfile")
ALWAYS_IGNORED = (*KITFILE_NAMES, IGNORE_FILE_NAME)
_FIX = ("fix the pattern in .kitignore (syntax: Go filepath.Match plus '**'; "
        "escape a literal '[' as '\\[')")


def _clean(path: str) -> str:
    """Go's filepath.Clean for forward-slash paths ('' → '.')."""
    if path == "":
        return "."
    cleaned = posixpath.normpath(path)
    if cleaned.startswith("//"):  # POSIX keeps a leading '//', Go does not
        cleaned = "/" + cleaned.lstrip("/")
    return cleaned


def _translate(pattern: str) -> str:
    """Translate a cleaned pattern into a regular expression (whole-path match)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                # '**' at the end matches everything; elsewhere any number of dirs.
                out.append(".*" if i >= n else "(?:.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out.append(re.escape(pattern[i]))
            else:
                out.append(re.escape("\\"))
        elif ch == "[":
            end, cls = _char_class(pattern, i)
            out.append(cls)
            i = end
            continue
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _char_class(pattern: str, start: int) -> tuple[int, str]:
    """Parse ``[...]`` at ``start`` (Go filepath.Match rules); return (index after, regex)."""
    i = start + 1
    n = len(pattern)
    negate = i < n and pattern[i] == "^"
    if negate:
        i += 1
    items: list[str] = []
    first = True
    while True:
        if i >= n:
            raise ValueError("unterminated character class")
        ch = pattern[i]
        if ch == "]" and not first:
            i += 1
            break
        first = False
        lo, i = _class_char(pattern, i)
        if i < n and pattern[i] == "-" and i + 1 < n and pattern[i + 1] != "]":
            hi, i = _class_char(pattern, i + 1)
            if hi < lo:
                raise ValueError("bad character range")
            items.append(f"{re.escape(lo)}-{re.escape(hi)}")
        else:
            items.append(re.escape(lo))
    if not items:
        raise ValueError("empty character class")
    # '/' is never matched by a class in a path component.
    body = "".join(items)
    return i, (f"[^/{body}]" if negate else f"(?!/)[{body}]")


def _class_char(pattern: str, i: int) -> tuple[str, int]:
    ch = pattern[i]
    if ch == "\\":
        if i + 1 >= len(pattern):
            raise ValueError("trailing backslash in character class")
        return pattern[i + 1], i + 2
    if ch in "-]":
        raise ValueError(f"unexpected {ch!r} in character class")
    return ch, i + 1


@dataclass(frozen=True)
class Pattern:
    """One compiled pattern."""

    text: str          # cleaned pattern, without '!'
    exclusion: bool    # True for '!pattern' (re-include)
    regex: re.Pattern[str]

    def match(self, path: str) -> bool:
        return self.regex.fullmatch(path) is not None


def compile_pattern(line: str) -> Pattern:
    """Compile one pattern (``!`` allowed). Raises ValueError for a bad pattern."""
    text = line.strip()
    exclusion = text.startswith("!")
    if exclusion:
        text = text[1:].strip()
        if not text:
            raise ValueError('illegal exclusion pattern: "!"')
    text = _clean(text)
    if len(text) > 1 and text.startswith("/"):
        text = text[1:]
    rest = text[2:]
    if text.startswith("**") and rest and rest[0] != "/" and not any(c in rest for c in "*?[\\"):
        # moby matches a leading '**' + plain text as a plain suffix ('**foo' ~ 'xfoo').
        return Pattern(text, exclusion, re.compile(".*" + re.escape(rest), re.DOTALL))
    return Pattern(text, exclusion, re.compile(_translate(text), re.DOTALL))


def read_patterns(text: str) -> list[str]:
    """The pattern lines of a .kitignore file (comments and blank lines dropped)."""
    lines = text.splitlines()
    if lines and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    return [ln.strip() for ln in lines if not ln.startswith("#") and ln.strip()]


def _normalize_path(relpath: str) -> str:
    path = relpath.replace(os.sep, "/") if os.sep != "/" else relpath
    path = _clean(path)
    while path.startswith("./"):
        path = path[2:]
    return path.lstrip("/") or "."


class IgnoreMatcher:
    """Decides which context-relative paths a .kitignore excludes."""

    def __init__(self, patterns: Iterable[str] = (), *, source: str = IGNORE_FILE_NAME) -> None:
        self.patterns: list[Pattern] = []
        for number, line in enumerate(patterns, 1):
            if not line.strip():
                continue
            try:
                self.patterns.append(compile_pattern(line))
            except (ValueError, re.error) as err:
                raise PackError(f"{source}: invalid pattern {line.strip()!r} "
                                f"(pattern {number}): {err}", fix=_FIX) from None
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> IgnoreMatcher:
        """Read a .kitignore file; a missing file means no patterns."""
        try:
            text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            return cls(())
        return cls(read_patterns(text), source=str(path))

    @classmethod
    def for_context(cls, context: str | os.PathLike[str], *,
                    extra: Iterable[str] = ()) -> IgnoreMatcher:
        """The matcher pack uses for a context directory.

        Reads ``<context>/.kitignore`` and then always ignores the Kitfile names and
        ``.kitignore`` at the context root (added last, so ``!Kitfile`` cannot undo
        it, as in kit). ``extra`` adds more always-ignored context-relative paths (e.g.
        a Kitfile given with ``-f`` that lives inside the context).
        """
        path = Path(context) / IGNORE_FILE_NAME
        try:
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
        except FileNotFoundError:
            text = ""
        lines = read_patterns(text)
        # Escape glob characters so extra paths are taken literally.
        literal = [re.sub(r"([*?\[\]\\])", r"\\\1", _normalize_path(p)) for p in extra]
        return cls([*lines, *ALWAYS_IGNORED, *literal], source=str(path))

    def matches(self, relpath: str) -> bool:
        """dockerignore's decision for ``relpath`` (its parents' matches count)."""
        path = _normalize_path(relpath)
        if path == ".":
            return False
        parts = path.split("/")
        parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
        matched = False
        for pattern in self.patterns:
            # An include pattern only matters while not matched, an exclusion only after.
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path) or any(pattern.match(p) for p in parents)
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_reinclude_below(self, reldir: str) -> bool:
        """Could some ``!`` pattern re-include a path below directory ``reldir``?

        Conservative: True whenever it cannot be ruled out.
        """
        if not self.has_exclusions:
            return False
        path = _normalize_path(reldir)
        dir_parts = [] if path == "." else path.split("/")
        return any(_could_match_below(p.text.split("/"), dir_parts)
                   for p in self.patterns if p.exclusion)

    def ignored(self, relpath: str, is_dir: bool = False) -> bool:
        """Should a walker leave this path out?

        For a file: :meth:`matches`. For a directory: True only when the directory is
        excluded and nothing below it can be re-included, so the walker may prune it.
        An excluded directory that may hold re-included files returns False; its files
        are then decided one by one.
        """
        if not self.matches(relpath):
            return False
        return not (is_dir and self.may_reinclude_below(relpath))


def _could_match_below(pattern: list[str], dir_parts: list[str]) -> bool:
    """Can ``pattern`` match ``dir`` itself, an ancestor (then it covers the dir) or
    something below ``dir``?"""
    for i, part in enumerate(dir_parts):
        if i >= len(pattern):
            return True  # the pattern matches an ancestor: covers everything below
        comp = pattern[i]
        if "**" in comp:
            return True
        try:
            if not re.fullmatch(_translate(comp), part, re.DOTALL):
                return False
        except (ValueError, re.error):
            return True
    return True


def walk(context: str | os.PathLike[str], matcher: IgnoreMatcher,
         start: str = ".") -> Iterable[tuple[str, bool]]:
    """Yield ``(relpath, is_dir)`` for every entry under ``start`` (context-relative) that
    the matcher keeps, in lexical order, directories before their contents.

    Excluded directories that may hold re-included files are walked but not yielded
    unless something below them is kept (their entry is then yielded first). Symlinks
    are yielded as files; the caller decides what to do with them.
    """
    root = Path(context)

    def visit(rel: str) -> Iterable[tuple[str, bool]]:
        full = root / rel if rel != "." else root
        try:
            names = sorted(os.listdir(full))
        except FileNotFoundError:
            return
        for name in names:
            child = name if rel == "." else f"{rel}/{name}"
            is_dir = (full / name).is_dir() and not (full / name).is_symlink()
            if not is_dir:
                if not matcher.matches(child):
                    yield child, False
                continue
            if matcher.ignored(child, is_dir=True):
                continue
            if matcher.matches(child):
                below = list(visit(child))
                if below:
                    yield child, True
                    yield from below
            else:
                yield child, True
                yield from visit(child)

    start_norm = _normalize_path(start)
    yield from visit(start_norm)
