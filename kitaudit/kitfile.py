"""The Kitfile: KitOps' description of a ModelKit.

Load (strict, like kit's ``KnownFields`` YAML decoding), validate (kit's rules, every
problem reported at once), serialise (YAML and compact JSON byte-compatible with kit's
Go encoders) and read ModelKit config blobs (the Kitfile as JSON with layer digests).

Public API::

    loads(text, source="Kitfile") -> Kitfile        load(path) -> Kitfile
    from_json(data) -> Kitfile                      find_kitfile(context_dir) -> Path
    save(kitfile, path)                             clean_path(p) -> str
    is_modelkit_reference(path) -> bool             get_path_type(path) -> str
    Kitfile.validate() / .validation_warnings() / .to_yaml() / .to_json() / .to_dict()
    Kitfile.local_entries() / .base_model_reference()

Every problem with a Kitfile raises :class:`kitaudit.errors.KitfileError`; nothing else
escapes :func:`loads` or :func:`from_json`, whatever the input.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from kitaudit.errors import KitfileError, NotFound

__all__ = [
    "KITFILE_NAMES",
    "MANIFEST_VERSION",
    "Code",
    "Dataset",
    "Doc",
    "Kitfile",
    "McpServer",
    "Model",
    "ModelPart",
    "Package",
    "Prompt",
    "clean_path",
    "find_kitfile",
    "from_config",
    "from_json",
    "get_path_type",
    "is_modelkit_reference",
    "load",
    "loads",
    "save",
]

KITFILE_NAMES = ("Kitfile", "kitfile", ".kitfile")
MANIFEST_VERSION = "1.0.0"
MAX_KITFILE_BYTES = 16 * 1024 * 1024
MODEL_PART_TYPE_MAX_LEN = 64
INTERNAL_ERROR_MARKER = "unexpected error"

# Path types (kit's GetPathType).
LOCAL = "local"
MODELKIT_REFERENCE = "modelkit-reference"
S3 = "s3"
HTTP = "http"
UNKNOWN_URL = "url"


# --------------------------------------------------------------------------- model


@dataclass
class Package:
    name: str = ""
    version: str = ""
    description: str = ""
    license: str = ""
    authors: list[str] = field(default_factory=list)


@dataclass
class ModelPart:
    name: str = ""
    path: str = ""
    license: str = ""
    type: str = ""
    digest: str = ""
    diff_id: str = ""


@dataclass
class Model:
    name: str = ""
    path: str = ""
    license: str = ""
    framework: str = ""
    format: str = ""
    version: str = ""
    description: str = ""
    parts: list[ModelPart] = field(default_factory=list)
    parameters: Any = None
    digest: str = ""
    diff_id: str = ""


@dataclass
class Dataset:
    name: str = ""
    path: str = ""
    remote_path: str = ""
    remote_hash: str = ""
    description: str = ""
    license: str = ""
    parameters: Any = None
    digest: str = ""
    diff_id: str = ""


@dataclass
class Code:
    path: str = ""
    description: str = ""
    license: str = ""
    digest: str = ""
    diff_id: str = ""


@dataclass
class Doc:
    path: str = ""
    description: str = ""
    digest: str = ""
    diff_id: str = ""


@dataclass
class Prompt:
    name: str = ""
    path: str = ""
    description: str = ""
    digest: str = ""
    diff_id: str = ""


@dataclass
class McpServer:
    name: str = ""
    path: str = ""
    description: str = ""
    digest: str = ""
    diff_id: str = ""


# Field tables: (attribute, key, kind, omitempty). Order = kit's Go struct order, which
# fixes the key order of both serialisations. Kinds: s = string, sl = list of strings,
# any = free-form parameters, parts = list of ModelPart. Layer fields (digest, diffId)
# exist only in the config JSON; in a YAML Kitfile they are unknown keys, as in kit.
_S, _SL, _ANY, _PARTS = "s", "sl", "any", "parts"
_LAYER_FIELDS = (("digest", "digest", _S, True), ("diff_id", "diffId", _S, True))
_FIELDS: dict[type, tuple[tuple[str, str, str, bool], ...]] = {
    Package: (("name", "name", _S, True), ("version", "version", _S, True),
              ("description", "description", _S, True), ("license", "license", _S, True),
              ("authors", "authors", _SL, True)),
    ModelPart: (("name", "name", _S, True), ("path", "path", _S, True),
                ("license", "license", _S, True), ("type", "type", _S, True)),
    Model: (("name", "name", _S, True), ("path", "path", _S, True),
            ("license", "license", _S, True), ("framework", "framework", _S, True),
            ("format", "format", _S, True), ("version", "version", _S, True),
            ("description", "description", _S, True), ("parts", "parts", _PARTS, True),
            ("parameters", "parameters", _ANY, True)),
    Code: (("path", "path", _S, True), ("description", "description", _S, True),
           ("license", "license", _S, True)),
    Dataset: (("name", "name", _S, True), ("path", "path", _S, True),
              ("remote_path", "remotePath", _S, True), ("remote_hash", "remoteHash", _S, True),
              ("description", "description", _S, True), ("license", "license", _S, True),
              ("parameters", "parameters", _ANY, True)),
    Doc: (("path", "path", _S, False), ("description", "description", _S, True)),
    Prompt: (("name", "name", _S, True), ("path", "path", _S, True),
             ("description", "description", _S, True)),
    McpServer: (("name", "name", _S, True), ("path", "path", _S, True),
                ("description", "description", _S, True)),
}
# (attribute, key, entry class) of the Kitfile's list sections, in Go struct order.
_SECTIONS: tuple[tuple[str, str, type], ...] = (
    ("code", "code", Code), ("datasets", "datasets", Dataset), ("docs", "docs", Doc),
    ("prompts", "prompts", Prompt), ("mcp_servers", "mcpServers", McpServer))
_TOP_KEYS = ("manifestVersion", "package", "model", "code", "datasets", "docs", "prompts",
             "mcpServers")

_ENTRY_LABEL = {Code: "code layer", Dataset: "dataset layer", Doc: "docs layer",
                Prompt: "prompt layer", McpServer: "mcpServer layer"}


@dataclass
class Kitfile:
    manifest_version: str = ""
    package: Package = field(default_factory=Package)
    model: Model | None = None
    datasets: list[Dataset] = field(default_factory=list)
    code: list[Code] = field(default_factory=list)
    docs: list[Doc] = field(default_factory=list)
    prompts: list[Prompt] = field(default_factory=list)
    mcp_servers: list[McpServer] = field(default_factory=list)
    # Where the Kitfile came from and the line of each field (camelCase field path ->
    # 1-based line), used to point validation errors at the text they came from.
    source: str | None = field(default=None, repr=False, compare=False)
    lines: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    # ---------------------------------------------------------------- validation

    def validate(self, *, strict_version: bool = True) -> None:
        """Apply kit's validation rules; raise one KitfileError listing every problem.

        ``strict_version=False`` turns an unknown ``manifestVersion`` into a warning (what
        the newest kit does) instead of an error (what the conformance fixtures expect).
        """
        problems, _ = _check(self, strict_version)
        if problems:
            err = KitfileError(problems, fix="correct the Kitfile; every problem is listed")
            err.source = self.source
            raise err

    def validation_warnings(self, *, strict_version: bool = True) -> list[str]:
        """Non-fatal findings (kit prints these as warnings)."""
        return _check(self, strict_version)[1]

    # ---------------------------------------------------------------- helpers

    def local_entries(self) -> list[tuple[str, Any]]:
        """Entries that become layers, in kit's layer order, as (kind, entry).

        kind is one of model, modelpart, code, dataset, docs, prompts, mcpservers. The
        model is left out when its path is a ModelKit reference (base model) and datasets
        with a ``remotePath`` are left out (their content is not packed).
        """
        out: list[tuple[str, Any]] = []
        if self.model is not None:
            if get_path_type(self.model.path) == LOCAL:
                out.append(("model", self.model))
            out.extend(("modelpart", p) for p in self.model.parts)
        out.extend(("code", c) for c in self.code)
        out.extend(("dataset", d) for d in self.datasets if not d.remote_path)
        out.extend(("docs", d) for d in self.docs)
        out.extend(("prompts", p) for p in self.prompts)
        out.extend(("mcpservers", m) for m in self.mcp_servers)
        return out

    def base_model_reference(self) -> str | None:
        """``model.path`` when it names a parent ModelKit, else None."""
        if self.model is not None and is_modelkit_reference(self.model.path):
            return self.model.path
        return None

    # ---------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dict, camelCase keys, same fields as :meth:`to_json`."""
        return json.loads(self.to_json())

    def to_json(self) -> str:
        """Compact JSON exactly as kit's Go ``json.Marshal`` writes the config blob."""
        out: list[str] = []
        _json_kitfile(self, out)
        return "".join(out)

    def to_config_json(self) -> bytes:
        """The config blob bytes (:meth:`to_json` encoded as UTF-8)."""
        return self.to_json().encode("utf-8")

    def to_yaml(self) -> str:
        """YAML exactly as kit's Go yaml.v3 encoder (indent 2) writes it."""
        lines: list[str] = []
        _yaml_kitfile(self, lines)
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- paths


