"""Registry credentials and authentication challenges.

Credentials are looked up, first match wins, in:

1. kitaudit's own file ``$KITAUDIT_HOME/credentials.json`` (written by ``login``),
2. ``$REGISTRY_AUTH_FILE`` (podman/skopeo),
3. ``$DOCKER_CONFIG/config.json``,
4. ``~/.docker/config.json``.

Each file is docker's format: ``credHelpers[registry]`` → ``docker-credential-<helper>``,
``auths[registry]`` (``auth`` = base64 ``user:password``, or ``username``/``password``,
or ``identitytoken``), then ``credsStore`` → ``docker-credential-<store>``.

Challenges: ``Basic`` answered with the credentials; ``Bearer`` by fetching a token from
the realm with the scope of one repository (``repository:<name>:pull[,push]``), cached
until it expires. Secrets never appear in ``repr``, logs or exception messages.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kitaudit.errors import AuthError, RegistryError

if TYPE_CHECKING:
    from kitaudit.registry.transport import Transport

log = logging.getLogger("kitaudit.registry")

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    """A username with a password, or an identity (refresh) token. ``repr`` hides secrets."""

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = ""

    def __repr__(self) -> str:
        kind = "identity-token" if self.identity_token else "password"
        return f"Credentials(username={self.username!r}, {kind}=***, source={self.source!r})"

    __str__ = __repr__

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def kitaudit_credentials_path() -> Path:
    from kitaudit.store import default_home

    return default_home() / "credentials.json"


def config_paths() -> list[Path]:
    """Credential files in lookup order (files that do not exist are skipped later)."""
    paths = [kitaudit_credentials_path()]
    if os.environ.get("REGISTRY_AUTH_FILE"):
        paths.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("DOCKER_CONFIG"):
        paths.append(Path(os.environ["DOCKER_CONFIG"]) / "config.json")
    paths.append(Path.home() / ".docker" / "config.json")
    seen: list[Path] = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    return seen


def _registry_keys(registry: str) -> list[str]:
    """Keys under which docker-format files may store ``registry``."""
    if registry in _DOCKER_HUB_NAMES:
        return [DOCKER_HUB_KEY, "docker.io", "index.docker.io", "registry-1.docker.io"]
    return [registry, f"https://{registry}", f"http://{registry}"]


def _normalise_key(key: str) -> str:
    key = re.sub(r"^[a-z]+://", "", key.strip())
    key = key.split("/", 1)[0]
    if key in _DOCKER_HUB_NAMES:
        return "docker.io"
    return key


def _read_config(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read credentials file {path}: {type(exc).__name__}",
                        fix="fix or remove the file")
    return data if isinstance(data, dict) else {}


def _from_auth_entry(entry: dict, source: str) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("identitytoken"):
        user = entry.get("username", "")
        if entry.get("auth") and not user:
            user = _decode_auth(entry["auth"], source)[0]
        return Credentials(username=user or "<token>",
                           identity_token=str(entry["identitytoken"]), source=source)
    if entry.get("auth"):
        user, password = _decode_auth(entry["auth"], source)
        return Credentials(username=user, password=password, source=source)
    if entry.get("username") and entry.get("password"):
        return Credentials(username=str(entry["username"]), password=str(entry["password"]),
                           source=source)
    return None


def _decode_auth(value: str, source: str) -> tuple[str, str]:
    try:
        text = base64.b64decode(value).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise AuthError(f"malformed 'auth' entry in {source}", fix="run kitaudit login again")
    if ":" not in text:
        raise AuthError(f"malformed 'auth' entry in {source}", fix="run kitaudit login again")
    user, password = text.split(":", 1)
    return user, password


def helper_get(helper: str, registry: str) -> Credentials | None:
    """Ask ``docker-credential-<helper> get`` for ``registry``'s credentials."""
    exe = shutil.which(f"docker-credential-{helper}")
    if exe is None:
        raise AuthError(f"credential helper docker-credential-{helper} is not installed",
                        fix="install it, or remove it from the docker config")
    server = DOCKER_HUB_KEY if registry in _DOCKER_HUB_NAMES else registry
    try:
        proc = subprocess.run([exe, "get"], input=server.encode(), capture_output=True,
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthError(f"credential helper docker-credential-{helper} failed: "
                        f"{type(exc).__name__}")
    if proc.returncode != 0:
        out = proc.stdout.decode(errors="replace").strip().lower()
        if "not found" in out or "credentials not found" in out:
            return None
        # helpers print the error on stdout; it carries no secret but keep it short
        raise AuthError(f"credential helper docker-credential-{helper} failed "
                        f"(exit {proc.returncode})")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise AuthError(f"credential helper docker-credential-{helper} printed invalid JSON")
    user = str(data.get("Username", ""))
    secret = str(data.get("Secret", ""))
    if not secret:
        return None
    source = f"docker-credential-{helper}"
    if user == "<token>":
        return Credentials(username=user, identity_token=secret, source=source)
    return Credentials(username=user, password=secret, source=source)


def find_credentials(registry: str, paths: list[Path] | None = None) -> Credentials | None:
    """Credentials for ``registry`` (``host[:port]``) from the configured files, or None."""
    keys = _registry_keys(registry)
    norm = _normalise_key(registry)
    for path in paths if paths is not None else config_paths():
        cfg = _read_config(path)
        if not cfg:
            continue
        helpers = cfg.get("credHelpers") or {}
        for key, helper in helpers.items():
            if _normalise_key(key) == norm:
                creds = helper_get(str(helper), registry)
                if creds:
                    return creds
        auths = cfg.get("auths") or {}
        entry = None
        for key in keys:
            if key in auths:
                entry = auths[key]
                break
        if entry is None:
            for key, value in auths.items():
                if _normalise_key(key) == norm:
                    entry = value
                    break
        if entry is not None:
            creds = _from_auth_entry(entry, str(path))
            if creds:
                return creds
        if cfg.get("credsStore"):
            creds = helper_get(str(cfg["credsStore"]), registry)
            if creds:
                return creds
    return None


# ---------------------------------------------------------------- login / logout

def _write_private_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def store_credentials(registry: str, username: str, password: str,
                      path: Path | None = None) -> Path:
    """Save credentials in kitaudit's credentials file (docker format, mode 0600)."""
    path = path or kitaudit_credentials_path()
    cfg = _read_config(path)
    auths = cfg.setdefault("auths", {})
    auth = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    auths[registry] = {"auth": auth}
    _write_private_json(path, cfg)
    return path


def remove_credentials(registry: str, path: Path | None = None) -> bool:
    """Forget ``registry`` in kitaudit's credentials file. True when something was removed."""
    path = path or kitaudit_credentials_path()
    cfg = _read_config(path)
    auths = cfg.get("auths") or {}
    norm = _normalise_key(registry)
    removed = [k for k in list(auths) if _normalise_key(k) == norm]
    for k in removed:
        del auths[k]
    if removed:
        _write_private_json(path, cfg)
    return bool(removed)


# ---------------------------------------------------------------- challenges

_CHALLENGE_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate`` → (scheme lowercased, params)."""
    header = header.strip()
    if not header:
        return "", {}
    scheme, _, rest = header.partition(" ")
    params: dict[str, str] = {}
    for m in _CHALLENGE_RE.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = value.replace('\\"', '"')
    return scheme.lower(), params


@dataclass
class _Token:
    value: str
    expires: float


class Authenticator:
    """Answers auth challenges for one registry host; caches bearer tokens per scope.

    Thread-safe: several layer transfers share one instance.
    """

    def __init__(self, registry: str, credentials: Credentials | None = None,
                 lookup: bool = True) -> None:
        self.registry = registry
        self._credentials = credentials
        self._lookup = lookup and credentials is None
        self._looked_up = False
        self._scheme: str | None = None
        self._challenge: dict[str, str] = {}
        self._tokens: dict[str, _Token] = {}
        self._lock = threading.Lock()
        self.token_requests = 0

    def __repr__(self) -> str:
        return f"Authenticator(registry={self.registry!r}, scheme={self._scheme!r})"

    @property
    def credentials(self) -> Credentials | None:
        if self._lookup and not self._looked_up:
            self._credentials = find_credentials(self.registry)
            self._looked_up = True
        return self._credentials

    def header_for(self, scope: str) -> str | None:
        """The Authorization header to send proactively for ``scope``, if known."""
        with self._lock:
            if self._scheme == "basic" and self.credentials:
                return self.credentials.basic_header()
            if self._scheme == "bearer":
                tok = self._cached(scope)
                if tok:
                    return f"Bearer {tok.value}"
        return None

    def _cached(self, scope: str) -> _Token | None:
        """A live token for ``scope``, or for a wider scope of the same repository
        (a ``pull,push`` token serves ``pull``)."""
        now = time.time()
        for key in (scope, scope.replace(":pull", ":pull,push") if scope.endswith(":pull")
                    else None):
            tok = self._tokens.get(key) if key else None
            if tok and tok.expires > now:
                return tok
        return None

    def answer(self, transport: Transport, www_authenticate: str, scope: str,
               sent: str | None = None) -> str:
        """Authorization header answering a 401 challenge, for ``scope``.

        ``sent`` is the Authorization header of the refused request: when another
        thread has meanwhile obtained a different live token, that one is reused.
        Raises ``AuthError`` with one clear message when it cannot be answered.
        """
        scheme, params = parse_challenge(www_authenticate)
        with self._lock:
            self._scheme = scheme
            if scheme == "basic":
                creds = self.credentials
                if not creds or creds.identity_token:
                    raise AuthError(f"{self.registry} requires a login",
                                    status=401, fix=f"kitaudit login {self.registry}")
                return creds.basic_header()
            if scheme != "bearer":
                raise AuthError(f"{self.registry} asks for unsupported authentication "
                                f"{scheme or '(none)'}", status=401)
            self._challenge = params
            tok = self._cached(scope)
            if tok and f"Bearer {tok.value}" != sent:
                return f"Bearer {tok.value}"  # obtained by another thread meanwhile
            value, ttl = self._fetch_token(transport, params, scope)
            self._tokens[scope] = _Token(value, time.time() + max(0.0, ttl - 5))
            return f"Bearer {value}"

    def _fetch_token(self, transport: Transport, params: dict[str, str],
                     scope: str) -> tuple[str, float]:
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"{self.registry} sent a bearer challenge without realm",
                            status=401)
        scopes = sorted(set(scope.split()) | set(params.get("scope", "").split()))
        creds = self.credentials
        query: dict[str, str | list[str]] = {}
        if params.get("service"):
            query["service"] = params["service"]
        self.token_requests += 1
        if creds and creds.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "client_id": "kitaudit", "scope": " ".join(scopes)}
            if params.get("service"):
                form["service"] = params["service"]
            resp = transport.client.post(realm, data=form)
        else:
            headers = {}
            if creds:
                headers["Authorization"] = creds.basic_header()
            query["scope"] = scopes
            resp = transport.client.get(realm, params=query, headers=headers)
        if resp.status_code in (401, 403):
            who = f"user {creds.username!r}" if creds and creds.username else "anonymous access"
            raise AuthError(f"{self.registry}: authentication failed for {who}",
                            status=resp.status_code,
                            fix=f"check the credentials (kitaudit login {self.registry})")
        if resp.status_code != 200:
            raise RegistryError(f"{self.registry}: token service answered HTTP "
                                f"{resp.status_code}", status=resp.status_code)
        try:
            data = resp.json()
        except ValueError:
            raise RegistryError(f"{self.registry}: token service sent invalid JSON")
        value = data.get("token") or data.get("access_token")
        if not value:
            raise RegistryError(f"{self.registry}: token service sent no token")
        try:
            ttl = float(data.get("expires_in", 60))
        except (TypeError, ValueError):
            ttl = 60.0
        return str(value), max(ttl, 1.0)
