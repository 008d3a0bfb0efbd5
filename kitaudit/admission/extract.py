"""Find the ModelKit references in a Kubernetes object sent for admission.

What counts as a ModelKit reference (docs/admission.md):

* ``kit://REF`` anywhere in a string under the object's ``spec``: container ``args``,
  ``command``, ``env[].value``, KServe ``storageUri`` (``spec.predictor.model.storageUri``,
  ``spec.predictor.<framework>.storageUri``, transformer and explainer likewise), and any
  other field. ``REF`` is parsed with kit's rules (``kitaudit.reference``).
* The value of an env var ``MODELKIT_REF`` in any container (the KitOps init container
  ``kitops-init`` unpacks that reference), with or without ``kit://``.
* Container images and image volumes (``volumes[].image.reference``) whose
  ``registry/repository`` matches one of the configured image patterns (globs: ``*``
  within a path segment, ``**`` across). Images are named with Docker's rules
  (``ubuntu`` is ``docker.io/library/ubuntu``), so they are normalised that way first.
  Images are *not* probed: deciding by looking at every image's manifest would put a
  registry round trip (and a registry outage) in front of every Pod in the cluster.

Pod specs are found in Pods (``spec``), KServe InferenceService components
(``spec.predictor``, ``spec.transformer``, ``spec.explainer``: their container fields are
inline), and pod templates of workloads (``spec.template.spec``,
``spec.jobTemplate.spec.template.spec``) should the webhook be configured for them.

What cannot be checked is reported as a problem, never silently skipped: a
``MODELKIT_REF`` taken from ``valueFrom`` (a ConfigMap or Secret the webhook cannot
see), and a ``kit://`` reference that does not parse.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

MODELKIT_REF_ENV = "MODELKIT_REF"
KIT_SCHEME = "kit://"

# A reference after kit://: registry/repository[:tag][@digest]. Stops at whitespace,
# quotes, commas and the like; trailing punctuation is removed below.
_KIT_URI_RE = re.compile(r"kit://([A-Za-z0-9\[][A-Za-z0-9._~\-/:@\[\]+=]*)")
_TRAILING = ".:/@-"

_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True)
class FoundReference:
    """One ModelKit reference in the object.

    ``reference`` is what will be verified (canonical ``registry/repo:tag[@digest]``),
    ``written`` is the text found, ``source`` says how it was recognised (``kit-uri``,
    ``modelkit-ref-env``, ``image``, ``image-volume``) and ``path`` where it is
    (``spec.containers[0].args[1]``).
    """

    reference: str
    written: str
    source: str
    path: str


@dataclass
class Extraction:
    """Every occurrence of a reference (pod-spec fields first, then ``kit://`` strings)
    and the problems: places that name a ModelKit the webhook cannot verify."""

    references: list[FoundReference] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def unique_references(self) -> list[str]:
        seen: dict[str, None] = {}
        for f in self.references:
            seen.setdefault(f.reference, None)
        return list(seen)

    def paths_of(self, reference: str) -> list[str]:
        return [f.path for f in self.references if f.reference == reference]


class ImageMatcher:
    """Which container images are ModelKits: globs over ``registry/repository``."""

    def __init__(self, patterns: Sequence[str] = ()) -> None:
        from kitaudit.policy.model import _glob_regex

        self.patterns = tuple(patterns)
        self._regexes = [_glob_regex(p) for p in self.patterns]

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, image: str) -> str | None:
        """The normalised reference if ``image`` matches a pattern, else None."""
        if not self._regexes:
            return None
        normalised = normalise_image(image)
        if normalised is None:
            return None
        name = normalised.split("@", 1)[0]
        name = _strip_tag(name)
        if any(r.match(name) for r in self._regexes):
            return normalised
        return None


def _strip_tag(name: str) -> str:
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def normalise_image(image: str) -> str | None:
    """Docker's normalisation: ``ubuntu`` → ``docker.io/library/ubuntu:latest``,
    ``org/app`` → ``docker.io/org/app:latest``. None for an empty image."""
    image = image.strip()
    if not image:
        return None
    first, slash, _rest = image.partition("/")
    if not slash:
        image = f"docker.io/library/{image}"
    elif not ("." in first or ":" in first or first == "localhost"):
        image = f"docker.io/{image}"
    name, at, digest = image.partition("@")
    if not at and _strip_tag(name) == name:
        name += ":latest"
    return name + (at + digest if at else "")


def canonical_reference(text: str) -> str:
    """The canonical form of a ModelKit reference (kit's rules; ``latest`` when there is
    neither tag nor digest). Raises :class:`kitaudit.errors.InvalidReference`."""
    from kitaudit.reference import parse_for_command

    return str(parse_for_command(text))


def _strip_kit(text: str) -> str:
    text = text.strip()
    return text[len(KIT_SCHEME):] if text.startswith(KIT_SCHEME) else text


class _Collector:
    def __init__(self, images: ImageMatcher) -> None:
        self.images = images
        self.out = Extraction()

    def add(self, written: str, source: str, path: str) -> None:
        from kitaudit.errors import InvalidReference

        try:
            ref = canonical_reference(written)
        except InvalidReference as err:
            self.out.problems.append(f"{path}: {written!r} is not a valid ModelKit reference "
                                     f"({err.message})")
            return
        self.out.references.append(FoundReference(ref, written, source, path))

    def add_image(self, image: Any, source: str, path: str) -> None:
        if not isinstance(image, str) or not self.images:
            return
        normalised = self.images.matches(image)
        if normalised is not None:
            self.add(normalised, source, path)

    # -- kit:// anywhere
    def walk_strings(self, node: Any, path: str) -> None:
        for value, where in _strings(node, path):
            if KIT_SCHEME not in value:
                continue
            for m in _KIT_URI_RE.finditer(value):
                self.add(m.group(1).rstrip(_TRAILING), "kit-uri", where)
            # "kit://" followed by nothing usable
            if not _KIT_URI_RE.search(value):
                self.out.problems.append(f"{where}: {value[:200]!r} has kit:// without a "
                                         f"ModelKit reference")

    # -- pod specs
    def pod_spec(self, spec: Any, path: str) -> None:
        if not isinstance(spec, dict):
            return
        for list_name in _CONTAINER_LISTS:
            containers = spec.get(list_name)
            if not isinstance(containers, list):
                continue
            for i, c in enumerate(containers):
                if not isinstance(c, dict):
                    continue
                cpath = f"{path}.{list_name}[{i}]"
                self.add_image(c.get("image"), "image", f"{cpath}.image")
                self.modelkit_env(c.get("env"), f"{cpath}.env")
        volumes = spec.get("volumes")
        if isinstance(volumes, list):
            for i, v in enumerate(volumes):
                if isinstance(v, dict) and isinstance(v.get("image"), dict):
                    self.add_image(v["image"].get("reference"), "image-volume",
                                   f"{path}.volumes[{i}].image.reference")

    def modelkit_env(self, env: Any, path: str) -> None:
        if not isinstance(env, list):
            return
        for j, e in enumerate(env):
            if not isinstance(e, dict) or e.get("name") != MODELKIT_REF_ENV:
                continue
            epath = f"{path}[{j}]"
            value = e.get("value")
            if isinstance(value, str) and value.strip():
                if KIT_SCHEME in value:
                    continue  # found by the kit:// walk
                self.add(_strip_kit(value), "modelkit-ref-env", f"{epath}.value")
            elif e.get("valueFrom") is not None:
                self.out.problems.append(
                    f"{epath}: {MODELKIT_REF_ENV} comes from valueFrom, which the webhook "
                    f"cannot read; set the reference as a literal value")


def _strings(node: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string below ``node`` with its JSON path (iterative: no recursion limit)."""
    stack: list[tuple[Any, str]] = [(node, path)]
    while stack:
        cur, where = stack.pop()
        if isinstance(cur, str):
            yield cur, where
        elif isinstance(cur, dict):
            for k in reversed(list(cur)):
                stack.append((cur[k], f"{where}.{k}"))
        elif isinstance(cur, list):
            for i in range(len(cur) - 1, -1, -1):
                stack.append((cur[i], f"{where}[{i}]"))


def pod_spec_paths(kind: str, obj: dict[str, Any]) -> list[tuple[Any, str]]:
    """The pod specs inside ``obj`` (by kind), with their paths."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return []
    if kind == "Pod":
        return [(spec, "spec")]
    if kind == "InferenceService":
        return [(spec.get(c), f"spec.{c}") for c in ("predictor", "transformer", "explainer")
                if isinstance(spec.get(c), dict)]
    if kind == "CronJob":
        jt = spec.get("jobTemplate")
        tmpl = jt.get("spec", {}).get("template") if isinstance(jt, dict) and \
            isinstance(jt.get("spec"), dict) else None
        if isinstance(tmpl, dict):
            return [(tmpl.get("spec"), "spec.jobTemplate.spec.template.spec")]
        return []
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        return [(tmpl.get("spec"), "spec.template.spec")]
    return []


def extract(obj: Any, kind: str, *, images: ImageMatcher | None = None) -> Extraction:
    """The ModelKit references in ``obj`` (an object of kind ``kind``, e.g. ``Pod``,
    ``InferenceService``). Unknown kinds are searched for ``kit://`` only."""
    collector = _Collector(images or ImageMatcher())
    if not isinstance(obj, dict):
        return collector.out
    for spec, path in pod_spec_paths(kind, obj):
        collector.pod_spec(spec, path)
    if "spec" in obj:
        collector.walk_strings(obj["spec"], "spec")
    return collector.out