def clean_path(p: str) -> str:
    """Go ``path.Clean``: shortest equivalent slash path; empty -> ``.``."""
    if p == "":
        return "."
    rooted = p.startswith("/")
    parts: list[str] = []
    for seg in p.split("/"):
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
        else:
            parts.append(seg)
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."


_REGISTRY_RE = re.compile(
    r"(?:[A-Za-z0-9._~!$&'()*+,;=-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?\Z")
# The distribution grammar's separator is ``[._]|__|-*``; ``-*`` may be empty, which Go's
# RE2 takes in linear time but which makes Python's backtracking engine exponential on
# ``aaaa…a!`` (a hostile model.path hung validation). ``-+`` accepts the same language.
_REPOSITORY_RE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*\Z")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST_RE = re.compile(r"([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)\Z")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX_RE = re.compile(r"[a-f0-9]+\Z")


def _is_digest(s: str) -> bool:
    m = _DIGEST_RE.match(s)
    if not m:
        return False
    size = _DIGEST_HEX_LEN.get(m.group(1))
    return size is not None and len(m.group(2)) == size and bool(_HEX_RE.match(m.group(2)))


def _parses_as_reference(ref: str) -> bool:
    """kit's ParseReference accepting the text (registry/repo:tag, @digest, a,b tags)."""
    if _is_digest(ref):
        return True
    unprocessed = ref.split(",", 1)[0]
    registry = "localhost"
    first, slash, rest = unprocessed.partition("/")
    if slash and (":" in first or "." in first):
        registry, unprocessed = first, rest
    has_tag = has_digest = False
    reference = ""
    if "@" in unprocessed:
        has_digest = True
        repo, _, reference = unprocessed.partition("@")
        repo = repo.split(":", 1)[0]
    elif ":" in unprocessed:
        has_tag = True
        repo, _, reference = unprocessed.partition(":")
    else:
        repo = unprocessed
    if repo.lower() != repo or not _REGISTRY_RE.match(registry):
        return False
    if not _REPOSITORY_RE.match(repo):
        return False
    if has_tag:
        return bool(_TAG_RE.match(reference))
    if has_digest:
        return _is_digest(reference)
    return True


def is_modelkit_reference(path: str) -> bool:
    """kit's rule: the text contains ``:`` or ``@`` and parses as a ModelKit reference."""
    if ":" not in path and "@" not in path:
        return False
    return _parses_as_reference(path)


_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
_BAD_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PORT_RE = re.compile(r"[0-9]*\Z")


def _url_kind(p: str) -> tuple[str, str] | None:
    """(scheme, host) as Go's url.Parse sees them, or None when it would fail to parse."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in p):
        return None
    rest = p.split("#", 1)[0]
    scheme = ""
    for i, c in enumerate(rest):
        if c == ":":
            if i == 0:
                return None  # "missing protocol scheme"
            scheme, rest = rest[:i], rest[i + 1:]
            break
        if c not in _SCHEME_CHARS or (i == 0 and not c.isalpha()):
            break
    rest = rest.split("?", 1)[0]
    if scheme and not rest.startswith("/"):
        return scheme.lower(), ""  # opaque URL such as s3:bucket
    if not scheme and ":" in rest.split("/", 1)[0]:
        return None  # "first path segment in URL cannot contain colon"
    if _BAD_ESCAPE_RE.search(rest):
        return None
    host = ""
    if rest.startswith("//") and (scheme or not rest.startswith("///")):
        authority = rest[2:].split("/", 1)[0]
        hostport = authority.rpartition("@")[2]
        if hostport.startswith("["):
            close = hostport.find("]")
            if close < 0:
                return None
            port = hostport[close + 1:]
            if port and (not port.startswith(":") or not _PORT_RE.match(port[1:])):
                return None
        elif ":" in hostport and not _PORT_RE.match(hostport.rpartition(":")[2]):
            return None
        host = hostport
    return scheme.lower(), host


def get_path_type(path: str) -> str:
    """kit's GetPathType: local, modelkit-reference, s3, http or url (any other URL)."""
    if is_modelkit_reference(path):
        return MODELKIT_REFERENCE
    parsed = _url_kind(path)
    if parsed is None or (parsed[0] == "" and parsed[1] == ""):
        return LOCAL
    if parsed[0] == "s3":
        return S3
    if parsed[0] in ("http", "https"):
        return HTTP
    return UNKNOWN_URL


# --------------------------------------------------------------------------- validation


_PART_TYPE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")


def _check(kf: Kitfile, strict_version: bool) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    warnings: list[str] = []

    def where(fpath: str) -> str:
        line = _line_for(kf.lines, fpath)
        src = kf.source
        if src and line:
            return f"{src}:{line}: {fpath}: "
        if src:
            return f"{src}: {fpath}: "
        return f"{fpath}: "

    def add(fpath: str, msg: str) -> None:
        problems.append(where(fpath) + msg)

    if kf.manifest_version != MANIFEST_VERSION:
        msg = (f"invalid manifestVersion: expect {MANIFEST_VERSION} but got "
               f"{kf.manifest_version or '(none)'}")
        if strict_version:
            add("manifestVersion", msg)
        else:
            warnings.append(f"Unrecognized manifestVersion {kf.manifest_version}: "
                            f"treating Kitfile as {MANIFEST_VERSION}")

    # cleaned local path -> [(label, field path)]
    paths: dict[str, list[tuple[str, str]]] = {}
    remote_dataset_paths: list[str] = []

    def add_path(p: str, label: str, fpath: str) -> None:
        paths.setdefault(clean_path(p), []).append((label, fpath))

    def local_only(p: str, what: str, fpath: str) -> bool:
        ptype = get_path_type(p)
        if ptype == LOCAL:
            return True
        if ptype == HTTP:
            add(fpath, f"invalid path for {what} ({p}): HTTP urls are not supported in paths")
        elif ptype == UNKNOWN_URL:
            add(fpath, f"invalid path for {what} ({p}): unrecognized URL in path; only local "
                       "paths are permitted")
        else:
            add(fpath, f"invalid path for {what} ({p}): only local paths are permitted")
        return False

    model = kf.model
    if model is not None:
        label = f"model {model.name}" if model.name else "model"
        ptype = get_path_type(model.path)
        if ptype == LOCAL:
            add_path(model.path, label, "model.path")
        elif ptype == HTTP:
            add("model.path", f"invalid path for model: HTTP urls are not supported in paths "
                              f"({model.path})")
        elif ptype != MODELKIT_REFERENCE:
            add("model.path", "invalid path for model: only local paths and ModelKit "
                              f"references are permitted ({model.path})")
        for i, part in enumerate(model.parts):
            fp = f"model.parts[{i}]"
            plabel = f"modelpart {part.name}" if part.name else f"modelpart layer {i}"
            if local_only(part.path, "model part", fp + ".path"):
                add_path(part.path, plabel, fp + ".path")
            if part.type:
                if not _PART_TYPE_RE.match(part.type):
                    add(fp + ".type", f"{plabel} has invalid type (must be alphanumeric with "
                                      "dots, dashes, and underscores)")
                if len(part.type.encode("utf-8")) > MODEL_PART_TYPE_MAX_LEN:
                    add(fp + ".type", f"{plabel} type is too long (must be at most "
                                      f"{MODEL_PART_TYPE_MAX_LEN} characters)")
    for i, code in enumerate(kf.code):
        if local_only(code.path, "code", f"code[{i}].path"):
            add_path(code.path, f"code layer {i}", f"code[{i}].path")
    for i, ds in enumerate(kf.datasets):
        fp = f"datasets[{i}]"
        if local_only(ds.path, "dataset", fp + ".path"):
            add_path(ds.path, f"dataset layer {i}", fp + ".path")
        if ds.remote_path:
            rtype = get_path_type(ds.remote_path)
            if rtype == S3:
                if not ds.remote_hash:
                    add(fp + ".remoteHash", "remoteHash is required when remote dataset paths "
                                            f"are used ({ds.remote_path})")
            elif rtype == MODELKIT_REFERENCE:
                if ds.remote_hash:
                    warnings.append("remoteHash is ignored for ModelKit references in "
                                    f"datasets ({ds.path})")
                remote_dataset_paths.append(clean_path(ds.path))
            else:
                add(fp + ".remotePath", "only S3 URLs are supported for remote dataset paths, "
                                        f"besides ModelKit references ({ds.remote_path})")
        elif ds.remote_hash:
            add(fp + ".remoteHash", "remote hash is only applicable when remotePath is set")
    for i, doc in enumerate(kf.docs):
        if local_only(doc.path, "doc", f"docs[{i}].path"):
            add_path(doc.path, f"docs layer {i}", f"docs[{i}].path")
    for i, prompt in enumerate(kf.prompts):
        if local_only(prompt.path, "prompt", f"prompts[{i}].path"):
            add_path(prompt.path, f"prompt layer {i}", f"prompts[{i}].path")
    names: set[str] = set()
    for i, server in enumerate(kf.mcp_servers):
        fp = f"mcpServers[{i}]"
        if local_only(server.path, "mcpServer", fp + ".path"):
            add_path(server.path, f"mcpServer layer {i}", fp + ".path")
            if not server.path.endswith(".mcpb"):
                add(fp + ".path", f"invalid path for mcpServer ({server.path}): path must "
                                  "point to a single .mcpb file")
        if not server.name:
            add(fp, f"mcpServer with path {server.path} must have a name")
        elif server.name in names:
            add(fp + ".name", f"duplicate mcpServer name {server.name}: names must be unique")
        else:
            names.add(server.name)

    for cleaned, users in paths.items():
        if len(users) > 1:
            labels = ", ".join(u[0] for u in users[:-1])
            add(users[-1][1], f"{labels} and {users[-1][0]} use the same path {cleaned}")
        label0, fpath0 = users[0]
        if cleaned.startswith("/"):
            add(fpath0, f"absolute paths are not supported in a Kitfile (path {cleaned} in "
                        f"{label0})")
        elif cleaned == ".." or cleaned.startswith("../"):
            add(fpath0, "paths outside the context directory are not supported in a Kitfile "
                        f"(path {cleaned} in {label0})")
        for remote in remote_dataset_paths:
            if cleaned == remote:
                continue
            if remote == "." or cleaned.startswith(remote + "/"):
                for label, fpath in users:
                    add(fpath, f"{label} uses a path ({cleaned}) that is within the path for "
                               "a remote dataset")
    return problems, warnings


def _line_for(lines: dict[str, int], fpath: str) -> int | None:
    while fpath:
        if fpath in lines:
            return lines[fpath]
        cut = max(fpath.rfind("."), fpath.rfind("["))
        if cut <= 0:
            break
        fpath = fpath[:cut]
    return lines.get(fpath) if fpath else None


# --------------------------------------------------------------------------- YAML input

_PLAIN = "?plain"  # sentinel tag: untagged plain scalar (resolved later with Go's rules)
_QUOTED = "?quoted"  # sentinel tag: untagged quoted or block scalar (always a string)
_YAML = "tag:yaml.org,2002:"
_MAX_DEPTH = 200
_MAX_NODES = 5_000_000
_ALIAS_CHECK_FROM = 100_000

_loader_cls: Any = None


def _loader() -> Any:
    """A libyaml (or pure-Python) SafeLoader whose resolver leaves scalars unresolved."""
    global _loader_cls
    if _loader_cls is None:
        import yaml

        base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

        class _KitfileLoader(base):  # type: ignore[misc, valid-type]
            def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
                if kind is yaml.ScalarNode:
                    return _PLAIN if implicit[0] else _QUOTED
                if kind is yaml.SequenceNode:
                    return _YAML + "seq"
                return _YAML + "map"

        _loader_cls = _KitfileLoader
    return _loader_cls


def loads(text: str, source: str = "Kitfile") -> Kitfile:
    """Parse Kitfile YAML strictly. Raises KitfileError (and only that) on any problem."""
    try:
        return _Decoder(source).decode(text)
    except KitfileError:
        raise
    except Exception as exc:  # the contract: only KitfileError escapes
        # Defence in depth: the decoder reports every problem it knows itself; this turns
        # whatever a YAML library could still throw on hostile input into a KitfileError.
        # The fuzz tests fail on this message, so it never hides a bug of ours unseen.
        err = KitfileError(f"{source}: {INTERNAL_ERROR_MARKER} while parsing Kitfile: "
                           f"{type(exc).__name__}: {exc}",
                           fix="check that the file is a valid YAML Kitfile")
        err.source = source
        raise err from exc


def load(path: str | os.PathLike[str]) -> Kitfile:
    """Read and parse the Kitfile at ``path``."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_KITFILE_BYTES + 1)
    except FileNotFoundError:
        raise NotFound(f"Kitfile {p} does not exist",
                       fix="check the path, or create a Kitfile (kitaudit init)")
    except IsADirectoryError:
        raise KitfileError(f"{p} is a directory, not a Kitfile",
                           fix="pass the Kitfile itself, or the directory as the context")
    except OSError as exc:
        raise KitfileError(f"cannot read Kitfile {p}: {exc.strerror or exc}")
    if len(data) > MAX_KITFILE_BYTES:
        raise KitfileError(f"{p}: Kitfile is larger than {MAX_KITFILE_BYTES} bytes",
                           fix="a Kitfile describes files; it should be small")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KitfileError(f"{p}: Kitfile is not UTF-8 (byte {exc.start})",
                           fix="save the Kitfile as UTF-8")
    return loads(text, source=str(p))


def find_kitfile(context_dir: str | os.PathLike[str]) -> Path:
    """The Kitfile of a context directory (``Kitfile``, ``kitfile`` or ``.kitfile``)."""
    d = Path(context_dir)
    if not d.is_dir():
        raise NotFound(f"context directory {d} does not exist",
                       fix="pass the directory that holds the Kitfile and the model files")
    for name in KITFILE_NAMES:
        candidate = d / name
        if candidate.is_file():
            return candidate
    raise NotFound(f"no Kitfile in {d} (looked for {', '.join(KITFILE_NAMES)})",
                   fix="create one (kitaudit init) or name it with -f/--file")


class _Decoder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []
        self.lines: dict[str, int] = {}
        self.visits = 0
        self.distinct: set[int] = set()
        self.exhausted = False

    # ------------------------------------------------------------ reporting

    def err(self, node: Any, fpath: str, msg: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        where = f"{self.source}:{line}: " if line else f"{self.source}: "
        self.problems.append(f"{where}{fpath}: {msg}" if fpath else f"{where}{msg}")

    def fail(self) -> None:
        if self.problems:
            err = KitfileError(self.problems,
                               fix="correct the Kitfile; every problem is listed")
            err.source = self.source
            raise err

    # ------------------------------------------------------------ entry point

    def decode(self, text: str) -> Kitfile:
        import yaml

        if not isinstance(text, str):
            raise KitfileError(f"{self.source}: Kitfile text must be a str")
        try:
            loader = _loader()(text)
            try:
                root = loader.get_node() if loader.check_node() else None
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = " ".join(str(exc.problem or exc.context or "invalid YAML").split())
            if mark is not None:
                self.problems.append(f"{self.source}:{mark.line + 1}: invalid YAML: {problem}")
            else:
                self.problems.append(f"{self.source}: invalid YAML: {problem}")
            self.fail()
            raise AssertionError("unreachable") from None
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, max(int(exc.position or 0), 0)) + 1
            ch = exc.character
            code = ord(ch[0]) if isinstance(ch, str) and ch else ch if isinstance(ch, int) else 0
            self.problems.append(f"{self.source}:{line}: invalid YAML: unacceptable character "
                                 f"#x{code:04x}")
            self.fail()
            raise AssertionError("unreachable") from None
        except yaml.YAMLError as exc:
            self.problems.append(f"{self.source}: invalid YAML: {' '.join(str(exc).split())}")
            self.fail()
            raise AssertionError("unreachable") from None
        except UnicodeEncodeError as exc:
            line = text.count("\n", 0, exc.start) + 1
            self.problems.append(f"{self.source}:{line}: invalid text: lone surrogate "
                                 "character")
            self.fail()
            raise AssertionError("unreachable") from None

        if root is None or _is_null(root):
            self.problems.append(f"{self.source}: Kitfile is empty")
            self.fail()
        if not _is_map(root):
            self.err(root, "", f"expected a mapping of Kitfile fields, got {_kind(root)}")
            self.fail()
        kf = Kitfile(source=self.source, lines=self.lines)
        for key, knode, vnode in self.items(root, ""):
            fpath = key
            self.lines[fpath] = vnode.start_mark.line + 1
            if key == "manifestVersion":
                kf.manifest_version = self.string(vnode, fpath)
            elif key == "package":
                pkg = self.struct(vnode, fpath, Package)
                if pkg is not None:
                    kf.package = pkg
            elif key == "model":
                model = self.struct(vnode, fpath, Model)
                if model is not None and model != Model():
                    kf.model = model
            else:
                for attr, skey, cls in _SECTIONS:
                    if key == skey:
                        setattr(kf, attr, self.struct_list(vnode, fpath, cls))
                        break
                else:
                    self.err(knode, fpath, "unknown field")
        self.fail()
        return kf

    # ------------------------------------------------------------ structure

    def items(self, node: Any, fpath: str) -> list[tuple[str, Any, Any]]:
        """(key, key node, value node) of a mapping, merges applied, duplicates reported."""
        out: list[tuple[str, Any, Any]] = []
        seen: dict[str, Any] = {}
        for knode, vnode in self._merged(node, fpath, 0):
            if not _is_scalar(knode):
                self.err(knode, fpath, "mapping keys must be strings")
                continue
            key = knode.value
            if key in seen:
                self.err(knode, _join(fpath, key), "mapping key already defined at line "
                                                   f"{seen[key].start_mark.line + 1}")
                continue
            seen[key] = knode
            out.append((key, knode, vnode))
        return out

    def _merged(self, node: Any, fpath: str, depth: int) -> Iterator[tuple[Any, Any]]:
        """Mapping pairs with ``<<`` merge keys expanded (explicit keys win, as in Go)."""
        explicit: list[tuple[Any, Any]] = []
        merged: list[tuple[Any, Any]] = []
        for knode, vnode in node.value:
            if _is_scalar(knode) and knode.tag == _PLAIN and knode.value == "<<":
                sources = vnode.value if _is_seq(vnode) else [vnode]
                for src in sources:
                    if not _is_map(src) or depth > 20:
                        self.err(src, fpath, "merge key << needs a mapping or a list of "
                                             "mappings")
                        continue
                    merged.extend(self._merged(src, fpath, depth + 1))
            else:
                explicit.append((knode, vnode))
        if not merged:
            return iter(explicit)
        keys = {k.value for k, _ in explicit if _is_scalar(k)}
        kept: list[tuple[Any, Any]] = []
        for k, v in merged:
            if _is_scalar(k) and k.value in keys:
                continue
            keys.add(k.value if _is_scalar(k) else id(k))
            kept.append((k, v))
        return iter(kept + explicit)

    def struct(self, node: Any, fpath: str, cls: type) -> Any:
        if _is_null(node):
            return None
        if not _is_map(node):
            self.err(node, fpath, f"expected a mapping, got {_kind(node)}")
            return None
        self.lines.setdefault(fpath, node.start_mark.line + 1)
        spec = {key: (attr, kind) for attr, key, kind, _ in _FIELDS[cls]}
        kwargs: dict[str, Any] = {}
        for key, knode, vnode in self.items(node, fpath):
            sub = _join(fpath, key)
            if key not in spec:
                self.err(knode, sub, "unknown field")
                continue
            attr, kind = spec[key]
            self.lines[sub] = vnode.start_mark.line + 1
            if kind == _S:
                kwargs[attr] = self.string(vnode, sub)
            elif kind == _SL:
                kwargs[attr] = self.string_list(vnode, sub)
            elif kind == _PARTS:
                kwargs[attr] = self.struct_list(vnode, sub, ModelPart)
            else:
                kwargs[attr] = self.any_value(vnode, sub, 0, set())
        return cls(**kwargs)

    def struct_list(self, node: Any, fpath: str, cls: type) -> list[Any]:
        if _is_null(node):
            return []
        if not _is_seq(node):
            self.err(node, fpath, f"expected a list, got {_kind(node)}")
            return []
        out = []
        for i, item in enumerate(node.value):
            entry = self.struct(item, f"{fpath}[{i}]", cls)
            if entry is None:
                self.lines.setdefault(f"{fpath}[{i}]", item.start_mark.line + 1)
                entry = cls()
            out.append(entry)
        return out

    def string(self, node: Any, fpath: str) -> str:
        if not _is_scalar(node):
            self.err(node, fpath, f"expected a string, got {_kind(node)}")
            return ""
        if _is_null(node):
            return ""
        if node.tag == _YAML + "binary":
            return self._binary(node, fpath)
        return node.value

    def string_list(self, node: Any, fpath: str) -> list[str]:
        if _is_null(node):
            return []
        if not _is_seq(node):
            self.err(node, fpath, f"expected a list of strings, got {_kind(node)}")
            return []
        return [self.string(item, f"{fpath}[{i}]") for i, item in enumerate(node.value)]

    def _binary(self, node: Any, fpath: str) -> str:
        try:
            raw = base64.b64decode("".join(node.value.split()), validate=True)
        except (binascii.Error, ValueError):
            self.err(node, fpath, "invalid base64 in !!binary value")
            return ""
        return raw.decode("utf-8", "replace")

    # ------------------------------------------------------------ free-form values

    def any_value(self, node: Any, fpath: str, depth: int, active: set[int]) -> Any:
        """A parameters value as kit sees it (Go yaml.v3 into ``any``, JSON-compatible)."""
        # Aliases may expand a small text into a huge value (billion laughs): like Go
        # yaml.v3, refuse documents that expand far beyond the nodes they contain.
        self.visits += 1
        self.distinct.add(id(node))
        if self.exhausted or (self.visits > _ALIAS_CHECK_FROM and (
                self.visits > 10 * len(self.distinct) or self.visits > _MAX_NODES)):
            if not self.exhausted:
                self.exhausted = True
                self.err(node, fpath, "aliases expand to too many values")
            return None
        if depth > _MAX_DEPTH:
            self.err(node, fpath, f"values nested deeper than {_MAX_DEPTH} levels")
            return None
        if _is_scalar(node):
            return self.scalar_value(node, fpath)
        if id(node) in active:
            self.err(node, fpath, "recursive alias")
            return None
        active.add(id(node))
        try:
            if _is_seq(node):
                return [self.any_value(item, f"{fpath}[{i}]", depth + 1, active)
                        for i, item in enumerate(node.value)]
            out: dict[str, Any] = {}
            for knode, vnode in self._any_pairs(node, fpath):
                key = self.key_value(knode, fpath)
                if key is None:
                    continue
                if key in out:
                    self.err(knode, _join(fpath, key), "mapping key already defined")
                    continue
                out[key] = self.any_value(vnode, _join(fpath, key), depth + 1, active)
            return dict(sorted(out.items()))
        finally:
            active.discard(id(node))

    def _any_pairs(self, node: Any, fpath: str) -> list[tuple[Any, Any]]:
        return list(self._merged(node, fpath, 0))

    def key_value(self, node: Any, fpath: str) -> str | None:
        if not _is_scalar(node):
            self.err(node, fpath, "map keys must be strings (parameters must be "
                                  "JSON-compatible)")
            return None
        value = self.scalar_value(node, fpath)
        if not isinstance(value, str):
            self.err(node, fpath, f"map key {node.value!r} is not a string (parameters must "
                                  "be JSON-compatible; quote the key)")
            return None
        return value

    def scalar_value(self, node: Any, fpath: str) -> Any:
        tag, text = node.tag, node.value
        if tag == _PLAIN:
            kind, value = _resolve_plain(text)
            if kind == "float" and not _finite(value):
                self.err(node, fpath, f"{text} is not JSON-compatible (no infinities or NaN)")
                return None
            return value
        if tag == _QUOTED or tag == "!" or tag == _YAML + "str" or tag == _YAML + "timestamp":
            return text
        if tag == _YAML + "null":
            return None
        if tag == _YAML + "binary":
            return self._binary(node, fpath)
        if tag == _YAML + "bool":
            if text in _BOOL_WORDS:
                return _BOOL_WORDS[text]
            self.err(node, fpath, f"cannot decode {text!r} as a !!bool")
            return None
        if tag in (_YAML + "int", _YAML + "float"):
            kind, value = _resolve_plain(text)
            if kind == "int" or (kind == "float" and tag == _YAML + "float"):
                if tag == _YAML + "float":
                    value = float(value)
                if _finite(value):
                    return value
            self.err(node, fpath, f"cannot decode {text!r} as a {tag.replace(_YAML, '!!')}")
            return None
        return text  # any other tag: Go keeps the text as a string


def _join(fpath: str, key: str) -> str:
    return f"{fpath}.{key}" if fpath else key


def _is_scalar(node: Any) -> bool:
    return node.id == "scalar"


def _is_seq(node: Any) -> bool:
    return node.id == "sequence"


def _is_map(node: Any) -> bool:
    return node.id == "mapping"


def _is_null(node: Any) -> bool:
    if node.id != "scalar":
        return False
    if node.tag == _PLAIN:
        return node.value in _NULL_WORDS
    return node.tag == _YAML + "null"


def _kind(node: Any) -> str:
    if node.id == "mapping":
        return "a mapping"
    if node.id == "sequence":
        return "a list"
    return f"the scalar {node.value[:40]!r}"


def _finite(v: Any) -> bool:
    return not isinstance(v, float) or (v == v and v not in (float("inf"), float("-inf")))


# ----- Go yaml.v3 plain-scalar resolution

_NULL_WORDS = frozenset(("", "~", "null", "Null", "NULL"))
_BOOL_WORDS = {"true": True, "True": True, "TRUE": True,
               "false": False, "False": False, "FALSE": False}
_SPECIAL_FLOATS = {
    ".inf": float("inf"), ".Inf": float("inf"), ".INF": float("inf"),
    "+.inf": float("inf"), "+.Inf": float("inf"), "+.INF": float("inf"),
    "-.inf": float("-inf"), "-.Inf": float("-inf"), "-.INF": float("-inf"),
    ".nan": float("nan"), ".NaN": float("nan"), ".NAN": float("nan"),
}
_GO_INT_RE = re.compile(
    r"([+-]?)(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)\Z")
_YAML_FLOAT_RE = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_DOT_FLOAT_RE = re.compile(r"\.[0-9]+(?:[eE][-+]?[0-9]+)?\Z")
_TIMESTAMP_RE = re.compile(
    r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
    r"(?:[Tt][0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})"
    r"| [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(?:\.[0-9]+)?)?\Z")
_BASE60_RE = re.compile(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?\Z")
_OLD_BOOLS = frozenset(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON",
                        "n", "N", "no", "No", "NO", "off", "Off", "OFF"))
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


def _go_int(plain: str) -> int | None:
    m = _GO_INT_RE.match(plain)
    if not m:
        return None
    sign, digits = m.groups()
    if digits[:2] in ("0x", "0X"):
        value = int(digits[2:], 16)
    elif digits[:2] in ("0o", "0O"):
        value = int(digits[2:], 8)
    elif digits[:2] in ("0b", "0B"):
        value = int(digits[2:], 2)
    elif len(digits) > 1 and digits[0] == "0":
        value = int(digits[1:], 8)
    else:
        value = int(digits)
    if sign == "-":
        value = -value
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    if not sign and value <= _UINT64_MAX:
        return value
    return None


def _is_timestamp(s: str) -> bool:
    m = _TIMESTAMP_RE.match(s)
    if not m:
        return False
    year, month, day = (int(g) for g in m.groups())
    if not 1 <= month <= 12 or day < 1:
        return False
    days = (31, 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28,
            31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[month - 1]
    return day <= days


def _resolve_plain(s: str) -> tuple[str, Any]:
    """How Go yaml.v3 resolves an untagged plain scalar: (kind, value)."""
    if s in _NULL_WORDS:
        return "null", None
    if s in _BOOL_WORDS:
        return "bool", _BOOL_WORDS[s]
    if s in _SPECIAL_FLOATS:
        return "float", _SPECIAL_FLOATS[s]
    c = s[0]
    if c == ".":
        if _DOT_FLOAT_RE.match(s):
            return "float", float(s)
        return "str", s
    if c in "+-0123456789":
        if c.isdigit() and _is_timestamp(s):
            return "timestamp", s  # Go keeps timestamps decoded into `any` as strings
        plain = s.replace("_", "")
        iv = _go_int(plain)
        if iv is not None:
            return "int", iv
        if _YAML_FLOAT_RE.match(plain):
            fv = float(plain)
            if fv not in (float("inf"), float("-inf")):
                return "float", fv
    if s == "<<":
        return "merge", s
    return "str", s


# --------------------------------------------------------------------------- JSON input


def from_json(data: bytes | str, source: str = "config") -> Kitfile:
    """A Kitfile from a ModelKit config blob (the Kitfile as JSON with layer digests).

    Lenient about unknown keys (newer kits add fields; Go's json decoder ignores them
    too) and matches keys case-insensitively like Go; strict about types.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > MAX_KITFILE_BYTES:
            raise KitfileError(f"{source}: config is larger than {MAX_KITFILE_BYTES} bytes")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            text = bytes(data).decode("utf-8", "replace")
    elif isinstance(data, str):
        text = data
    else:
        raise KitfileError(f"{source}: config must be bytes or str")
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_int=_json_int)
    except (ValueError, RecursionError) as exc:
        err = KitfileError(f"{source}: config is not valid JSON: {' '.join(str(exc).split())}",
                           fix="the config blob must be the Kitfile as JSON")
        err.source = source
        raise err
    dec = _JsonDecoder(source)
    try:
        kf = dec.kitfile(doc)
    except RecursionError:
        dec.problems.append("config nested too deeply")
        kf = Kitfile()
    if dec.problems:
        err = KitfileError([f"{source}: {p}" for p in dec.problems],
                           fix="the config blob must be the Kitfile as JSON")
        err.source = source
        raise err
    kf.source = source
    return kf


