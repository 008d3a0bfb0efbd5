"""``login`` and ``logout``: check credentials against the registry, then keep them in
kitaudit's own credentials file (docker format, mode 0600)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kitaudit.errors import UsageError
from kitaudit.registry.auth import Credentials, remove_credentials, store_credentials
from kitaudit.registry.client import RegistryClient
from kitaudit.registry.transport import NetOptions


def _registry_name(host: str) -> str:
    host = host.strip()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix):]
    host = host.rstrip("/").split("/", 1)[0]
    if not host:
        raise UsageError("a registry host is required", fix="e.g. kitaudit login ghcr.io")
    return host


def login(registry: str, username: str, password: str, *, path: Path | None = None,
          verify: bool = True, **net: Any) -> Path:
    """Check ``username``/``password`` against ``registry`` (``GET /v2/`` answering its
    challenge), then save them. Returns the credentials file. Raises ``AuthError`` with
    one message (no secret) when the registry refuses them."""
    registry = _registry_name(registry)
    if not username:
        raise UsageError("a username is required", fix="pass -u USER")
    if not password:
        raise UsageError("an empty password was given", fix="pass --password-stdin")
    if verify:
        creds = Credentials(username=username, password=password, source="login")
        client = RegistryClient(registry, net=NetOptions.from_kwargs(**net),
                                credentials=creds)
        try:
            client.ping()
        finally:
            client.close()
    return store_credentials(registry, username, password, path)


def logout(registry: str, *, path: Path | None = None) -> bool:
    """Forget ``registry``'s credentials. True when some were removed."""
    return remove_credentials(_registry_name(registry), path)
