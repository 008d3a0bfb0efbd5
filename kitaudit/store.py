"""The local store: one OCI image layout shared by every repository.

Layout (see ``docs/architecture.md``)::

    <root>/oci-layout, index.json, blobs/sha256/<hex>, ingest/, .lock, .gc-lock

* Blobs are written to a temporary file in ``ingest/`` (same filesystem), hashed while
  written, fsynced and renamed into ``blobs/`` only when complete and, if a digest was
  announced, only when it matches. A crash leaves at most a temporary file in
  ``ingest/``, never a partial blob under its digest.
* ``index.json`` is changed under an exclusive ``flock`` on ``.lock``: re-read, modify,
  write to a temporary file, fsync, rename. Two processes never lose each other's tags.
* Writers that put blobs before a manifest refers to them hold a shared lock on
  ``.gc-lock`` (:meth:`Store.writing`); garbage collection needs it exclusively, so it
  never deletes a blob that a pack in progress is about to reference.
* A tag is an index entry with annotation ``org.opencontainers.image.ref.name`` set to
  the full reference ``registry/repository:tag``; skopeo and oras read it by that name.
* A referrer is an index entry without a name whose annotation ``vnd.kitaudit.subject``
  names its subject's digest, so referrers are listed without reading every manifest.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from kitaudit import mediatypes as mt
from kitaudit.digest import CHUNK, check_digest, is_digest
from kitaudit.errors import DigestMismatch, NotFound, StoreError

ANN_SUBJECT = "vnd.kitaudit.subject"
INGEST_MAX_AGE = 24 * 3600  # partial downloads older than this are removed by gc


def default_home() -> Path:
    """``$KITAUDIT_HOME``, else ``$XDG_DATA_HOME/kitaudit``, else ``~/.local/share/kitaudit``."""
    if env := os.environ.get("KITAUDIT_HOME"):
        return Path(env)
    xdg = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(xdg) / "kitaudit"


def default_store() -> Store:
    return Store(default_home() / "store")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


class BlobWriter:
    """Streams one blob into the store; see :meth:`Store.blob_writer`."""

    def __init__(self, store: Store, expected_digest: str | None, expected_size: int | None,
                 resume: bool) -> None:
        self._store = store
        self.expected_digest = check_digest(expected_digest) if expected_digest else None
        self.expected_size = expected_size
        self._resume = bool(resume and expected_digest)
        self._hash = hashlib.sha256()
        self.offset = 0  # bytes already present (resume)
        self.size = 0
        self.digest: str | None = None
        self._done = False
        self._lock_fd: int | None = None
        ingest = store.ingest_dir
        if self._resume:
            assert self.expected_digest is not None
            self.path = ingest / (self.expected_digest.split(":", 1)[1] + ".partial")
            self._fh = open(self.path, "a+b")
            try:
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                # Another process is fetching the same blob: use a private file instead.
                self._fh.close()
                self._resume = False
            else:
                self._fh.seek(0)
                while chunk := self._fh.read(CHUNK):
                    self._hash.update(chunk)
                    self.offset += len(chunk)
                self.size = self.offset
                self._fh.seek(0, os.SEEK_END)
                return
        fd, tmp = tempfile.mkstemp(dir=ingest, prefix="blob-", suffix=".tmp")
        # Locked while we write: gc removes only temporary files nobody holds (left
        # behind by a process that was killed).
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.path = Path(tmp)
        self._fh = os.fdopen(fd, "wb")

    def write(self, data: bytes | memoryview) -> int:
        self._hash.update(data)
        self._fh.write(data)
        self.size += len(data)
        return len(data)

    def truncate(self) -> None:
        """Drop what was written so far (a server ignored our Range request)."""
        self._fh.seek(0)
        self._fh.truncate()
        self._hash = hashlib.sha256()
        self.size = self.offset = 0

    def commit(self) -> str:
        """Finish the blob: verify, fsync, rename into place. Returns the digest."""
        if self._done:
            assert self.digest is not None
            return self.digest
        self._fh.flush()
        digest = "sha256:" + self._hash.hexdigest()
        problem = None
        if self.expected_digest and digest != self.expected_digest:
            problem = f"content hashes to {digest}, expected {self.expected_digest}"
        elif self.expected_size is not None and self.size != self.expected_size:
            problem = f"got {self.size} bytes, expected {self.expected_size}"
        if problem:
            self._fh.close()
            self._discard()
            raise DigestMismatch(f"blob rejected: {problem}",
                                 fix="nothing was stored; fetch or build it again")
        target = self._store.blob_path(digest)
        if target.is_file() and target.stat().st_size == self.size:
            # Already stored (same digest): keep the existing blob, drop ours.
            self._fh.close()
            self._discard()
            self.digest = digest
            return digest
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self.path, target)
        _fsync_dir(target.parent)
        self._done = True
        self.digest = digest
        return digest

    def _discard(self) -> None:
        self._done = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def abort(self) -> None:
        """Stop without storing. A resumable partial file is kept for a later attempt."""
        if self._done:
            return
        with contextlib.suppress(ValueError, OSError):
            self._fh.flush()
        self._fh.close()
        if self._resume:
            self._done = True
        else:
            self._discard()

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class Store:
    """A local OCI image layout with tags, referrers, atomic writes and GC."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.ingest_dir = self.root / "ingest"
        self.index_path = self.root / "index.json"
        try:
            self.blobs_dir.mkdir(parents=True, exist_ok=True)
            self.ingest_dir.mkdir(parents=True, exist_ok=True)
            layout = self.root / "oci-layout"
            if not layout.exists():
                atomic_write(layout, b'{"imageLayoutVersion":"1.0.0"}')
            if not self.index_path.exists():
                with self._index_lock():
                    if not self.index_path.exists():
                        self._write_index({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                           "manifests": []})
        except OSError as err:
            raise StoreError(f"cannot use store at {self.root}: {err.strerror}",
                             fix="set KITAUDIT_HOME to a writable directory") from None

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ------------------------------------------------------------------ locking
    @contextlib.contextmanager
    def _flock(self, name: str, mode: int) -> Iterator[bool]:
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, mode)
                locked = True
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                locked = False
            yield locked
        finally:
            os.close(fd)  # closing releases the lock

    def _index_lock(self):
        return self._flock(".lock", fcntl.LOCK_EX)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold while writing blobs that a manifest will reference later (blocks GC)."""
        with self._flock(".gc-lock", fcntl.LOCK_SH):
            yield

    # ------------------------------------------------------------------ blobs
    def blob_path(self, digest: str) -> Path:
        check_digest(digest)
        return self.blobs_dir / digest.split(":", 1)[1]

    def has_blob(self, digest: str) -> bool:
        return is_digest(digest) and self.blob_path(digest).is_file()

    def blob_size(self, digest: str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the local store") from None

    def open_blob(self, digest: str) -> BinaryIO:
        """Open a blob for reading (the caller verifies while reading if it must)."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is not in the local store",
                           fix="pull the ModelKit again") from None

    def read_blob(self, digest: str, max_size: int = 64 << 20) -> bytes:
        """Read a small blob whole and verify its digest."""
        with self.open_blob(digest) as fh:
            data = fh.read(max_size + 1)
        if len(data) > max_size:
            raise StoreError(f"blob {digest} is larger than {max_size} bytes; stream it instead")
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise DigestMismatch(f"stored blob {digest} is corrupt (hashes to {got})",
                                 fix="remove the ModelKit and pull or pack it again")
        return data

    def blob_writer(self, expected_digest: str | None = None, expected_size: int | None = None,
                    resume: bool = False) -> BlobWriter:
        """A writer that hashes while writing and renames into place on commit.

        With ``expected_digest`` the content must match it (else :class:`DigestMismatch`
        and nothing is kept). With ``resume=True`` a partial download of the same digest
        is continued; ``writer.offset`` says how many bytes are already there.
        """
        return BlobWriter(self, expected_digest, expected_size, resume)

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has_blob(digest):
            with self.blob_writer(digest, len(data)) as w:
                w.write(data)
        return digest

    # ------------------------------------------------------------------ index
    def _read_index(self) -> dict[str, Any]:
        try:
            index = json.loads(self.index_path.read_bytes())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
        except (ValueError, UnicodeDecodeError) as err:
            raise StoreError(f"{self.index_path} is not valid JSON: {err}",
                             fix="restore it from a backup or remove the store") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list):
            raise StoreError(f"{self.index_path} is not an OCI image index")
        index.setdefault("manifests", [])
        return index

    def _write_index(self, index: dict[str, Any]) -> None:
        atomic_write(self.index_path, json.dumps(index, indent=2).encode() + b"\n")

    @contextlib.contextmanager
    def _update_index(self) -> Iterator[dict[str, Any]]:
        with self._index_lock():
            index = self._read_index()
            yield index
            self._write_index(index)

    def entries(self) -> list[dict[str, Any]]:
        """All index entries (descriptors), tags and kept manifests alike."""
        return list(self._read_index()["manifests"])

    def _descriptor_for(self, digest: str) -> dict[str, Any]:
        for entry in self._read_index()["manifests"]:
            if entry.get("digest") == digest:
                return _plain_descriptor(entry)
        if not self.has_blob(digest):
            raise NotFound(f"{digest} is not in the local store",
                           fix="check the digest with `kitaudit list`, or pull it")
        raw = self.read_blob(digest)
        return _manifest_descriptor(raw, digest)

    # ------------------------------------------------------------------ manifests and tags
    def put_manifest(self, data: bytes, *, tags: Iterable[str] = (), keep: bool = False) -> str:
        """Store a manifest (or index) blob and record it under each full-reference tag.

        ``keep=True`` records it untagged (kept by GC) when no tag is given.
        """
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        desc = _manifest_descriptor(data, digest)
        self.put_blob(data)
        tags = list(tags)
        with self._update_index() as index:
            for tag in tags:
                _set_tag(index, tag, desc)
            if keep and not tags and not any(e.get("digest") == digest
                                             for e in index["manifests"]):
                index["manifests"].append(desc)
        return digest

    def tag(self, refname: str, digest: str) -> None:
        """Point ``refname`` (``registry/repository:tag``) at a stored manifest."""
        desc = self._descriptor_for(check_digest(digest))
        with self._update_index() as index:
            _set_tag(index, refname, desc)

    def untag(self, refname: str) -> str:
        with self._update_index() as index:
            for i, entry in enumerate(index["manifests"]):
                if _ref_name(entry) == refname:
                    del index["manifests"][i]
                    return entry["digest"]
        raise NotFound(f"{refname} is not in the local store", fix="see `kitaudit list`")

    def resolve(self, ref: str) -> dict[str, Any]:
        """Descriptor for ``registry/repo:tag``, ``registry/repo@sha256:…`` or ``sha256:…``."""
        if "@" in ref:
            ref = ref.rsplit("@", 1)[1]
        if ref.startswith("sha256:"):
            return self._descriptor_for(check_digest(ref))
        for entry in self._read_index()["manifests"]:
            if _ref_name(entry) == ref:
                return _plain_descriptor(entry)
        raise NotFound(f"{ref} is not in the local store",
                       fix="see `kitaudit list`, or `kitaudit pull` it first")

    def get_manifest(self, ref_or_digest: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
        """(descriptor, parsed manifest, raw bytes) for a reference or digest."""
        desc = self.resolve(ref_or_digest)
        raw = self.read_blob(desc["digest"])
        try:
            manifest = json.loads(raw)
        except ValueError:
            raise StoreError(f"{desc['digest']} is not a JSON manifest") from None
        if not isinstance(manifest, dict):
            raise StoreError(f"{desc['digest']} is not a JSON manifest")
        return desc, manifest, raw

    def list_tags(self, repository: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """``(refname, descriptor)`` for every tag, optionally of one ``registry/repo``."""
        out = []
        for entry in self._read_index()["manifests"]:
            name = _ref_name(entry)
            if not name:
                continue
            if repository and name.rsplit(":", 1)[0] != repository:
                continue
            out.append((name, _plain_descriptor(entry)))
        out.sort(key=lambda item: item[0])
        return out

    # ------------------------------------------------------------------ referrers
    def add_referrer(self, manifest_bytes: bytes) -> str:
        """Store a referrer manifest (one with ``subject``) beside its subject."""
        try:
            manifest = json.loads(manifest_bytes)
            subject = manifest["subject"]["digest"]
        except (ValueError, KeyError, TypeError):
            raise StoreError("a referrer manifest must be JSON with a subject") from None
        check_digest(subject)
        for blob in [manifest.get("config", {}), *manifest.get("layers", [])]:
            if blob.get("digest") and not self.has_blob(blob["digest"]):
                raise StoreError(f"referrer blob {blob['digest']} is not in the store; "
                                 "store it before the manifest")
        digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        self.put_blob(manifest_bytes)
        desc = _manifest_descriptor(manifest_bytes, digest)
        desc["annotations"] = {**(manifest.get("annotations") or {}), ANN_SUBJECT: subject}
        with self._update_index() as index:
            if not any(e.get("digest") == digest and _subject(e) == subject
                       for e in index["manifests"]):
                index["manifests"].append(desc)
        return digest

    def referrers(self, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        """Descriptors of the referrers of ``digest`` as the referrers API lists them."""
        out = []
        for entry in self._read_index()["manifests"]:
            if _subject(entry) != digest:
                continue
            if artifact_type and entry.get("artifactType") != artifact_type:
                continue
            desc = dict(entry)
            annotations = {k: v for k, v in (entry.get("annotations") or {}).items()
                           if k != ANN_SUBJECT}
            desc.pop("annotations", None)
            if annotations:
                desc["annotations"] = annotations
            out.append(desc)
        return out

    # ------------------------------------------------------------------ removal and GC
    def remove(self, ref: str, *, force: bool = False) -> list[str]:
        """Remove a ModelKit the way ``kit remove`` does. Returns the removed refs/digests.

        By digest: the manifest and every tag pointing at it. By tag: the tag; the
        manifest goes too unless other tags still point at it (then ``force`` removes
        those tags as well). Referrers of a removed manifest are removed with it.
        """
        removed: list[str] = []
        with self._update_index() as index:
            manifests = index["manifests"]
            if "@" in ref or ref.startswith("sha256:"):
                digest = check_digest(ref.rsplit("@", 1)[-1])
                if not any(e.get("digest") == digest for e in manifests):
                    raise NotFound(f"{ref} is not in the local store", fix="see `kitaudit list`")
            else:
                match = [e for e in manifests if _ref_name(e) == ref]
                if not match:
                    raise NotFound(f"{ref} is not in the local store", fix="see `kitaudit list`")
                digest = match[0]["digest"]
                others = [e for e in manifests
                          if e.get("digest") == digest and _ref_name(e) and _ref_name(e) != ref]
                if others and not force:
                    manifests.remove(match[0])
                    return [ref]
            removed += _drop_manifest(manifests, digest)
        self.gc()
        return removed

    def remove_all(self, *, force: bool = False) -> list[str]:
        """Remove untagged ModelKits (``--all``); with ``force`` every ModelKit."""
        removed: list[str] = []
        with self._update_index() as index:
            manifests = index["manifests"]
            tagged = {e["digest"] for e in manifests if _ref_name(e)}
            for entry in list(manifests):
                if entry not in manifests or _subject(entry):
                    continue
                if force or entry["digest"] not in tagged:
                    removed += _drop_manifest(manifests, entry["digest"])
            # referrers whose subject is gone
            present = {e["digest"] for e in manifests}
            for entry in list(manifests):
                if _subject(entry) and _subject(entry) not in present and entry in manifests:
                    removed += _drop_manifest(manifests, entry["digest"])
        self.gc()
        return removed

    def gc(self) -> int | None:
        """Delete blobs no index entry reaches. Returns bytes freed, or None when skipped
        because another process is writing (the blobs are collected next time)."""
        with self._flock(".gc-lock", fcntl.LOCK_EX | fcntl.LOCK_NB) as locked:
            if not locked:
                return None
            with self._index_lock():
                reachable = self._reachable()
                freed = 0
                for path in self.blobs_dir.iterdir():
                    if path.name not in reachable:
                        with contextlib.suppress(FileNotFoundError):
                            freed += path.stat().st_size
                            path.unlink()
                now = time.time()
                for path in self.ingest_dir.iterdir():
                    with contextlib.suppress(FileNotFoundError):
                        if path.name.startswith("blob-") and _unlocked(path):
                            path.unlink()  # a killed writer's leftover
                        elif now - path.stat().st_mtime > INGEST_MAX_AGE:
                            path.unlink()  # a partial download nobody resumed
            return freed

    def _reachable(self) -> set[str]:
        """Hex digests of every blob an index entry reaches. Only manifests and indexes
        (index entries, an index's ``manifests``) are read; configs and layers are leaves,
        so GC does not read every small layer in the store."""
        seen: set[str] = set()
        todo = [(e["digest"], True) for e in self._read_index()["manifests"]
                if e.get("digest")]
        while todo:
            digest, is_manifest = todo.pop()
            hexpart = digest.split(":", 1)[-1]
            if hexpart in seen:
                continue
            seen.add(hexpart)
            path = self.blobs_dir / hexpart
            if not is_manifest or not path.is_file() or path.stat().st_size > (4 << 20):
                continue
            try:
                doc = json.loads(path.read_bytes())
            except (ValueError, UnicodeDecodeError):
                continue
            if not isinstance(doc, dict):
                continue
            children = [(c, False) for c in [doc.get("config"), *(doc.get("layers") or []),
                                             *(doc.get("blobs") or [])]]
            children += [(c, True) for c in doc.get("manifests") or []]
            for child, child_is_manifest in children:
                if isinstance(child, dict) and isinstance(child.get("digest"), str):
                    todo.append((child["digest"], child_is_manifest))
        return seen


# ---------------------------------------------------------------------- helpers
def _unlocked(path: Path) -> bool:
    """True when no process holds a lock on ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _ref_name(entry: dict[str, Any]) -> str | None:
    return (entry.get("annotations") or {}).get(mt.ANN_REF_NAME)


def _subject(entry: dict[str, Any]) -> str | None:
    return (entry.get("annotations") or {}).get(ANN_SUBJECT)


def _plain_descriptor(entry: dict[str, Any]) -> dict[str, Any]:
    desc = {k: entry[k] for k in ("mediaType", "digest", "size", "artifactType") if k in entry}
    return desc


def _manifest_descriptor(raw: bytes, digest: str) -> dict[str, Any]:
    media_type = mt.OCI_MANIFEST
    artifact_type = None
    try:
        doc = json.loads(raw)
        if isinstance(doc, dict):
            media_type = doc.get("mediaType") or (
                mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST)
            artifact_type = doc.get("artifactType") or None
    except ValueError:
        pass
    desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(raw)}
    if artifact_type:
        desc["artifactType"] = artifact_type
    return desc


def _set_tag(index: dict[str, Any], refname: str, desc: dict[str, Any]) -> None:
    if not refname or ":" not in refname.rsplit("/", 1)[-1]:
        raise StoreError(f"not a full tag reference: {refname!r}")
    manifests = index["manifests"]
    manifests[:] = [e for e in manifests if _ref_name(e) != refname]
    entry = _plain_descriptor(desc)
    entry["annotations"] = {mt.ANN_REF_NAME: refname}
    manifests.append(entry)


def _drop_manifest(manifests: list[dict[str, Any]], digest: str) -> list[str]:
    """Remove every entry of ``digest`` and, recursively, its referrers."""
    removed = []
    for entry in [e for e in manifests if e.get("digest") == digest]:
        manifests.remove(entry)
        removed.append(_ref_name(entry) or digest)
    for entry in [e for e in manifests if _subject(e) == digest]:
        if entry in manifests:
            removed += _drop_manifest(manifests, entry["digest"])
    return removed