from_config = from_json


def _json_int(text: str) -> int | float:
    """Integers as kit reads them: Go decodes JSON numbers into float64, so integers
    beyond 2**53 lose precision there; smaller ones stay ints here (exact either way)."""
    value = int(text)
    if value == 0 and text.startswith("-"):
        return -0.0  # Go keeps -0 as float64 -0 and writes it back as "-0"
    return value if -(2**53) <= value <= 2**53 else float(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _JsonDecoder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    @staticmethod
    def _lookup(obj: dict[str, Any], key: str) -> tuple[bool, Any]:
        if key in obj:
            return True, obj[key]
        low = key.lower()
        found = False
        value = None
        for k, v in obj.items():
            if isinstance(k, str) and k.lower() == low:
                found, value = True, v
        return found, value

    def kitfile(self, doc: Any) -> Kitfile:
        if not isinstance(doc, dict):
            self.problems.append(f"expected a JSON object, got {type(doc).__name__}")
            return Kitfile()
        kf = Kitfile()
        _, mv = self._lookup(doc, "manifestVersion")
        kf.manifest_version = self.string(mv, "manifestVersion")
        _, pkg = self._lookup(doc, "package")
        kf.package = self.struct(pkg, "package", Package) or Package()
        _, model = self._lookup(doc, "model")
        m = self.struct(model, "model", Model)
        kf.model = m if m is not None and m != Model() else None
        for attr, key, cls in _SECTIONS:
            _, value = self._lookup(doc, key)
            setattr(kf, attr, self.struct_list(value, key, cls))
        return kf

    def string(self, value: Any, fpath: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            self.problems.append(f"{fpath}: expected a string, got {_json_type(value)}")
            return ""
        return _fix_surrogates(value)

    def struct(self, value: Any, fpath: str, cls: type) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.append(f"{fpath}: expected an object, got {_json_type(value)}")
            return None
        kwargs: dict[str, Any] = {}
        fields = _FIELDS[cls] + (_LAYER_FIELDS if cls is not Package else ())
        for attr, key, kind, _ in fields:
            found, v = self._lookup(value, key)
            if not found:
                continue
            sub = _join(fpath, key)
            if kind == _S:
                kwargs[attr] = self.string(v, sub)
            elif kind == _SL:
                if v is None:
                    continue
                if not isinstance(v, list):
                    self.problems.append(f"{sub}: expected a list, got {_json_type(v)}")
                    continue
                kwargs[attr] = [self.string(x, f"{sub}[{i}]") for i, x in enumerate(v)]
            elif kind == _PARTS:
                kwargs[attr] = self.struct_list(v, sub, ModelPart)
            else:
                kwargs[attr] = _json_any(v)
        return cls(**kwargs)

    def struct_list(self, value: Any, fpath: str, cls: type) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problems.append(f"{fpath}: expected a list, got {_json_type(value)}")
            return []
        return [self.struct(x, f"{fpath}[{i}]", cls) or cls() for i, x in enumerate(value)]


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _fix_surrogates(s: str) -> str:
    return _SURROGATE_RE.sub("\ufffd", s) if _SURROGATE_RE.search(s) else s


def _json_any(v: Any) -> Any:
    if isinstance(v, str):
        return _fix_surrogates(v)
    if isinstance(v, list):
        return [_json_any(x) for x in v]
    if isinstance(v, dict):
        return dict(sorted((_fix_surrogates(k), _json_any(x)) for k, x in v.items()))
    return v


def _json_type(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(v), "null")


# --------------------------------------------------------------------------- JSON output


def _go_float(f: float) -> str:
    """Go's encoding/json float64 format (shortest digits; exponent outside 1e-6..1e21)."""
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    a = abs(f)
    d = Decimal(repr(f))
    if 1e-6 <= a < 1e21:
        s = format(d, "f")
        if "." in s:
            s = s.rstrip("0").rstrip(".")
        return s
    sign, digits, exp = d.as_tuple()
    ds = "".join(str(x) for x in digits).rstrip("0") or "0"
    e = int(exp) + len(digits) - 1
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    es = f"{abs(e):02d}" if e >= 0 else f"{abs(e)}"
    return ("-" if sign else "") + mant + "e" + ("+" if e >= 0 else "-") + es


def _json_str(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    if any(c in s for c in "<>&\u2028\u2029"):
        out = (out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
               .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return out


def _json_value(v: Any, out: list[str]) -> None:
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        if not _finite(v):
            raise KitfileError("parameters hold a value JSON cannot represent (inf/NaN)")
        out.append(_go_float(v))
    elif isinstance(v, str):
        out.append(_json_str(v))
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, x in enumerate(v):
            if i:
                out.append(",")
            _json_value(x, out)
        out.append("]")
    elif isinstance(v, dict):
        _check_keys(v)
        out.append("{")
        for i, k in enumerate(sorted(v)):
            if i:
                out.append(",")
            out.append(_json_str(k))
            out.append(":")
            _json_value(v[k], out)
        out.append("}")
    else:
        raise KitfileError(f"parameters hold a value of type {type(v).__name__} that JSON "
                           "cannot represent")


def _json_struct(obj: Any, out: list[str]) -> None:
    out.append("{")
    first = True
    fields = _FIELDS[type(obj)] + (_LAYER_FIELDS if type(obj) is not Package else ())
    for attr, key, kind, omitempty in fields:
        value = getattr(obj, attr)
        if omitempty and (value is None or (kind != _ANY and not value)):
            continue
        if not first:
            out.append(",")
        first = False
        out.append(_json_str(key))
        out.append(":")
        if kind == _S:
            out.append(_json_str(value))
        elif kind == _SL:
            _json_value(list(value), out)
        elif kind == _PARTS:
            _json_list(value, out)
        else:
            _json_value(value, out)
    out.append("}")


def _json_list(items: list[Any], out: list[str]) -> None:
    out.append("[")
    for i, item in enumerate(items):
        if i:
            out.append(",")
        _json_struct(item, out)
    out.append("]")


def _json_kitfile(kf: Kitfile, out: list[str]) -> None:
    out.append('{"manifestVersion":')
    out.append(_json_str(kf.manifest_version))
    out.append(',"package":')  # Go's omitempty never omits a struct
    _json_struct(kf.package, out)
    if kf.model is not None:
        out.append(',"model":')
        _json_struct(kf.model, out)
    for attr, key, _cls in _SECTIONS:
        items = getattr(kf, attr)
        if items:
            out.append(f',"{key}":')
            _json_list(items, out)
    out.append("}")


# --------------------------------------------------------------------------- YAML output
#
# A small emitter reproducing Go yaml.v3 (indent 2, no line wrapping) for the shapes a
# Kitfile can hold: block mappings and sequences, flow ``authors``, plain / single- /
# double-quoted / literal scalars chosen the way libyaml's emitter chooses them.


def _printable(c: str) -> bool:
    o = ord(c)
    return (o == 0x0A or 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xD7FF
            or (0xE000 <= o <= 0xFFFD and o != 0xFEFF))


_BREAKS = frozenset("\r\n\x85\u2028\u2029")
_BLANKZ = frozenset(" \t\r\n\x85\u2028\u2029")


@functools.lru_cache(maxsize=4096)
def _analyze(s: str) -> tuple[bool, bool, bool, bool, bool]:
    """libyaml's analyze_scalar: (multiline, flow_plain, block_plain, single, block)."""
    if not s:
        return False, False, True, True, False
    block_ind = flow_ind = line_breaks = special = tabs = False
    leading_space = leading_break = trailing_space = trailing_break = False
    break_space = space_break = previous_space = previous_break = False
    if s.startswith(("---", "...")):
        block_ind = flow_ind = True
    preceded_ws = True
    n = len(s)
    for i, c in enumerate(s):
        followed_ws = i + 1 >= n or s[i + 1] in " \t"
        if i == 0:
            if c in "#,[]{}&*!|>'\"%@`":
                flow_ind = block_ind = True
            elif c in "?:":
                flow_ind = True
                if followed_ws:
                    block_ind = True
            elif c == "-" and followed_ws:
                flow_ind = block_ind = True
        else:
            if c in ",?[]{}":
                flow_ind = True
            elif c == ":":
                flow_ind = True
                if followed_ws:
                    block_ind = True
            elif c == "#" and preceded_ws:
                flow_ind = block_ind = True
        if c == "\t":
            tabs = True
        elif not _printable(c):
            special = True
        if c in _BREAKS:
            line_breaks = True
        if c == " ":
            if i == 0:
                leading_space = True
            if i == n - 1:
                trailing_space = True
            if previous_break:
                break_space = True
            previous_space, previous_break = True, False
        elif c in _BREAKS:
            if i == 0:
                leading_break = True
            if i == n - 1:
                trailing_break = True
            if previous_space:
                space_break = True
            previous_space, previous_break = False, True
        else:
            previous_space = previous_break = False
        preceded_ws = c in _BLANKZ or c == "\0"
    flow_plain = block_plain = single = block = True
    if leading_space or leading_break or trailing_space or trailing_break:
        flow_plain = block_plain = False
    if trailing_space:
        block = False
    if break_space:
        flow_plain = block_plain = single = False
    if space_break or tabs or special:
        flow_plain = block_plain = single = False
    if space_break or special:
        block = False
    if line_breaks:
        flow_plain = block_plain = False
    if flow_ind:
        flow_plain = False
    if block_ind:
        block_plain = False
    return line_breaks, flow_plain, block_plain, single, block


_DQ_ESCAPES = {"\0": "\\0", "\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n",
               "\v": "\\v", "\f": "\\f", "\r": "\\r", "\x1b": "\\e", '"': '\\"',
               "\\": "\\\\", "\x85": "\\N", "\xa0": "\\_", "\u2028": "\\L", "\u2029": "\\P"}


def _double_quoted(s: str) -> str:
    out = ['"']
    for c in s:
        if not _printable(c) or c == "\ufeff" or c in _BREAKS or c in '"\\':
            esc = _DQ_ESCAPES.get(c)
            if esc is None:
                o = ord(c)
                esc = (f"\\x{o:02X}" if o <= 0xFF else
                       f"\\u{o:04X}" if o <= 0xFFFF else f"\\U{o:08X}")
            out.append(esc)
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _plain_allowed_by_resolver(s: str) -> bool:
    """yaml.v3 writes a string plain only if it would read back as that string."""
    if not s or _resolve_plain(s)[0] != "str":
        return False
    return not (_BASE60_RE.match(s) or s in _OLD_BOOLS)


def _yaml_scalar_str(s: str, ctx: str) -> tuple[str, list[str] | None]:
    """(inline text, block lines or None) for a string; ctx is value, key or flow."""
    _multiline, flow_plain, block_plain, single_ok, block_ok = _analyze(s)
    if "\n" in s:
        style = "double" if ctx == "flow" else "literal"
    elif _plain_allowed_by_resolver(s):
        style = "plain"
    else:
        style = "double"
    if any(c in s for c in "\x85\u2028\u2029"):
        style = "double"  # libyaml would write these as raw line breaks; keep them escaped
    if style == "plain":
        if (ctx == "flow" and not flow_plain) or (ctx != "flow" and not block_plain):
            style = "single"
        if not s and ctx in ("flow", "key"):
            style = "single"
    if style == "single" and not single_ok:
        style = "double"
    if style == "literal" and (not block_ok or ctx != "value"):
        style = "double"
    if style == "plain":
        return s, None
    if style == "single":
        return "'" + s.replace("'", "''") + "'", None
    if style == "double":
        return _double_quoted(s), None
    # literal block scalar
    hints = ""
    if s[0] in " \n" or s[0] in _BREAKS:
        hints += "2"
    if not s.endswith("\n"):
        hints += "-"
    elif len(s) == 1 or s[-2] == "\n":
        hints += "+"
    body = s[:-1] if s.endswith("\n") else s
    return "|" + hints, body.split("\n")


def _yaml_scalar(v: Any, ctx: str) -> tuple[str, list[str] | None]:
    if v is None:
        return "null", None
    if v is True:
        return "true", None
    if v is False:
        return "false", None
    if isinstance(v, int):
        return str(v), None
    if isinstance(v, float):
        return _go_float_g(v), None
    if not isinstance(v, str):
        raise KitfileError(f"parameters hold a value of type {type(v).__name__} that a "
                           "Kitfile cannot represent")
    return _yaml_scalar_str(v, ctx)


def _go_float_g(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64) as yaml.v3 writes floats."""
    if f != f:
        return ".nan"
    if f in (float("inf"), float("-inf")):
        return ".inf" if f > 0 else "-.inf"
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    d = Decimal(repr(f))
    sign, digits, exp = d.as_tuple()
    ds = "".join(str(x) for x in digits).rstrip("0") or "0"
    e = int(exp) + len(digits) - 1
    neg = "-" if sign else ""
    if e < -4 or e >= 6:  # shortest 'g' switches to an exponent at 1e+06
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'+' if e >= 0 else '-'}{abs(e):02d}"
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _is_nat_digit(c: str) -> bool:
    return unicodedata.category(c) == "Nd"


def _natural_less(a: str, b: str) -> bool:
    """yaml.v3's map key order (keyList.Less) for string keys."""
    digits = False
    for i in range(min(len(a), len(b))):
        ca, cb = a[i], b[i]
        if ca == cb:
            digits = _is_nat_digit(ca)
            continue
        al, bl = ca.isalpha(), cb.isalpha()
        if al and bl:
            return ca < cb
        if al or bl:
            return al if digits else bl
        an = bn = 0
        if ca == "0" or cb == "0":
            j = i - 1
            while j >= 0 and _is_nat_digit(a[j]):
                if a[j] != "0":
                    an = bn = 1
                    break
                j -= 1
        ai = i
        while ai < len(a) and _is_nat_digit(a[ai]):
            an = an * 10 + (ord(a[ai]) - 48)
            ai += 1
        bi = i
        while bi < len(b) and _is_nat_digit(b[bi]):
            bn = bn * 10 + (ord(b[bi]) - 48)
            bi += 1
        if an != bn:
            return an < bn
        if ai != bi:
            return ai < bi
        return ca < cb
    return len(a) < len(b)


def _natural_cmp(a: str, b: str) -> int:
    if _natural_less(a, b):
        return -1
    if _natural_less(b, a):
        return 1
    return 0


_natural_key = functools.cmp_to_key(_natural_cmp)


def _check_keys(d: dict[Any, Any]) -> None:
    if not all(isinstance(k, str) for k in d):
        raise KitfileError("parameters hold a map with non-string keys, which a Kitfile "
                           "cannot represent")


def _natural_items(d: dict[str, Any]) -> list[tuple[str, Any]]:
    """Map items in yaml.v3's key order."""
    _check_keys(d)
    return sorted(d.items(), key=lambda kv: _natural_key(kv[0]))


def _is_empty_collection(v: Any) -> bool:
    return isinstance(v, (dict, list, tuple)) and not v


def _yaml_mapping(pairs: list[tuple[str, Any]], indent: int, lines: list[str]) -> None:
    """Block mapping at ``indent``; values may be scalars, lists, dicts or _YStruct."""
    pad = " " * indent
    for key, value in pairs:
        ktext, _ = _yaml_scalar_str(key, "key")
        if "\n" in key or len(key.encode("utf-8")) > 128:
            ktext, kblock = _yaml_scalar_str(key, "value")
            lines.append(f"{pad}? {ktext}")
            if kblock is not None:
                lines.extend(f"{pad}  {ln}" if ln else "" for ln in kblock)
            prefix = f"{pad}:"
        else:
            prefix = f"{pad}{ktext}:"
        _yaml_value_after(prefix, value, indent, lines)


def _yaml_value_after(prefix: str, value: Any, indent: int, lines: list[str]) -> None:
    if isinstance(value, _YFlow):
        items = ", ".join(_yaml_scalar(x, "flow")[0] for x in value.items)
        lines.append(f"{prefix} [{items}]")
    elif isinstance(value, _YStruct):
        if value.pairs:
            lines.append(prefix)
            _yaml_mapping(value.pairs, indent + 2, lines)
        else:
            lines.append(f"{prefix} {{}}")
    elif isinstance(value, dict):
        if value:
            lines.append(prefix)
            _yaml_mapping(_natural_items(value),
                          indent + 2, lines)
        else:
            lines.append(f"{prefix} {{}}")
    elif isinstance(value, (list, tuple)):
        if value:
            lines.append(prefix)
            _yaml_sequence(list(value), indent + 2, lines)
        else:
            lines.append(f"{prefix} []")
    else:
        text, block = _yaml_scalar(value, "value")
        lines.append(f"{prefix} {text}")
        if block is not None:
            bpad = " " * (indent + 2)
            lines.extend(f"{bpad}{ln}" if ln else "" for ln in block)


def _yaml_sequence(items: list[Any], indent: int, lines: list[str]) -> None:
    pad = " " * indent
    for item in items:
        if isinstance(item, (_YStruct, dict, list, tuple)) and not _is_empty_collection(item) \
                and not (isinstance(item, _YStruct) and not item.pairs):
            sub: list[str] = []
            if isinstance(item, _YStruct):
                _yaml_mapping(item.pairs, indent + 2, sub)
            elif isinstance(item, dict):
                _yaml_mapping(_natural_items(item),
                              indent + 2, sub)
            else:
                _yaml_sequence(list(item), indent + 2, sub)
            sub[0] = f"{pad}- " + sub[0][indent + 2:]
            lines.extend(sub)
        else:
            _yaml_value_after(f"{pad}-", item, indent, lines)


class _YStruct:
    """An ordered mapping (a Go struct) for the YAML emitter."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs


class _YFlow:
    """A flow-style sequence of scalars (``authors``)."""

    __slots__ = ("items",)

    def __init__(self, items: list[str]) -> None:
        self.items = items


def _ystruct(obj: Any) -> _YStruct:
    pairs: list[tuple[str, Any]] = []
    for attr, key, kind, omitempty in _FIELDS[type(obj)]:
        value = getattr(obj, attr)
        if omitempty and (value is None or (kind != _ANY and not value)):
            continue
        if kind == _SL:
            value = _YFlow(list(value))
        elif kind == _PARTS:
            value = [_ystruct(p) for p in value]
        pairs.append((key, value))
    return _YStruct(pairs)


def _yaml_kitfile(kf: Kitfile, lines: list[str]) -> None:
    pairs: list[tuple[str, Any]] = [("manifestVersion", kf.manifest_version)]
    pkg = _ystruct(kf.package)
    if pkg.pairs:
        pairs.append(("package", pkg))
    if kf.model is not None:
        pairs.append(("model", _ystruct(kf.model)))
    for attr, key, _cls in _SECTIONS:
        items = getattr(kf, attr)
        if items:
            pairs.append((key, [_ystruct(x) for x in items]))
    _yaml_mapping(pairs, 0, lines)


# --------------------------------------------------------------------------- saving


def save(kitfile: Kitfile, path: str | os.PathLike[str]) -> None:
    """Write ``kitfile`` as YAML to ``path`` atomically (temporary file + rename); an
    existing file keeps its permission bits."""
    from kitaudit.store import atomic_write

    target = Path(path)
    data = kitfile.to_yaml().encode("utf-8")
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    atomic_write(target, data, mode)
