"""Push and pull ModelKits between the local store and a registry, plus the remote
operations behind ``tag``, ``inspect -r``, ``info -r``, ``remove -r`` and ``list REPO``.

* push: HEAD the manifest by digest (present → only the tag is PUT, no blob touched);
  otherwise HEAD each blob, skip what the registry has, mount across repositories of
  the same registry when the source repository is known there, upload the rest
  concurrently, then PUT the manifest under each tag. Referrers stored locally follow.
* pull: GET the manifest, the config and only the layers the filters select; layers go
  concurrently into the store (streamed, hashed, resumed with Range, renamed into place
  only when the digest matches). The manifest is recorded under its tag; ``-d DIR``
  unpacks what was fetched. Referrers (signatures, SBOMs) come along.

Every function takes the network options as keyword arguments (``plain_http``,
``tls_verify``, ``tls_cert``, ``cert``, ``key``, ``concurrency``, ``endpoints`` …, see
:class:`~kitaudit.registry.transport.NetOptions`) or a ready ``net=NetOptions(...)``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from kitaudit import mediatypes as mt
from kitaudit.digest import unique_by_digest
from kitaudit.errors import KitauditError, NotFound, RegistryError, UsageError
from kitaudit.registry.client import RegistryClient
from kitaudit.registry.transport import NetOptions

log = logging.getLogger("kitaudit.registry")

MAX_REFERRERS = 200


# ---------------------------------------------------------------------- helpers
def parse_ref(ref: Any) -> Any:
    """A ``Reference`` (``latest`` filled in) from text or a ``Reference``."""
    from kitaudit.reference import Reference, parse_for_command

    if isinstance(ref, Reference):
        return ref
    return parse_for_command(str(ref))


def parse_ref_tags(ref: Any) -> tuple[Any, list[str]]:
    from kitaudit.reference import DEFAULT_TAG, Reference, parse

    if isinstance(ref, Reference):
        return ref, []
    parsed, extra = parse(str(ref))
    if parsed.tag is None and parsed.digest is None:
        from dataclasses import replace

        parsed = replace(parsed, tag=DEFAULT_TAG)
    return parsed, extra


def to_net(net: dict[str, Any]) -> NetOptions:
    return NetOptions.from_kwargs(**net)


# earlier private names, imported by other modules
_net = to_net
_parse_ref = parse_ref
_parse_ref_tags = parse_ref_tags


def _local_name(ref: Any) -> str:
    """The store key: ``registry/repo:tag`` or ``registry/repo@digest``."""
    if ref.tag:
        return f"{ref.registry}/{ref.repository}:{ref.tag}"
    return f"{ref.registry}/{ref.repository}@{ref.digest}"


@contextlib.contextmanager
def open_client(registry: str, net: NetOptions) -> Iterator[RegistryClient]:
    client = RegistryClient(registry, net=net)
    try:
        yield client
    finally:
        client.close()


class Progress:
    """Per-blob and total progress: rich bars on a terminal (``fancy``), one line per
    finished blob (``plain``), or nothing (``none``; also when stderr is not a TTY and
    the mode is ``auto``)."""

    def __init__(self, mode: str = "auto", *, title: str = "") -> None:
        if mode == "auto":
            mode = "fancy" if sys.stderr.isatty() else "none"
        if mode not in ("none", "plain", "fancy"):
            raise UsageError(f"unknown progress mode {mode!r}",
                             fix="use --progress none, plain or fancy")
        self.mode = mode
        self.title = title
        self._lock = threading.Lock()
        self._rich: Any = None
        self._total_task: Any = None

    def __enter__(self) -> Progress:
        if self.mode == "fancy":
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                  DownloadColumn(), TransferSpeedColumn(),
                                  console=Console(stderr=True), transient=True)
            self._rich.__enter__()
            self._total_task = self._rich.add_task(self.title or "total", total=0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(None, None, None)

    def blob(self, label: str, size: int) -> Callable[[int], None]:
        """Register a blob; returns a callback taking byte increments."""
        if self._rich is None:
            return lambda n: None
        with self._lock:
            task = self._rich.add_task(label, total=size)
            total = self._rich.tasks[self._total_task].total or 0
            self._rich.update(self._total_task, total=total + size)

        def advance(n: int) -> None:
            self._rich.advance(task, n)
            self._rich.advance(self._total_task, n)

        return advance

    def done(self, label: str, size: int, note: str) -> None:
        if self.mode == "plain":
            with self._lock:
                print(f"{note}: {label} ({_human(size)})", file=sys.stderr, flush=True)


def _human(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


def _run_concurrently(jobs: list[Callable[[], None]], concurrency: int) -> None:
    """Run jobs on a thread pool; the first failure cancels what has not started and
    is raised once the running jobs end."""
    if not jobs:
        return
    if concurrency <= 1 or len(jobs) == 1:
        for job in jobs:
            job()
        return
    with ThreadPoolExecutor(max_workers=min(concurrency, len(jobs)),
                            thread_name_prefix="kitaudit-xfer") as pool:
        futures: list[Future[None]] = [pool.submit(job) for job in jobs]
        _done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in pending:
            fut.cancel()
        errors = [f.exception() for f in futures if f.done() and not f.cancelled()
                  and f.exception() is not None]
        if errors:
            wait([f for f in futures if not f.cancelled()])
            raise errors[0]  # type: ignore[misc]


# ---------------------------------------------------------------------- results
@dataclass
class BlobResult:
    digest: str
    size: int
    action: str  # uploaded, mounted, skipped, downloaded, present, filtered


@dataclass
class PushResult:
    reference: str
    digest: str
    tags: list[str]
    blobs: list[BlobResult] = field(default_factory=list)
    referrers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest, "tags": self.tags,
                "blobs": [b.__dict__ for b in self.blobs], "referrers": self.referrers,
                "seconds": round(self.seconds, 3)}


@dataclass
class PullResult:
    reference: str
    digest: str
    blobs: list[BlobResult] = field(default_factory=list)
    referrers: list[str] = field(default_factory=list)
    unpacked_to: str | None = None
    partial: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "digest": self.digest,
                "blobs": [b.__dict__ for b in self.blobs], "referrers": self.referrers,
                "unpacked_to": self.unpacked_to, "partial": self.partial,
                "seconds": round(self.seconds, 3)}


# ---------------------------------------------------------------------- push
def push(src: Any, dest: Any = None, *, store: Any = None, progress: str = "auto",
         referrers: bool = True, **net: Any) -> PushResult:
    """Push ``src`` (a local reference) to ``dest`` (default: the same reference).

    ``dest`` may list several tags (``repo:t1,t2``). Returns what was transferred.
    """
    from kitaudit.store import default_store

    started = time.monotonic()
    store = store or default_store()
    opts = to_net(net)
    src_ref = parse_ref(src)
    dest_ref, extra_tags = parse_ref_tags(dest if dest is not None else src)
    desc, manifest, raw = store.get_manifest(_local_name(src_ref))
    digest = desc["digest"]
    media_type = manifest.get("mediaType") or desc.get("mediaType") or mt.OCI_MANIFEST
    repo = dest_ref.repository
    tags = [t for t in [dest_ref.tag, *extra_tags] if t]
    result = PushResult(reference=str(dest_ref), digest=digest, tags=tags)
    with open_client(dest_ref.registry, opts) as client:
        present = client.head_manifest(repo, digest)
        if present is None:
            blobs = _manifest_blobs(manifest)
            mount_from = None
            if src_ref.registry == dest_ref.registry and src_ref.repository != repo:
                mount_from = src_ref.repository
            result.blobs = _push_blobs(client, store, repo, blobs, mount_from,
                                       opts.concurrency, progress)
        else:
            result.blobs = [BlobResult(d["digest"], int(d.get("size", 0)), "skipped")
                            for d in _manifest_blobs(manifest)]
        if not tags:
            client.put_manifest(repo, digest, raw, media_type)
        for tag in tags:
            client.put_manifest(repo, tag, raw, media_type)
        if referrers:
            result.referrers = _push_referrers(client, store, repo, digest)
    result.seconds = time.monotonic() - started
    return result


def _manifest_blobs(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    if "manifests" in manifest and "layers" not in manifest:
        raise UsageError("pushing an image index is not supported; push its ModelKits")
    out = []
    config = manifest.get("config")
    if isinstance(config, dict) and config.get("digest"):
        out.append(config)
    out.extend(d for d in manifest.get("layers") or [] if isinstance(d, dict))
    return unique_by_digest(out)


def _push_blobs(client: RegistryClient, store: Any, repo: str, blobs: list[dict[str, Any]],
                mount_from: str | None, concurrency: int, progress: str) -> list[BlobResult]:
    results: list[BlobResult] = []
    lock = threading.Lock()

    with Progress(progress, title=f"push {repo}") as prog:

        def job(desc: dict[str, Any]) -> Callable[[], None]:
            def run() -> None:
                digest, size = desc["digest"], int(desc.get("size", 0))
                label = f"{_short(digest)} {_kind_label(desc)}"
                have_remote = client.blob_size(repo, digest)
                if have_remote is not None:
                    action = "skipped"
                elif mount_from and client.mount_blob(repo, digest, mount_from):
                    action = "mounted"
                else:
                    if not store.has_blob(digest):
                        raise NotFound(f"blob {digest} is not in the local store (the "
                                       "ModelKit was pulled with filters)",
                                       fix="pull the ModelKit without --filter, then push")
                    path = store.blob_path(digest)
                    actual = path.stat().st_size
                    if size and actual != size:
                        raise KitauditError(f"local blob {digest} has {actual} bytes, the "
                                            f"manifest says {size}",
                                            fix="the store is damaged: pack or pull again")
                    client.upload_blob(repo, digest, actual, path,
                                       progress=prog.blob(label, actual))
                    action = "uploaded"
                prog.done(label, size, action)
                with lock:
                    results.append(BlobResult(digest, size, action))
            return run

        _run_concurrently([job(d) for d in blobs], concurrency)
    order = {d["digest"]: i for i, d in enumerate(blobs)}
    results.sort(key=lambda r: order[r.digest])
    return results


def _kind_label(desc: dict[str, Any]) -> str:
    mtype = desc.get("mediaType", "")
    if mtype in (mt.KIT_CONFIG, mt.MODELPACK_CONFIG):
        return "config"
    parsed = mt.parse_kit_layer_media_type(mtype)
    return parsed[0] if parsed else "blob"


def _push_referrers(client: RegistryClient, store: Any, repo: str, digest: str) -> list[str]:
    from kitaudit import referrers as refs

    pushed: list[str] = []
    for desc in store.referrers(digest)[:MAX_REFERRERS]:
        raw = store.read_blob(desc["digest"])
        refs.push_referrer_from_store(client, store, repo, raw)
        pushed.append(desc["digest"])
        # referrers of referrers (e.g. a signature on an SBOM)
        pushed += _push_referrers(client, store, repo, desc["digest"])
    return pushed


# ---------------------------------------------------------------------- pull
def pull(ref: Any, *, store: Any = None, filters: Any = None, progress: str = "auto",
         referrers: bool = True, unpack_dir: str | None = None, overwrite: bool = False,
         ignore_existing: bool = False, **net: Any) -> PullResult:
    """Pull ``ref`` into the store; with ``filters`` (a FilterSet or list of filter
    strings) only the manifest, the config and the selected layers are fetched.
    ``unpack_dir`` unpacks what was fetched."""
    from kitaudit import modelkit
    from kitaudit.filters import FilterSet, parse_filters
    from kitaudit.store import default_store

    started = time.monotonic()
    store = store or default_store()
    opts = to_net(net)
    if filters is None or isinstance(filters, FilterSet):
        fset = filters or FilterSet()
    else:
        fset = parse_filters(list(filters))
    pref = parse_ref(ref)
    repo = pref.repository
    with open_client(pref.registry, opts) as client:
        man = client.get_manifest(repo, pref.reference)
        manifest = man.data
        if "manifests" in manifest and "layers" not in manifest:
            raise KitauditError(f"{pref} is an image index, not a ModelKit",
                                fix="pull one of its manifests by digest")
        if not modelkit.is_modelkit(manifest):
            log.warning("%s does not look like a ModelKit (config %s)", pref,
                        (manifest.get("config") or {}).get("mediaType"))
        result = PullResult(reference=str(pref), digest=man.digest)
        with store.writing():
            config = manifest.get("config") or {}
            config_bytes = b"{}"
            if config.get("digest"):
                if store.has_blob(config["digest"]):
                    config_bytes = store.read_blob(config["digest"])
                    result.blobs.append(BlobResult(config["digest"], len(config_bytes),
                                                   "present"))
                else:
                    config_bytes = client.get_blob_bytes(repo, config["digest"])
                    store.put_blob(config_bytes)
                    result.blobs.append(BlobResult(config["digest"], len(config_bytes),
                                                   "downloaded"))
            selected, skipped = _select_layers(manifest, config_bytes, fset)
            result.partial = bool(skipped)
            result.blobs += [BlobResult(d["digest"], int(d.get("size", 0)), "filtered")
                             for d in skipped]
            result.blobs += _pull_blobs(client, store, repo, selected, opts.concurrency,
                                        progress)
            tags = [_local_name(pref)] if pref.tag else []
            store.put_manifest(man.raw, tags=tags, keep=not tags)
            if referrers:
                result.referrers = _pull_referrers(client, store, repo, man.digest)
    if unpack_dir is not None:
        from kitaudit.unpack import unpack

        target = _local_name(pref) if pref.tag else man.digest
        unpack(store, target, unpack_dir, filters=fset, overwrite=overwrite,
               ignore_existing=ignore_existing)
        result.unpacked_to = str(unpack_dir)
    result.seconds = time.monotonic() - started
    return result


def _select_layers(manifest: dict[str, Any], config_bytes: bytes,
                   fset: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split the manifest's layers into (selected, skipped) by the filters."""
    layers = [d for d in manifest.get("layers") or [] if isinstance(d, dict)]
    if not fset:
        return layers, []
    from kitaudit import modelkit

    try:
        kitfile, _fmt = modelkit.kitfile_from_config(manifest, config_bytes)
    except KitauditError:
        kitfile = None
    mapped = {id(le.descriptor): le for le in modelkit.map_layers(manifest, kitfile)}
    selected, skipped = [], []
    for desc in layers:
        le = mapped.get(id(desc))
        if le is None:
            skipped.append(desc)  # not a ModelKit layer: no filter can select it
            continue
        entry = le.entry
        if entry is None:
            entry = {"path": le.path}
        if fset.matches(le.kind, entry):
            selected.append(desc)
        else:
            skipped.append(desc)
    return selected, skipped


