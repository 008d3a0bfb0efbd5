"""``init``: generate a Kitfile from the contents of a directory, the way kit does.

Rules (kit's ``kit init``, as its conformance fixtures pin them):

* Files in the directory itself are typed by name:
  ``README*`` → docs "Readme file"; ``LICENSE*`` → docs "License file" (and the
  license is detected from its text); prompt files (``AGENTS.md``, ``SKILL.md``,
  ``CLAUDE.md``, ``*.prompt*``) → prompts; model weights (``.safetensors``,
  ``.gguf``, ``.onnx``, ``*pytorch_model*.bin``...) → model candidates; metadata
  (``.json .yaml .xml .txt``) → model parts if there is a model, else datasets;
  docs (``.md .adoc .html .pdf``); datasets (``.tar .zip .parquet .csv``). Any
  other file makes the whole context a catch-all ``code: [{path: .}]``.
* Each subdirectory is one unit: ``docs`` → docs; ``src pkg lib build`` → code;
  a directory holding only one kind of file (metadata aside) becomes one entry of
  that kind; a directory of model files contributes its model and metadata files
  as model candidates. Mixed or unknown directories become code entries (more than
  five of them → the catch-all code entry instead).
* Model candidates: one → the model (named after its path without extension).
  Several → the largest is the model if it is more than 1.5x the average size
  (adaptors beside a base model), else the first one in listing order (a
  multi-file model); the rest are parts.
* ``Kitfile``, ``kitfile``, ``.kitfile`` and ``.kitignore`` at the root, version-control
  directories (``.git``, ``.hg``, ``.svn``) and symlinks are skipped.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitaudit.errors import KitauditError

KITFILE_NAMES = ("Kitfile", "kitfile", ".kitfile")
SKIPPED_ROOT_NAMES = (*KITFILE_NAMES, ".kitignore")   # never packed from the context root
SKIPPED_DIR_NAMES = (".git", ".hg", ".svn")           # version-control metadata

MODEL_SUFFIXES = (
    ".safetensors", ".pkl", ".joblib",
    ".pth", ".pt", ".mar", ".pt2", ".ptl",            # PyTorch
    ".pb", ".ckpt", ".tflite", ".tfrecords",          # TensorFlow
    ".npy", ".npz",                                   # NumPy
    ".keras", ".h5", ".caffemodel", ".pmml", ".coreml",
    ".gguf", ".ggml", ".ggmf", ".llamafile", ".onnx",
)
MODEL_GLOBS = ("*pytorch_model*.bin",)
DOCS_SUFFIXES = (".md", ".adoc", ".html", ".pdf")
METADATA_SUFFIXES = (".json", ".yaml", ".xml", ".txt")
DATASET_SUFFIXES = (".tar", ".zip", ".parquet", ".csv")
PROMPT_NAMES = ("agents.md", "skill.md", "claude.md")
CODE_DIR_NAMES = ("src", "pkg", "lib", "build")
DOCS_DIR_NAMES = ("docs",)
CATCH_ALL_DIR_LIMIT = 5

# Kinds, in the order kit checks a directory's contents.
MODEL, DATASET, CODE, DOCS, METADATA, PROMPT, UNKNOWN = (
    "model", "dataset", "code", "docs", "metadata", "prompt", "unknown")
_KIND_ORDER = (MODEL, DATASET, CODE, DOCS, METADATA, PROMPT, UNKNOWN)


@dataclass
class _File:
    name: str
    path: str   # context-relative, forward slashes
    size: int


@dataclass
class _Dir:
    name: str
    path: str
    files: list[_File] = field(default_factory=list)
    subdirs: list[_Dir] = field(default_factory=list)


def file_kind(name: str) -> str:
    """The kind kit gives a file by its name: model, metadata, docs, dataset, prompt, unknown."""
    base = name.rsplit("/", 1)[-1].lower()
    if base in PROMPT_NAMES or ".prompt" in base:
        return PROMPT
    if name.endswith(MODEL_SUFFIXES) or any(fnmatch.fnmatchcase(base, g) for g in MODEL_GLOBS):
        return MODEL
    if name.endswith(METADATA_SUFFIXES):
        return METADATA
    if name.endswith(DOCS_SUFFIXES):
        return DOCS
    if name.endswith(DATASET_SUFFIXES):
        return DATASET
    return UNKNOWN


def _list(context: Path, rel: str, depth: int = 1) -> _Dir:
    """List ``rel``: its files, and its subdirectories down to ``depth`` more levels
    (deeper ones are listed by name only: the rules never look further)."""
    full = context / rel if rel != "." else context
    node = _Dir(name=Path(rel).name if rel != "." else ".", path=rel)
    try:
        names = sorted(os.listdir(full))
    except OSError as err:
        raise KitauditError(f"cannot read directory {full}: {err.strerror}",
                            fix="check that the directory exists and is readable") from None
    for name in names:
        if (rel == "." and name in SKIPPED_ROOT_NAMES) or name in SKIPPED_DIR_NAMES:
            continue
        child = name if rel == "." else f"{rel}/{name}"
        try:
            st = os.lstat(full / name)
        except FileNotFoundError:
            continue  # removed while we were listing
        if stat.S_ISDIR(st.st_mode):
            node.subdirs.append(_list(context, child, depth - 1) if depth > 0
                                else _Dir(name=name, path=child))
        elif stat.S_ISREG(st.st_mode):
            node.files.append(_File(name, child, st.st_size))
    return node


def _model_section(files: list[_File]) -> dict[str, Any]:
    def stem(f: _File) -> str:
        ext = os.path.splitext(f.name)[1]
        return f.path[: len(f.path) - len(ext)] if ext else f.path

    if len(files) == 1:
        return {"name": stem(files[0]), "path": files[0].path}
    largest = files[0]
    for f in files:
        if f.size > largest.size:
            largest = f
    average = sum(f.size for f in files) // len(files)
    if largest.size > average + average // 2:
        main, rest = largest, [f for f in files if f is not largest]
        model: dict[str, Any] = {"name": stem(main), "path": main.path}
    else:
        main, rest = files[0], files[1:]
        model = {"path": main.path}
    model["parts"] = [{"path": f.path} for f in rest]
    return model


class _Builder:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.datasets: list[dict[str, Any]] = []
        self.code: list[dict[str, Any]] = []
        self.prompts: list[dict[str, Any]] = []
        self.model_files: list[_File] = []
        self.metadata: list[_File] = []
        self.unprocessed_dirs: list[str] = []
        self.catch_all = False
        self.license_file: Path | None = None

    def add_top_file(self, f: _File, context: Path) -> None:
        lower = f.name.lower()
        if lower.startswith("readme"):
            self.docs.append({"path": f.path, "description": "Readme file"})
            return
        if lower.startswith("license"):
            self.docs.append({"path": f.path, "description": "License file"})
            self.license_file = context / f.path
            return
        kind = file_kind(f.path)
        if kind == MODEL:
            self.model_files.append(f)
        elif kind == METADATA:
            self.metadata.append(f)
        elif kind == DOCS:
            self.docs.append({"path": f.path})
        elif kind == DATASET:
            self.datasets.append({"path": f.path})
        elif kind == PROMPT:
            self.prompts.append({"path": f.path})
        else:
            self.catch_all = True

    def add_dir(self, d: _Dir) -> None:
        if d.name in DOCS_DIR_NAMES:
            self.docs.append({"path": d.path})
            return
        if d.name in CODE_DIR_NAMES:
            self.code.append({"path": d.path})
            return
        contents: dict[str, list[str]] = {k: [] for k in _KIND_ORDER}
        contents[UNKNOWN].extend(s.path for s in d.subdirs)
        metadata: list[_File] = []
        for f in d.files:
            kind = file_kind(f.name)
            if kind == MODEL:
                self.model_files.append(f)
            elif kind == METADATA:
                metadata.append(f)
            contents[kind].append(f.path)
        kinds = [k for k in _KIND_ORDER if contents[k] and k != METADATA]
        if len(kinds) > 1:
            self.unprocessed_dirs.append(d.path)  # mixed contents: code
            return
        overall = kinds[0] if kinds else UNKNOWN
        if overall == MODEL:
            self.model_files.extend(metadata)
        elif overall == DATASET:
            self.datasets.append({"path": d.path})
        elif overall == DOCS:
            self.docs.append({"path": d.path})
        elif overall == PROMPT:
            self.prompts.append({"path": d.path})
        else:
            self.unprocessed_dirs.append(d.path)


def generate_kitfile_dict(directory: str | os.PathLike[str], *, name: str | None = None,
                          description: str | None = None,
                          author: str | None = None) -> dict[str, Any]:
    """The generated Kitfile as a plain mapping with Kitfile YAML keys (empty parts left out)."""
    context = Path(directory)
    if not context.is_dir():
        raise KitauditError(f"{context} is not a directory",
                            fix="pass the directory holding the model files")
    root = _list(context, ".")
    b = _Builder()
    for f in root.files:
        b.add_top_file(f, context)
    for d in root.subdirs:
        b.add_dir(d)

    result: dict[str, Any] = {"manifestVersion": "1.0.0"}
    package: dict[str, Any] = {}
    if name:
        package["name"] = name
    if description:
        package["description"] = description
    if author:
        package["authors"] = [author]

    model: dict[str, Any] | None = None
    datasets = b.datasets
    if b.model_files:
        model = _model_section(b.model_files)
        parts = model.setdefault("parts", [])
        parts.extend({"path": f.path} for f in b.metadata)
        if not parts:
            del model["parts"]
    else:
        datasets.extend({"path": f.path} for f in b.metadata)

    code = b.code
    if b.catch_all or len(b.unprocessed_dirs) > CATCH_ALL_DIR_LIMIT:
        code = [{"path": "."}]  # replaces src/lib/... entries: '.' covers them
    else:
        code.extend({"path": p} for p in b.unprocessed_dirs)

    spdx = detect_license(b.license_file) if b.license_file else None
    if spdx:
        if model is not None:
            model["license"] = spdx
        elif len(datasets) == 1:
            datasets[0]["license"] = spdx
        elif len(code) == 1:
            code[0]["license"] = spdx
        else:
            package["license"] = spdx

    if package:
        result["package"] = package
    if model is not None:
        result["model"] = model
    for key, entries in (("code", code), ("datasets", datasets), ("docs", b.docs),
                         ("prompts", b.prompts)):
        if entries:
            result[key] = entries
    return result


def generate_kitfile(directory: str | os.PathLike[str], *, name: str | None = None,
                     description: str | None = None, author: str | None = None) -> Any:
    """Generate a Kitfile (:class:`kitaudit.kitfile.Kitfile`) for ``directory``."""
    import yaml

    from kitaudit import kitfile

    data = generate_kitfile_dict(directory, name=name, description=description, author=author)
    return kitfile.loads(yaml.safe_dump(data, sort_keys=False), source="generated Kitfile")


def write_kitfile(directory: str | os.PathLike[str], kitfile: Any, *,
                  force: bool = False) -> Path:
    """Write ``kitfile`` to ``<directory>/Kitfile``; refuse to replace one unless ``force``.

    ``kitfile`` is a Kitfile object (``to_yaml()``) or YAML text. The file is written
    to a temporary name and renamed into place.
    """
    target = Path(directory) / "Kitfile"
    if os.path.lexists(target) and not force:
        raise KitauditError(f"Kitfile already exists at {target}",
                            fix="use --force to overwrite it, or move it away first")
    if os.path.islink(target):
        raise KitauditError(f"{target} is a symbolic link; not replaced",
                            fix="remove the link first")
    text = kitfile if isinstance(kitfile, str) else kitfile.to_yaml()
    tmp = target.with_name(f".Kitfile.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise KitauditError(f"cannot write {target}: {err.strerror}",
                            fix="check the directory is writable") from None
    return target


# ------------------------------------------------------------------ licenses
_LICENSE_MARKERS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # (SPDX id, phrases that must all appear, phrases that must not appear)
    ("Apache-2.0", ("apache license", "version 2.0"), ()),
    ("MPL-2.0", ("mozilla public license", "2.0"), ()),
    ("MIT", ("permission is hereby granted, free of charge",
             "the above copyright notice and this permission notice shall be included"), ()),
    ("ISC", ("permission to use, copy, modify, and/or distribute this software for any "
             "purpose with or without fee is hereby granted",), ()),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms",
                      "neither the name"), ()),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",),
     ("neither the name",)),
    ("Unlicense", ("this is free and unencumbered software released into the public domain",),
     ()),
    ("CC-BY-4.0", ("creative commons attribution 4.0 international",),
     ("noncommercial", "sharealike", "noderivatives")),
)


def detect_license(path: str | os.PathLike[str]) -> str | None:
    """SPDX id of a license file when exactly one known license text is recognised.

    Recognises Apache-2.0, MPL-2.0, MIT, ISC, BSD-2/3-Clause, Unlicense and
    CC-BY-4.0. GPL-family texts are not mapped (their text does not say "-only" or
    "-or-later").
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(256 * 1024)
    except OSError:
        return None
    text = re.sub(r"\s+", " ", raw.decode("utf-8", "replace").lower())
    found = [spdx for spdx, need, avoid in _LICENSE_MARKERS
             if all(n in text for n in need) and not any(a in text for a in avoid)]
    return found[0] if len(found) == 1 else None
