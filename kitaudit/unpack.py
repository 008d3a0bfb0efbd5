"""``unpack``: a stored ModelKit → files in a directory, safely.

Layers are untrusted input. Every entry is checked before anything is written: no
absolute names, no ``..``, nothing but regular files and directories (links, devices and
FIFOs are refused), and nothing that resolves outside the target directory (also through
symbolic links already present there). Each layer is extracted into a staging directory
inside the target while its blob is hashed; only when the digest (and the diffId) match
are its files renamed into place. A bad layer leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from kitaudit.digest import CHUNK
from kitaudit.errors import DigestMismatch, KitauditError, NotFound, UnsafeArchive
from kitaudit.modelkit import LayerEntry, ModelKit, load_from_store


@dataclass
class UnpackResult:
    target: str
    files: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    kitfile: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "files": self.files, "skipped": self.skipped,
                "layers": self.layers, "kitfile": self.kitfile}


class _HashingReader:
    """Read-through hasher over a binary file object."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def safe_relpath(name: str) -> str:
    """Normalise an archive entry name, refusing anything that could escape."""
    if "\x00" in name:
        raise UnsafeArchive(f"entry name contains a NUL byte: {name!r}")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"entry {name!r} has an absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchive(f"entry {name!r} leaves the target directory")
    if not parts:
        raise UnsafeArchive(f"entry {name!r} has an empty name")
    return "/".join(parts)


def _inside(root: Path, candidate: Path) -> bool:
    root_real = os.path.realpath(root)
    cand_real = os.path.realpath(candidate)
    return cand_real == root_real or cand_real.startswith(root_real + os.sep)


def _decompressor(reader: _HashingReader, compression: str) -> Any:
    if compression == "gzip":
        import gzip

        return gzip.GzipFile(fileobj=reader, mode="rb")  # type: ignore[arg-type]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(reader, read_across_frames=True)
    return reader


def _bad_archive_errors() -> tuple[type[BaseException], ...]:
    """What a malformed layer raises while being read: tar, gzip and zstd format errors
    (not the OSErrors of writing into the staging directory, which must surface as they are)."""
    import gzip
    import zlib

    import zstandard

    return (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError)


def _check_blob_digest(reader: _HashingReader, digest: str) -> None:
    if reader.digest != digest:
        raise DigestMismatch(f"layer {digest} is corrupt (hashes to {reader.digest})",
                             fix="remove the ModelKit and pull it again")


def _extract_layer(store: Any, layer: LayerEntry, staging: Path) -> list[tuple[str, bool]]:
    """Extract one layer into ``staging``; return [(relpath, is_dir)] after verifying."""
    digest = layer.descriptor["digest"]
    diff_id = getattr(layer.entry, "diff_id", None) if layer.entry is not None else None
    out: list[tuple[str, bool]] = []
    with store.open_blob(digest) as fh:
        reader = _HashingReader(fh)
        stream = _decompressor(reader, layer.compression)
        raw = _HashingReader(stream) if layer.compression != "none" else reader
        try:
            if layer.fmt == "raw":
                rel = safe_relpath(layer.path)
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "wb") as outf:
                    while chunk := raw.read(CHUNK):
                        outf.write(chunk)
                out.append((rel, False))
            else:
                with tarfile.open(fileobj=raw, mode="r|") as tar:  # type: ignore[call-overload]
                    for member in tar:
                        rel = safe_relpath(member.name)
                        if member.isdir():
                            (staging / rel).mkdir(parents=True, exist_ok=True)
                            out.append((rel, True))
                            continue
                        if not member.isreg():
                            kind = ("link" if member.issym() or member.islnk() else
                                    "device" if member.ischr() or member.isblk() else
                                    "fifo" if member.isfifo() else "special file")
                            raise UnsafeArchive(
                                f"layer {digest[:19]} holds a {kind} ({member.name!r}); "
                                "only regular files and directories are unpacked",
                                fix="the ModelKit was not made by kit or kitaudit: do not "
                                    "trust it")
                        dest = staging / rel
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(member)
                        assert src is not None
                        with open(dest, "wb") as outf:
                            while chunk := src.read(CHUNK):
                                outf.write(chunk)
                        os.chmod(dest, (member.mode & 0o777) | stat.S_IRUSR | stat.S_IWUSR)
                        out.append((rel, False))
            while raw.read(CHUNK):  # whatever follows the archive still counts
                pass
            reader.drain()
        except _bad_archive_errors() as err:
            # Corrupt bytes usually show up as a bad archive first: say which it is.
            reader.drain()
            _check_blob_digest(reader, digest)
            raise UnsafeArchive(f"layer {digest[:19]} is not a valid archive: {err}") from None
    _check_blob_digest(reader, digest)
    if diff_id and layer.compression != "none" and raw.digest != diff_id:
        raise DigestMismatch(f"layer {digest} uncompresses to {raw.digest}, but the config "
                             f"says {diff_id}")
    return out