def _pull_blobs(client: RegistryClient, store: Any, repo: str, blobs: list[dict[str, Any]],
                concurrency: int, progress: str) -> list[BlobResult]:
    results: list[BlobResult] = []
    lock = threading.Lock()
    unique = unique_by_digest(blobs)

    with Progress(progress, title=f"pull {repo}") as prog:

        def job(desc: dict[str, Any]) -> Callable[[], None]:
            def run() -> None:
                digest, size = desc["digest"], int(desc.get("size", 0))
                label = f"{_short(digest)} {_kind_label(desc)}"
                if store.has_blob(digest):
                    action = "present"
                else:
                    advance = prog.blob(label, size)
                    with store.blob_writer(digest, size, resume=True) as writer:
                        if writer.offset:
                            advance(writer.offset)
                        client.download_blob(repo, digest, writer, size=size,
                                             progress=advance)
                    action = "downloaded"
                prog.done(label, size, action)
                with lock:
                    results.append(BlobResult(digest, size, action))
            return run

        _run_concurrently([job(d) for d in unique], concurrency)
    order = {d["digest"]: i for i, d in enumerate(unique)}
    results.sort(key=lambda r: order[r.digest])
    return results


def _pull_referrers(client: RegistryClient, store: Any, repo: str, digest: str,
                    depth: int = 0) -> list[str]:
    from kitaudit import referrers as refs

    pulled: list[str] = []
    try:
        found = refs.list_referrers(client, repo, digest)
    except RegistryError as exc:
        log.warning("could not list referrers of %s: %s", digest, exc)
        return pulled
    for desc in found[:MAX_REFERRERS]:
        ref_digest = desc.get("digest")
        if not isinstance(ref_digest, str):
            continue
        try:
            if not store.has_blob(ref_digest):
                man = client.get_manifest(repo, ref_digest)
                for blob in _manifest_blobs(man.data):
                    if not store.has_blob(blob["digest"]):
                        with store.blob_writer(blob["digest"], int(blob.get("size", 0)),
                                               resume=True) as writer:
                            client.download_blob(repo, blob["digest"], writer,
                                                 size=int(blob.get("size", 0)))
                store.add_referrer(man.raw)
            else:
                store.add_referrer(store.read_blob(ref_digest))
        except KitauditError as exc:
            # a listed referrer that is gone or broken must not fail the pull itself
            log.warning("skipping referrer %s of %s: %s", ref_digest, digest, exc)
            continue
        pulled.append(ref_digest)
        if depth < 2:
            pulled += _pull_referrers(client, store, repo, ref_digest, depth + 1)
    return pulled


