"""ModelKit references: ``registry/repository[:tag][@digest]`` parsed by kit's rules.

kit (``ParseReference``) differs from Docker in a few ways that users rely on:

* A first ``/`` component is a registry only if it contains ``.`` or ``:``;
  otherwise the registry is ``localhost`` and the component stays part of the
  repository (``org/model`` → ``localhost/org/model``). We additionally treat a
  first component that is exactly ``localhost`` as the registry, so that the
  canonical form printed by :class:`Reference` parses back to itself.
* ``repo:t1,t2,t3`` names one reference plus extra tags.
* A whole input that is a digest means ``localhost/_@<digest>``.
* ``repo:tag@digest``: the tag is ignored, the digest wins.
* Repositories must be lowercase; registry, repository, tag and digest are then
  checked by the OCI distribution rules (as oras-go does).
* No tag and no digest: :func:`parse` leaves both empty (newer kit);
  :func:`parse_for_command` fills in ``latest`` (what commands use).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from kitaudit.errors import InvalidReference

DEFAULT_REGISTRY = "localhost"
DEFAULT_REPOSITORY = "_"
DEFAULT_TAG = "latest"

_FORMAT_HINT = ("write it as [registry/]repository[:tag] or [registry/]repository@sha256:<64 hex>, "
                "e.g. registry.example.com/team/model:v1")

# OCI distribution-spec grammar, as oras-go validates it.
_REPO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_REPO_COMPONENT}(?:/{_REPO_COMPONENT})*", re.ASCII)
_TAG_RE = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", re.ASCII)
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX_RE = re.compile(r"[a-f0-9]+", re.ASCII)
# host[:port] or [ipv6][:port], as Go's URL parser accepts it for an authority
# (restricted to characters real registry names use).
_REGISTRY_RE = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]*)?", re.ASCII)


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``str()`` gives the canonical form."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``."""
        return f"{self.registry}/{self.repository}"

    @property
    def reference(self) -> str | None:
        """What a registry is asked for: the digest if there is one, else the tag."""
        return self.digest or self.tag

    @property
    def display(self) -> str:
        """Short form for people, as kit shows it: without ``localhost/`` and without the
        ``_`` placeholder repository. It parses back to the same reference."""
        text = str(self)
        head, slash, _ = self.repository.partition("/")
        looks_like_registry = bool(slash) and ("." in head or ":" in head or head == "localhost")
        if self.registry == DEFAULT_REGISTRY and not looks_like_registry:
            text = text[len(DEFAULT_REGISTRY) + 1:]
            if self.repository == DEFAULT_REPOSITORY and self.digest and not self.tag:
                text = self.digest
        return text

    def with_tag(self, tag: str) -> Reference:
        """The same repository with ``tag`` (any digest is dropped)."""
        _check_tag(tag, tag)
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to ``digest`` (the tag is kept for display)."""
        _check_digest(digest, digest)
        return replace(self, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def is_digest(text: str) -> bool:
    """True for a digest kit (go-digest) accepts: sha256/sha384/sha512 + lowercase hex."""
    if not _DIGEST_RE.fullmatch(text):
        return False
    algorithm, _, encoded = text.partition(":")
    want = _DIGEST_HEX_LEN.get(algorithm)
    return want is not None and len(encoded) == want and bool(_HEX_RE.fullmatch(encoded))


def _fail(text: str, problem: str, fix: str = _FORMAT_HINT) -> InvalidReference:
    return InvalidReference(f"invalid reference {text!r}: {problem}", fix=fix)


def _check_tag(tag: str, text: str) -> None:
    if not _TAG_RE.fullmatch(tag):
        raise _fail(text, f"tag {tag!r} is not valid",
                    fix="tags are 1-128 characters of letters, digits, '_', '.' and '-', "
                        "not starting with '.' or '-'")


def _check_digest(digest: str, text: str) -> None:
    if not is_digest(digest):
        raise _fail(text, f"digest {digest!r} is not valid",
                    fix="a digest is sha256:<64 lowercase hex characters>")


def parse(text: str, *, default_registry: str = DEFAULT_REGISTRY) -> tuple[Reference, list[str]]:
    """Parse ``text`` by kit's rules; return the reference and any extra tags.

    A reference without tag and digest keeps both ``None`` (see
    :func:`parse_for_command`). Raises :class:`InvalidReference`.
    """
    if not isinstance(text, str):
        raise InvalidReference(f"invalid reference {text!r}: not a string", fix=_FORMAT_HINT)
    if text == "":
        raise _fail(text, "it is empty")
    if is_digest(text):
        return Reference(default_registry, DEFAULT_REPOSITORY, None, text), []

    first, *extra_tags = text.split(",")
    registry = default_registry
    rest = first
    head, slash, tail = first.partition("/")
    if slash and ("." in head or ":" in head or head == "localhost"):
        registry, rest = head, tail

    tag: str | None = None
    digest: str | None = None
    if "@" in rest:
        repository, _, digest = rest.partition("@")
        repository = repository.partition(":")[0]  # kit ignores a tag next to a digest
    elif ":" in rest:
        repository, _, tag = rest.partition(":")
    else:
        repository = rest

    if repository.lower() != repository:
        raise _fail(text, f"repository ({repository}) name must be lowercase",
                    fix=f"use {repository.lower()!r}")
    if not (registry == default_registry and repository == DEFAULT_REPOSITORY):
        if not _REPOSITORY_RE.fullmatch(repository):
            if not repository:
                problem = "repository is missing"
            else:
                problem = (f"repository ({repository}) must start and end with a letter or "
                           "number and use only a-z, 0-9, '.', '_', '-' and '/' between")
            raise _fail(text, problem)
    if not _REGISTRY_RE.fullmatch(registry):
        raise _fail(text, f"registry {registry!r} is not a valid host[:port]")
    if tag is not None:
        _check_tag(tag, text)
    if digest is not None:
        _check_digest(digest, text)
    for extra in extra_tags:
        _check_tag(extra, text)
    return Reference(registry, repository, tag, digest), list(extra_tags)


def parse_for_command(text: str, *, default_registry: str = DEFAULT_REGISTRY) -> Reference:
    """Parse one reference for a command: no extra tags; no tag and no digest → ``latest``."""
    ref, extra = parse(text, default_registry=default_registry)
    if extra:
        raise _fail(text, "this command takes one reference, not a list of tags",
                    fix=f"pass {str(ref)!r} (extra tags are only for pack and tag)")
    if ref.tag is None and ref.digest is None:
        ref = replace(ref, tag=DEFAULT_TAG)
    return ref


def is_reference(text: str) -> bool:
    """True if kit treats ``text`` (a Kitfile ``model.path``) as a ModelKit reference: it
    contains ``:`` or ``@`` and kit's ``ParseReference`` accepts it.

    This is :func:`kitaudit.kitfile.is_modelkit_reference` (kit-exact, checked against
    kit's conformance data), not "``parse`` accepts it": kit's acceptance differs from
    :func:`parse` on purpose in three edge cases. Kit accepts registry names with URL
    sub-delimiters (``a+b.io/m:v1``) and does not check extra tags (``m:v1,x y``), both
    of which :func:`parse` refuses; :func:`parse` accepts the ``_`` placeholder
    repository (``_:v1``, ``localhost/_@sha256:…``, the form it prints for a bare
    digest), which kit refuses. A leading ``localhost/`` is accepted by both (kit keeps it
    in the repository, :func:`parse` makes it the registry). A path for which this is
    true can still fail :func:`parse` with a clear :class:`InvalidReference`.
    """
    from kitaudit.kitfile import is_modelkit_reference

    return is_modelkit_reference(text)
