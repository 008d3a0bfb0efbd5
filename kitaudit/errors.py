"""Exception hierarchy shared by every module.

Each error carries a one-line message and, where we know it, the fix. The CLI prints
``error: <message>`` and ``fix: <fix>`` and exits with ``exit_code``:

* 1 – a definite "no": verification or policy denied, a diff that differs.
* 2 – could not do what was asked: usage, bad input, network, registry, store.

Messages never contain secrets (passwords, tokens, private keys).
"""

from __future__ import annotations


class KitauditError(Exception):
    """Base class. ``str(err)`` is the one-line message."""

    exit_code = 2

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message


class UsageError(KitauditError):
    """Bad arguments or options."""


class KitfileError(KitauditError):
    """A Kitfile could not be parsed or is invalid.

    ``problems`` lists every problem found (all are reported together); the message
    joins them.
    """

    def __init__(self, problems: list[str] | str, *, source: str | None = None,
                 fix: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.source = source
        prefix = f"{source}: " if source else ""
        if len(self.problems) == 1:
            msg = f"{prefix}{self.problems[0]}"
        else:
            msg = f"{prefix}{len(self.problems)} problems: " + "; ".join(self.problems)
        super().__init__(msg, fix=fix)


class InvalidReference(KitauditError):
    """A ModelKit reference (registry/repo:tag@digest) does not parse."""


class NotFound(KitauditError):
    """A reference, blob or file does not exist."""


class StoreError(KitauditError):
    """The local store is damaged or cannot be written."""


class DigestMismatch(KitauditError):
    """Content did not hash to the digest it was announced with."""


class UnsafeArchive(KitauditError):
    """A layer holds an entry that would escape the target or is not a plain file."""


class PackError(KitauditError):
    """Packing failed (symlinks, base-model cycles, missing paths...)."""


class RegistryError(KitauditError):
    """The registry answered with an error or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None,
                 fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.status = status


class AuthError(RegistryError):
    """401/403 from a registry, or credentials could not be read."""


class SigningError(KitauditError):
    """Signing failed (bad key, wrong password, bad token...)."""


class VerificationError(KitauditError):
    """A signature, bundle or attestation did not verify."""

    exit_code = 1


class PolicyError(KitauditError):
    """A policy file or expression is invalid."""


class Denied(KitauditError):
    """A definite negative decision (verify/policy)."""

    exit_code = 1