def _place(staging: Path, target: Path, items: list[tuple[str, bool]], *, overwrite: bool,
           ignore_existing: bool, result: UnpackResult) -> None:
    """Move verified files from ``staging`` to ``target``; check everything first."""
    moves: list[tuple[Path, Path, str]] = []
    for rel, is_dir in items:
        dest = target / rel
        if not _inside(target, dest.parent if not is_dir else dest):
            raise UnsafeArchive(f"{rel} would be written outside {target} (through a link)")
        if is_dir:
            if dest.exists() and not dest.is_dir():
                raise KitauditError(f"{dest} exists and is not a directory")
            continue
        if os.path.lexists(dest):
            if os.path.islink(dest) or dest.is_dir():
                raise UnsafeArchive(f"{dest} exists and is a link or directory; not replaced")
            if ignore_existing:
                result.skipped.append(rel)
                continue
            if not overwrite:
                raise KitauditError(f"{dest} already exists",
                                    fix="use -o to overwrite or -i to keep existing files")
        moves.append((staging / rel, dest, rel))
    for rel, is_dir in items:
        if is_dir:
            (target / rel).mkdir(parents=True, exist_ok=True)
    for src, dest, rel in moves:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        result.files.append(rel)


def unpack(store: Any, ref: str, target: str | Path, *, filters: Iterable[str] | Any = (),
           overwrite: bool = False, ignore_existing: bool = False,
           kit: ModelKit | None = None) -> UnpackResult:
    """Unpack ``ref`` from ``store`` into ``target`` (created if missing).

    ``filters`` are kit's ``--filter`` strings (or a parsed FilterSet). A ModelKit whose
    model is a reference to a base ModelKit gets the base model's layers too.
    """
    from kitaudit import filters as flt

    fset = filters if hasattr(filters, "matches") else flt.parse_filters(list(filters))
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    kit = kit or load_from_store(store, ref)
    result = UnpackResult(str(target))
    if fset.wants_kitfile():
        dest = target / "Kitfile"
        if os.path.lexists(dest) and not overwrite and not ignore_existing:
            raise KitauditError(f"{dest} already exists",
                                fix="use -o to overwrite or -i to keep existing files")
        if not os.path.lexists(dest) or overwrite:
            if os.path.islink(dest):
                raise UnsafeArchive(f"{dest} is a link; not replaced")
            from kitaudit.store import atomic_write

            atomic_write(dest, kit.kitfile.to_yaml().encode())
            result.kitfile = True
    _unpack_layers(store, kit, target, fset, overwrite, ignore_existing, result, depth=0)
    return result


def _unpack_layers(store: Any, kit: ModelKit, target: Path, fset: Any, overwrite: bool,
                   ignore_existing: bool, result: UnpackResult, depth: int) -> None:
    from kitaudit import kitfile as kf
    from kitaudit import reference

    model = kit.kitfile.model
    if model is not None and kf.is_modelkit_reference(model.path or "") and \
            fset.matches("model", model):
        if depth >= 10:
            raise KitauditError("reached maximum number of model references while unpacking")
        name = str(reference.parse_for_command(model.path))
        try:
            parent = load_from_store(store, name)
        except NotFound:
            raise NotFound(f"base model {model.path} is not in the local store",
                           fix=f"kitaudit pull {model.path}") from None
        base_filter = _ModelOnly()
        _unpack_layers(store, parent, target, base_filter, overwrite, ignore_existing, result,
                       depth + 1)
    selected = [layer for layer in kit.layers() if fset.matches(layer.kind, layer.entry)]
    if not selected:
        return
    staging = Path(tempfile.mkdtemp(prefix=".kitaudit-unpack-", dir=target))
    try:
        for layer in selected:
            items = _extract_layer(store, layer, staging)
            _place(staging, target, items, overwrite=overwrite,
                   ignore_existing=ignore_existing, result=result)
            result.layers.append(layer.descriptor["digest"])
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)


class _ModelOnly:
    """The base model's model and part layers (what ``model.path: ref`` stands for)."""

    def matches(self, kind: str, entry: Any) -> bool:
        return kind in ("model", "modelpart")

    def wants_kitfile(self) -> bool:
        return False
