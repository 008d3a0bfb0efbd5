"""The CEL engine behind one small interface (``cel-expr-python``, Google's cel-cpp).

Why this engine: see ``docs/decisions.md`` (measured: ~5 µs to bind a subject's
document and 2-6 µs per rule, against ~420 µs to bind the same document with
``common-expression-language``; and it type-checks at compile time, which gives ``lint``
"undeclared reference" errors with positions).

* The environment declares the input document's top-level keys as variables (``now`` is a
  timestamp, everything else ``dyn``) and enables the ``strings`` and ``bindings``
  (``cel.bind``) extensions.
* :meth:`CelEngine.compile` compiles an expression once per process; the cache is keyed by
  the expression text and also remembers compile errors.
* :meth:`CelEngine.bind` turns one subject's document into an activation; every rule is
  then evaluated against it. Runtime errors (missing key, bad index, no overload) come
  back as :class:`CelEvalError`, never as a Python exception from the engine.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Variables a policy expression can use (the input document's top-level keys).
VARIABLES = ("schema_version", "reference", "digest", "registry", "manifest", "kitfile",
             "sbom", "signatures", "attestations", "lineage", "params", "now")

_POSITION = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")


@dataclass(frozen=True)
class CelIssue:
    """One compile problem: 1-based line and column within the expression."""

    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.message}"


class CelCompileError(Exception):
    """An expression did not parse or type-check; ``issues`` holds every problem."""

    def __init__(self, expression: str, issues: list[CelIssue]) -> None:
        self.expression = expression
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues))


class CelEvalError(Exception):
    """An expression failed at run time (missing key, bad index, no matching overload)."""


def _parse_issues(text: str) -> list[CelIssue]:
    issues = []
    for line in text.splitlines():
        m = _POSITION.search(line)
        if m:
            msg = m.group(3).strip()
            msg = re.sub(r"\s*\[INVALID_ARGUMENT\]$", "", msg)
            msg = re.sub(r"\s*\(in container ''\)$", "", msg)
            issues.append(CelIssue(int(m.group(1)), int(m.group(2)), msg))
    if not issues:
        first = text.strip().splitlines()[0] if text.strip() else "invalid expression"
        issues.append(CelIssue(1, 1, first.removeprefix("INVALID_ARGUMENT: ")))
    return issues


class Program:
    """A compiled expression. ``result_type`` is the checked type (``bool``, ``dyn``...)."""

    __slots__ = ("_expr", "_is_error", "expression", "result_type")

    def __init__(self, expression: str, compiled: Any, result_type: str,
                 is_error: Any) -> None:
        self.expression = expression
        self.result_type = result_type
        self._expr = compiled
        self._is_error = is_error

    def evaluate(self, activation: Activation) -> Any:
        """The result as a Python value (bool, int, float, str, list, dict, None...)."""
        try:
            value = self._expr.eval(activation.native)
        except (RuntimeError, TypeError, ValueError) as err:
            # The binding raises (instead of returning an error value) for input it cannot
            # convert, e.g. strings that are not valid Unicode: still an evaluation error.
            raise CelEvalError(f"input could not be evaluated: {err}") from err
        if self._is_error(value):
            raise CelEvalError(str(value.value()))
        return value.plain_value()


@dataclass(frozen=True)
class Activation:
    """One subject's document, bound for evaluation (reuse it for every rule)."""

    native: Any


class CelEngine:
    """A CEL environment for policy input documents with a per-process compile cache."""

    def __init__(self) -> None:
        from cel_expr_python import cel
        from cel_expr_python.ext import ext_bindings, ext_strings

        self._cel = cel
        variables = {name: cel.Type.DYN for name in VARIABLES}
        variables["now"] = cel.Type.TIMESTAMP
        self._env = cel.NewEnv(variables=variables,
                               extensions=[ext_strings.ExtStrings(),
                                           ext_bindings.ExtBindings()])
        self._cache: dict[str, Program | CelCompileError] = {}
        self._lock = threading.Lock()
        error_type = cel.Type.ERROR
        self._is_error = lambda value: value.type() == error_type

    def compile(self, expression: str) -> Program:
        """Compile (or fetch from the cache); :class:`CelCompileError` if invalid."""
        cached = self._cache.get(expression)
        if cached is None:
            with self._lock:
                cached = self._cache.get(expression)
                if cached is None:
                    cached = self._compile(expression)
                    self._cache[expression] = cached
        if isinstance(cached, CelCompileError):
            raise cached
        return cached

    def _compile(self, expression: str) -> Program | CelCompileError:
        if not expression.strip():
            return CelCompileError(expression, [CelIssue(1, 1, "empty expression")])
        try:
            expression.encode("utf-8")
        except UnicodeEncodeError as err:
            return CelCompileError(expression, [CelIssue(1, err.start + 1,
                                                         "not valid Unicode text")])
        try:
            compiled = self._env.compile(expression)
        except RuntimeError as err:
            return CelCompileError(expression, _parse_issues(str(err)))
        rtype = compiled.return_type().name().lower()
        return Program(expression, compiled, rtype, self._is_error)

    def bind(self, document: Mapping[str, Any]) -> Activation:
        """Bind a normalised document (see :func:`kitaudit.policy.inputdoc.normalize_input`)."""
        data = {name: document[name] for name in VARIABLES if name in document}
        return Activation(self._env.Activation(data))

    def cache_size(self) -> int:
        return len(self._cache)


_ENGINE: CelEngine | None = None
_ENGINE_LOCK = threading.Lock()


def engine() -> CelEngine:
    """The process-wide engine (one environment, one compile cache)."""
    global _ENGINE
    if _ENGINE is None:
        with _ENGINE_LOCK:
            if _ENGINE is None:
                _ENGINE = CelEngine()
    return _ENGINE
