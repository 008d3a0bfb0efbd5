"""Strict YAML reading for policy, waiver and test files: duplicate keys are errors,
mappings remember the line they start on (for error messages)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kitaudit.errors import PolicyError

MAX_FILE_BYTES = 4 * 1024 * 1024


class LineDict(dict):
    """A dict that knows its 1-based line in the source file (0 if unknown)."""

    line: int = 0
    key_lines: dict[Any, int] | None = None

    def line_of(self, key: Any) -> int:
        """The line of ``key``'s value (the mapping's line if unknown)."""
        return (self.key_lines or {}).get(key, self.line)


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


# Dates stay strings (parsed by the code that reads them, with a clear error).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def loads(text: str, source: str) -> Any:
    """Parse YAML text; PolicyError (with the line) when it is not valid YAML."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise PolicyError(f"{source}{where}: not valid YAML: {problem}",
                          fix="fix the YAML syntax (check indentation and quoting)")
    except RecursionError:
        raise PolicyError(f"{source}: not valid YAML: nested too deeply")
    except (ValueError, TypeError, OverflowError) as err:
        raise PolicyError(f"{source}: not valid YAML: {err}")


def read_text(path: str | Path) -> str:
    """Read a UTF-8 file of bounded size; PolicyError if missing, too large or binary."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PolicyError(f"{p}: file too large ({size} bytes, limit {MAX_FILE_BYTES})")
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"{p}: no such file", fix="check the path")
    except IsADirectoryError:
        raise PolicyError(f"{p}: is a directory, expected a file")
    except UnicodeDecodeError:
        raise PolicyError(f"{p}: not UTF-8 text")
    except OSError as err:
        raise PolicyError(f"{p}: cannot read: {err.strerror}")


def load(path: str | Path) -> Any:
    return loads(read_text(path), str(path))
