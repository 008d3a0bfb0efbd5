"""Operations on the local store behind ``list``, ``inspect``, ``info``, ``tag``,
``remove`` and ``diff``. Each returns plain data; the CLI only prints it."""

from __future__ import annotations

import re
from typing import Any

from kitaudit import mediatypes as mt
from kitaudit.errors import KitauditError, UsageError
from kitaudit.modelkit import is_modelkit, load_from_store, load_manifest

_REFERRER_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.[a-z]+)?$")


def full_ref(text: str) -> str:
    """Canonical ``registry/repository:tag`` (or ``@digest``) for user input."""
    from kitaudit import reference

    if text.startswith("sha256:"):
        return text
    return str(reference.parse_for_command(text))


def list_modelkits(store: Any, repository: str | None = None) -> list[dict[str, Any]]:
    """One row per tag: repository, tag, maintainer, name, size, digest."""
    from kitaudit import reference

    repo_filter = None
    if repository:
        ref, _ = reference.parse(repository)
        repo_filter = ref.name
    rows: list[dict[str, Any]] = []
    facts: dict[str, dict[str, Any]] = {}  # per digest: a ModelKit tagged N times is read once
    for name, desc in store.list_tags(repo_filter):
        repo, tag = name.rsplit(":", 1)
        if _REFERRER_TAG.match(tag):
            continue  # cosign's .sig/.att tags and referrer fallback indexes
        digest = desc["digest"]
        if digest not in facts:
            facts[digest] = _list_facts(store, digest)
        rows.append({"repository": repo, "tag": tag, "digest": digest, **facts[digest]})
    return rows


def _list_facts(store: Any, digest: str) -> dict[str, Any]:
    """The columns of a ``list`` row that depend on the manifest (read once)."""
    out: dict[str, Any] = {"maintainer": "", "name": "", "size": 0, "modelkit": False}
    try:
        _d, manifest, _raw = store.get_manifest(digest)
    except KitauditError as err:
        out["error"] = str(err)
        return out
    out["size"] = sum(int(x.get("size", 0)) for x in
                      [manifest.get("config") or {}, *(manifest.get("layers") or [])])
    if is_modelkit(manifest):
        out["modelkit"] = True
        try:
            pkg = load_manifest(store, digest, manifest).kitfile.package
            if pkg is not None:
                out["name"] = pkg.name or ""
                out["maintainer"] = ", ".join(pkg.authors or [])
        except KitauditError as err:
            out["error"] = str(err)
    return out


def inspect(store: Any, ref: str) -> dict[str, Any]:
    """kit's ``inspect``: digest, cliVersion, Kitfile and manifest."""
    kit = load_from_store(store, full_ref(ref))
    return {"digest": kit.digest,
            "cliVersion": (kit.manifest.get("annotations") or {}).get(mt.ANN_CLI_VERSION, ""),
            "kitfile": kit.kitfile.to_dict(), "manifest": kit.manifest}


def inspect_remote(ref: str, **net: Any) -> dict[str, Any]:
    """``inspect -r``: the same document, read from the registry."""
    from kitaudit.registry.transfer import fetch_modelkit

    desc, manifest, kitfile = fetch_modelkit(full_ref(ref), **net)
    return {"digest": desc["digest"],
            "cliVersion": (manifest.get("annotations") or {}).get(mt.ANN_CLI_VERSION, ""),
            "kitfile": kitfile.to_dict(), "manifest": manifest}


def info_remote(ref: str, **net: Any) -> Any:
    """``info -r``: the Kitfile of a ModelKit in its registry."""
    from kitaudit.registry.transfer import fetch_kitfile

    return fetch_kitfile(full_ref(ref), **net)[1]


def filter_kitfile(kitfile: Any, filters: list[str] | tuple[str, ...]) -> Any:
    """A copy of ``kitfile`` with only the entries the filters select (``info --filter``)."""
    import copy

    from kitaudit import filters as flt

    fset = flt.parse_filters(list(filters))
    out = copy.deepcopy(kitfile)
    if out.model is not None:
        if not fset.matches("model", out.model):
            kept = [p for p in out.model.parts if fset.matches("modelpart", p)]
            if not kept:
                out.model = None
            else:
                out.model.parts = kept
    out.datasets = [d for d in out.datasets if fset.matches("dataset", d)]
    out.code = [c for c in out.code if fset.matches("code", c)]
    out.docs = [d for d in out.docs if fset.matches("docs", d)]
    out.prompts = [p for p in out.prompts if fset.matches("prompts", p)]
    out.mcp_servers = [m for m in out.mcp_servers if fset.matches("mcpservers", m)]
    return out


def info(store: Any, ref: str) -> Any:
    """The Kitfile of a stored ModelKit."""
    return load_from_store(store, full_ref(ref)).kitfile


def tag(store: Any, source: str, dest: str) -> str:
    """Add tag ``dest`` to what ``source`` points at. ``dest`` may be a bare tag (kit's
    short form ``tag NEWTAG REF`` is handled by the CLI)."""
    src = full_ref(source)
    desc = store.resolve(src)
    from kitaudit import reference

    ref, extra = reference.parse(dest)
    if ref.digest:
        raise UsageError(f"cannot tag with a digest: {dest}", fix="give registry/repo:tag")
    names = [f"{ref.registry}/{ref.repository}:{t}" for t in [ref.tag or "latest", *extra]]
    for name in names:
        store.tag(name, desc["digest"])
    return desc["digest"]


def remove(store: Any, ref: str | None, *, all_: bool = False, force: bool = False) -> list[str]:
    if all_:
        return store.remove_all(force=force)
    if not ref:
        raise UsageError("nothing to remove", fix="give a reference or --all")
    return store.remove(full_ref(ref), force=force)


def diff(store: Any, a: str, b: str) -> dict[str, Any]:
    """Compare two stored ModelKits (kit's ``diff``)."""
    from kitaudit import diff as diffmod

    _da, ma, _ra = store.get_manifest(full_ref(a))
    _db, mb, _rb = store.get_manifest(full_ref(b))
    return diffmod.compare_manifests(ma, mb).to_dict()
