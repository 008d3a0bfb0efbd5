"""Building ModelKit layers the way kit builds them, in one pass over each file.

A layer is a tar archive (or, with ``raw`` format, one file's bytes), optionally gzip or
zstd compressed. Tar entries are context-relative with forward slashes; the ancestors of
the layer path come first as directory entries, then the walk in lexical order. Headers
are normalised (mtime 0, uid 1000, gid 0, empty user and group names, permission bits
kept) and the archive ends with two zero blocks, as Go's ``archive/tar`` writes it. Same
inputs give the same bytes on every run and machine.

Each file is read exactly once: its bytes go to the per-file hasher (for the ML-BOM),
the uncompressed-stream hasher (diffId), the compressor and the store writer, which
hashes the stored bytes (digest). Memory stays at a few chunk buffers.
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import struct
import tarfile
import threading
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kitaudit import mediatypes as mt
from kitaudit.digest import CHUNK
from kitaudit.errors import PackError, UsageError

COMPRESSIONS = ("none", "gzip", "gzip-fastest", "zstd")
LAYER_FORMATS = ("tar", "raw")
TAR_UID = 1000
TAR_GID = 0
ZSTD_LEVEL = 3


class IgnoreLike(Protocol):
    def ignored(self, relpath: str, is_dir: bool) -> bool: ...


@dataclass
class FileFact:
    path: str      # context-relative, forward slashes
    sha256: str    # hex
    size: int


@dataclass
class LayerResult:
    descriptor: dict[str, Any]
    diff_id: str
    files: list[FileFact] = field(default_factory=list)


class _Sink(Protocol):
    def write(self, data: bytes | memoryview) -> int: ...


# ---------------------------------------------------------------------- compression
class _Compressor:
    """Feeds compressed bytes to ``out`` and hashes the uncompressed stream (diffId).

    Compression runs in a worker thread fed through a small bounded queue: the calling
    thread reads files and hashes the uncompressed stream while the worker compresses,
    hashes and writes the stored bytes, so a layer uses two cores. The compressor itself
    is single-threaded (zstd ``threads=0``): its output does not depend on the machine,
    and python-zstandard's own worker threads did not help here (see the pack
    benchmark). Memory stays at a few queued chunks.
    """

    QUEUE_CHUNKS = 8

    def __init__(self, out: _Sink, compression: str) -> None:
        self.out = out
        self.compression = compression
        self.raw_hash = hashlib.sha256() if compression != "none" else None
        self.raw_size = 0
        self._crc = 0
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if compression in ("gzip", "gzip-fastest"):
            level = 1 if compression == "gzip-fastest" else 6
            self._z: Any = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8)
            # gzip header as Go writes it: no name, mtime 0, XFL 4 for fastest, OS unknown.
            xfl = 4 if level == 1 else 0
            out.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + bytes([xfl, 255]))
        elif compression == "zstd":
            import zstandard

            cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0,
                                            write_checksum=False, write_content_size=False)
            self._z = cctx.compressobj()
        elif compression != "none":
            raise UsageError(f"unknown compression {compression!r}",
                             fix="use one of: " + ", ".join(COMPRESSIONS))
        if compression != "none":
            self._queue: queue.Queue[bytes | None] = queue.Queue(self.QUEUE_CHUNKS)
            self._thread = threading.Thread(target=self._work, name="kitaudit-compress",
                                            daemon=True)
            self._thread.start()

    def _work(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                chunk = self._z.compress(item)
                if chunk:
                    self.out.write(chunk)
        except BaseException as err:  # handed to the producer in write()/close()
            self._error = err
            while self._queue.get() is not None:  # keep the producer from blocking
                pass

    def write(self, data: bytes | memoryview) -> int:
        self.raw_size += len(data)
        if self.raw_hash is None:
            self.out.write(data)
            return len(data)
        if self._error is not None:
            raise self._error
        self.raw_hash.update(data)
        if self.compression != "zstd":
            self._crc = zlib.crc32(data, self._crc)
        self._queue.put(bytes(data))  # a copy: the caller reuses its buffer
        return len(data)

    def _stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def abort(self) -> None:
        """Stop the worker without finishing the stream (the layer is discarded)."""
        self._stop()

    def close(self) -> None:
        if self.raw_hash is None:
            return
        self._stop()
        if self._error is not None:
            raise self._error
        self.out.write(self._z.flush())
        if self.compression != "zstd":
            self.out.write(struct.pack("<II", self._crc & 0xFFFFFFFF,
                                       self.raw_size & 0xFFFFFFFF))


# ---------------------------------------------------------------------- walking
def _check_kind(full: Path, rel: str) -> os.stat_result:
    st = os.lstat(full)
    if stat.S_ISLNK(st.st_mode):
        raise PackError(f"{rel} is a symbolic link; ModelKits hold only regular files and "
                        "directories", fix=f"replace {rel} with the file it points to, or "
                        "add it to .kitignore")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise PackError(f"{rel} is not a regular file or directory",
                        fix=f"remove {rel} or add it to .kitignore")
    return st


def walk_layer(context: Path, path: str, *, ignore: IgnoreLike | None,
               exclude: set[str]) -> Iterator[tuple[str, Path, os.stat_result]]:
    """Yield ``(relpath, fullpath, stat)`` for the entries of the layer for ``path``.

    ``path`` is a cleaned context-relative path (``.`` for the context itself).
    ``exclude`` holds the paths of other layers nested inside this one.
    """
    context = context.resolve()
    if path != ".":
        parts = path.split("/")
        for i in range(1, len(parts)):
            anc = "/".join(parts[:i])
            full = context / anc
            st = _check_kind(full, anc)
            if not stat.S_ISDIR(st.st_mode):
                raise PackError(f"{anc} is not a directory (needed for {path})")
            yield anc, full, st
    full = context / path if path != "." else context
    if not os.path.lexists(full):
        raise PackError(f"path {path} does not exist in {context}",
                        fix="fix the path in the Kitfile or create it")
    st = _check_kind(full, path)
    if stat.S_ISREG(st.st_mode):
        yield path, full, st
        return
    if path != ".":
        yield path, full, st
    yield from _walk_dir(full, "" if path == "." else path, ignore, exclude, top=path == ".")


def _walk_dir(directory: Path, rel: str, ignore: IgnoreLike | None, exclude: set[str],
              top: bool) -> Iterator[tuple[str, Path, os.stat_result]]:
    try:
        names = sorted(os.listdir(directory))
    except OSError as err:
        raise PackError(f"cannot read directory {rel or '.'}: {err.strerror}") from None
    for name in names:
        child_rel = f"{rel}/{name}" if rel else name
        if top and name in ("Kitfile", "kitfile", ".kitfile", ".kitignore"):
            continue
        if child_rel in exclude:
            continue
        full = directory / name
        st = _check_kind(full, child_rel)
        is_dir = stat.S_ISDIR(st.st_mode)
        if ignore is not None and ignore.ignored(child_rel, is_dir):
            continue
        yield child_rel, full, st
        if is_dir:
            yield from _walk_dir(full, child_rel, ignore, exclude, top=False)


# ---------------------------------------------------------------------- tar
def _tar_header(rel: str, st: os.stat_result, is_dir: bool) -> bytes:
    info = tarfile.TarInfo(rel)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = TAR_UID, TAR_GID
    info.uname = info.gname = ""
    info.mtime = 0
    if is_dir:
        info.type = tarfile.DIRTYPE
        info.size = 0
    else:
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


_HASHER: ThreadPoolExecutor | None = None


def _hasher() -> ThreadPoolExecutor:
    """One worker thread that hashes a file's chunks while the main thread writes them
    (hashlib releases the GIL on large buffers, so the two run on two cores)."""
    global _HASHER
    if _HASHER is None:
        _HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kitaudit-hash")
    return _HASHER


def _copy_file(full: Path, rel: str, expected: int, sink: _Sink,
               file_hash: Any | None, buf: bytearray) -> int:
    view = memoryview(buf)
    total = 0
    pool = _hasher() if file_hash is not None and expected >= 4 * CHUNK else None
    with open(full, "rb") as fh:
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            chunk = view[:n]
            if pool is not None:
                pending = pool.submit(file_hash.update, chunk)  # type: ignore[union-attr]
                sink.write(chunk)
                pending.result()  # the buffer is reused by the next read
            else:
                if file_hash is not None:
                    file_hash.update(chunk)
                sink.write(chunk)
            total += n
    if total != expected:
        raise PackError(f"{rel} changed size while it was being packed",
                        fix="pack again when nothing is writing to the directory")
    return total


def build_layer(store: Any, context: Path, path: str, kind: str, *, compression: str = "none",
                layer_format: str = "tar", ignore: IgnoreLike | None = None,
                exclude: set[str] | None = None, hash_files: bool = False,
                media_type: str | None = None,
                annotations: dict[str, str] | None = None) -> LayerResult:
    """Build one layer into ``store`` (a :class:`kitaudit.store.Store`) and describe it.

    ``kind`` is the KitOps layer base (model, modelpart, code, dataset, docs); ``raw``
    format applies to single files (directories are always tar). ``media_type``
    overrides the KitOps media type (ModelPack). The blob is committed to the store only
    when complete; an existing blob with the same digest is kept as it is.
    """
    if compression not in COMPRESSIONS:
        raise UsageError(f"unknown compression {compression!r}",
                         fix="use one of: " + ", ".join(COMPRESSIONS))
    if layer_format not in LAYER_FORMATS:
        raise UsageError(f"unknown layer format {layer_format!r}", fix="use tar or raw")
    context = Path(context)
    full = context / path if path != "." else context
    is_file = os.path.isfile(full) and not os.path.islink(full)
    fmt = "raw" if layer_format == "raw" and is_file else "tar"
    if media_type is None:
        media_type = mt.kit_layer_media_type(kind, fmt, compression)
    files: list[FileFact] = []
    raw_file: int | None = None
    buf = bytearray(CHUNK)
    writer = store.blob_writer()
    comp: _Compressor | None = None
    try:
        comp = _Compressor(writer, compression)
        if fmt == "raw":
            st = _check_kind(full, path)
            _copy_file(full, path, st.st_size, comp, None, buf)
            raw_file = st.st_size
        else:
            for rel, entry_path, st in walk_layer(context, path, ignore=ignore,
                                                  exclude=exclude or set()):
                is_dir = stat.S_ISDIR(st.st_mode)
                comp.write(_tar_header(rel, st, is_dir))
                if is_dir:
                    continue
                h = hashlib.sha256() if hash_files else None
                size = _copy_file(entry_path, rel, st.st_size, comp, h, buf)
                if size % 512:
                    comp.write(bytes(512 - size % 512))
                if h is not None:
                    files.append(FileFact(rel, h.hexdigest(), size))
            comp.write(bytes(1024))  # end of archive: two zero blocks, no record padding
        comp.close()
        digest = writer.commit()
    except BaseException:
        if comp is not None:
            comp.abort()
        writer.abort()
        raise
    diff_id = ("sha256:" + comp.raw_hash.hexdigest()) if comp.raw_hash is not None else digest
    if raw_file is not None and hash_files:
        # A raw layer's uncompressed bytes are the file: its hash is the diffId.
        files.append(FileFact(path, diff_id.split(":", 1)[1], raw_file))
    descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest,
                                  "size": writer.size}
    if annotations:
        descriptor["annotations"] = dict(annotations)
    return LayerResult(descriptor=descriptor, diff_id=diff_id, files=files)
