"""OCI distribution client: auth, streaming transfer with retries, push/pull, remote
operations. See ``docs/registry.md``.

Public API (imported lazily so that ``import kitaudit.registry`` stays cheap)::

    RegistryClient(registry, net=NetOptions(...))
    push(src, dest=None, *, store=None, progress="auto", referrers=True, **net) -> PushResult
    pull(ref, *, store=None, filters=None, progress="auto", referrers=True,
         unpack_dir=None, **net) -> PullResult
    remote_tag(src_ref, dest_ref, **net) -> dict
    remote_manifest(ref, **net) -> (descriptor, manifest, raw)
    remote_config(ref, **net) -> bytes
    remote_remove(ref, **net) -> digest
    remote_list_tags(repo, **net) -> [(reference, descriptor)]
    fetch_kitfile(ref, **net) -> (digest, Kitfile)
    fetch_modelkit(ref, **net) -> (descriptor, manifest, Kitfile)
    login(registry, username, password, **net) -> Path ; logout(registry) -> bool
"""

from __future__ import annotations

from kitaudit._lazy import lazy_exports
from kitaudit.registry._httpx import defer_httpx_cli

defer_httpx_cli()

_EXPORTS = {
    "RegistryClient": "kitaudit.registry.client",
    "Manifest": "kitaudit.registry.client",
    "NetOptions": "kitaudit.registry.transport",
    "Transport": "kitaudit.registry.transport",
    "Credentials": "kitaudit.registry.auth",
    "find_credentials": "kitaudit.registry.auth",
    "push": "kitaudit.registry.transfer",
    "pull": "kitaudit.registry.transfer",
    "PushResult": "kitaudit.registry.transfer",
    "PullResult": "kitaudit.registry.transfer",
    "remote_tag": "kitaudit.registry.transfer",
    "remote_manifest": "kitaudit.registry.transfer",
    "remote_config": "kitaudit.registry.transfer",
    "remote_remove": "kitaudit.registry.transfer",
    "remote_list_tags": "kitaudit.registry.transfer",
    "remote_list_repositories": "kitaudit.registry.transfer",
    "resolve_remote": "kitaudit.registry.transfer",
    "fetch_kitfile": "kitaudit.registry.transfer",
    "fetch_modelkit": "kitaudit.registry.transfer",
    "login": "kitaudit.registry.credentials",
    "logout": "kitaudit.registry.credentials",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