# ---------------------------------------------------------------------- remote ops
def remote_manifest(ref: Any, **net: Any) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """(descriptor, parsed manifest, raw bytes) of ``ref`` in its registry
    (same shape as ``Store.get_manifest``)."""
    pref = parse_ref(ref)
    with open_client(pref.registry, to_net(net)) as client:
        man = client.get_manifest(pref.repository, pref.reference)
    return man.descriptor(), man.data, man.raw


def remote_config(ref: Any, **net: Any) -> bytes:
    """The config blob (the Kitfile JSON for a KitOps ModelKit) of ``ref``."""
    pref = parse_ref(ref)
    with open_client(pref.registry, to_net(net)) as client:
        doc = client.get_manifest(pref.repository, pref.reference).data
        config = doc.get("config") or {}
        if not config.get("digest"):
            raise KitauditError(f"{pref} has no config blob")
        return client.get_blob_bytes(pref.repository, config["digest"])


def fetch_kitfile(ref: Any, **net: Any) -> tuple[str, Any]:
    """(manifest digest, Kitfile) of a remote ModelKit (base-model resolution)."""
    desc, _manifest, kitfile = fetch_modelkit(ref, **net)
    return desc["digest"], kitfile


def fetch_modelkit(ref: Any, **net: Any) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(descriptor, parsed manifest, Kitfile) of a remote ModelKit: the manifest and its
    config read over one connection, the config by the manifest's digest (so both
    belong together even if the tag moves)."""
    from kitaudit import modelkit

    pref = parse_ref(ref)
    with open_client(pref.registry, to_net(net)) as client:
        man = client.get_manifest(pref.repository, pref.reference)
        doc = man.data
        config = doc.get("config") or {}
        config_bytes = b"{}"  # ModelPack: the Kitfile comes from the manifest
        if config.get("digest") and config.get("mediaType") != mt.MODELPACK_CONFIG:
            config_bytes = client.get_blob_bytes(pref.repository, config["digest"])
        elif config.get("mediaType") == mt.KIT_CONFIG:
            raise KitauditError(f"{pref} has no config blob")
    kitfile, _fmt = modelkit.kitfile_from_config(doc, config_bytes)
    return man.descriptor(), doc, kitfile


def remote_tag(src_ref: Any, dest_ref: Any, **net: Any) -> dict[str, Any]:
    """Point ``dest_ref`` at the manifest ``src_ref`` names, by manifest PUT only.

    ``dest_ref`` may be a bare tag (same repository) or a reference in another
    repository of the same registry (blobs are mounted, never downloaded).
    Returns ``{"reference", "digest"}``.
    """
    from kitaudit.reference import Reference

    src = parse_ref(src_ref)
    if isinstance(dest_ref, str) and "/" not in dest_ref and ":" not in dest_ref and \
            "@" not in dest_ref:
        dest, extra = Reference(src.registry, src.repository, dest_ref, None), []
    else:
        dest, extra = parse_ref_tags(dest_ref)
    if dest.registry != src.registry:
        raise UsageError(f"cannot tag across registries ({src.registry} → {dest.registry})",
                         fix="pull the ModelKit, then push it to the other registry")
    if not dest.tag:
        raise UsageError(f"{dest} has no tag to set")
    with open_client(src.registry, to_net(net)) as client:
        man = client.get_manifest(src.repository, src.reference)
        if dest.repository != src.repository:
            for blob in _manifest_blobs(man.data):
                if client.blob_size(dest.repository, blob["digest"]) is None and \
                        not client.mount_blob(dest.repository, blob["digest"],
                                              src.repository):
                    raise RegistryError(f"{src.registry} did not mount {blob['digest']} "
                                        f"into {dest.repository}",
                                        fix="pull and push instead")
        for tag in [dest.tag, *extra]:
            client.put_manifest(dest.repository, tag, man.raw, man.media_type)
    return {"reference": str(dest), "digest": man.digest, "tags": [dest.tag, *extra]}


def remote_remove(ref: Any, **net: Any) -> str:
    """Delete the manifest ``ref`` names from its registry (every tag pointing at it
    goes with it, as in kit). Returns the deleted digest."""
    pref = parse_ref(ref)
    with open_client(pref.registry, to_net(net)) as client:
        digest = client.resolve(pref.repository, pref.reference)
        client.delete_manifest(pref.repository, digest)
    return digest


_REFERRER_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.[a-z]+)?$")


def remote_list_tags(repo: Any, *, include_referrer_tags: bool = False,
                     **net: Any) -> list[tuple[str, dict[str, Any]]]:
    """``(reference, descriptor)`` for every tag of a remote repository
    (``registry/repository``). Referrer tags (``sha256-<hex>`` fallback indexes, cosign's
    ``.sig``/``.att``) are left out unless ``include_referrer_tags``."""
    from kitaudit.reference import parse

    text = str(repo)
    pref, _ = parse(text.split("@", 1)[0].rsplit(":", 1)[0] if _has_tag(text) else text)
    out = []
    with open_client(pref.registry, to_net(net)) as client:
        for tag in client.list_tags(pref.repository):
            if not include_referrer_tags and _REFERRER_TAG.match(tag):
                continue
            desc = client.head_manifest(pref.repository, tag)
            if desc is not None:
                out.append((f"{pref.registry}/{pref.repository}:{tag}", desc))
    return out


def _has_tag(text: str) -> bool:
    last = text.rsplit("/", 1)[-1]
    return ":" in last


def remote_list_repositories(registry: str, **net: Any) -> list[str]:
    """The registry's catalog (many registries refuse it)."""
    with open_client(registry, to_net(net)) as client:
        return client.catalog()


def resolve_remote(ref: Any, **net: Any) -> dict[str, Any]:
    """Descriptor of a remote reference (HEAD)."""
    pref = parse_ref(ref)
    with open_client(pref.registry, to_net(net)) as client:
        desc = client.head_manifest(pref.repository, pref.reference)
    if desc is None:
        raise NotFound(f"{pref} not found on {pref.registry}")
    return desc

