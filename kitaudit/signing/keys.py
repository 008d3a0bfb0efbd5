"""cosign-format signing keys: generate, encrypt, load.

cosign writes its private key as PEM ``ENCRYPTED SIGSTORE PRIVATE KEY`` (older releases:
``ENCRYPTED COSIGN PRIVATE KEY``) whose body is the JSON document of
go-securesystemslib's ``encrypted`` package::

    {"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"<b64>"},
     "cipher":{"name":"nacl/secretbox","nonce":"<b64>"},"ciphertext":"<b64>"}

The plaintext is the PKCS#8 DER private key; the secretbox key is
``scrypt(password, salt, N, r, p, 32)``. The public key is a PKIX ``PUBLIC KEY`` PEM.

We also read plain PEM keys (PKCS#8 ``PRIVATE KEY``, SEC1 ``EC PRIVATE KEY`` and
PKCS#8 ``ENCRYPTED PRIVATE KEY``). Only ECDSA keys (P-256, P-384, P-521) are supported,
as cosign generates; anything else is refused with a clear error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kitaudit.errors import SigningError

# PEM block types cosign has used for its private keys, newest first.
COSIGN_PEM_TYPES = (
    "ENCRYPTED SIGSTORE PRIVATE KEY",
    "ENCRYPTED COSIGN PRIVATE KEY",
    "SIGSTORE PRIVATE KEY",
    "COSIGN PRIVATE KEY",
)
_WRITE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"

# scrypt parameters go-securesystemslib accepts (legacy = what cosign writes, standard,
# OWASP). Anything else is refused so that a tampered file cannot make us burn memory.
_SCRYPT_WRITE = {"N": 32768, "r": 8, "p": 1}
_SCRYPT_ALLOWED = ({"N": 32768, "r": 8, "p": 1}, {"N": 65536, "r": 8, "p": 1},
                   {"N": 131072, "r": 8, "p": 1})
_SALT_SIZE = 32
_NONCE_SIZE = 24
_KEY_SIZE = 32

PASSWORD_ENV_VARS = ("KITAUDIT_PASSWORD", "COSIGN_PASSWORD")

PasswordPrompt = Callable[[bool], str]
"""A prompt callback: called with ``confirm`` (True when creating a key) and returns the
password. The CLI passes one that asks on the terminal."""


@dataclass(frozen=True)
class LoadedKey:
    """A private key ready to sign, with what a verifier needs to know about it."""

    private_key: ec.EllipticCurvePrivateKey
    source: str

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def hash_algorithm(self) -> hashes.HashAlgorithm:
        return hash_for_curve(self.private_key.curve)

    @property
    def public_pem(self) -> bytes:
        return public_key_pem(self.public_key)

    @property
    def hint(self) -> str:
        return public_key_hint(self.public_key)


def hash_for_curve(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    """The hash cosign/sigstore-go pair with each ECDSA curve."""
    if isinstance(curve, ec.SECP256R1):
        return hashes.SHA256()
    if isinstance(curve, ec.SECP384R1):
        return hashes.SHA384()
    if isinstance(curve, ec.SECP521R1):
        return hashes.SHA512()
    raise SigningError(f"unsupported elliptic curve {curve.name}",
                       fix="use an ECDSA P-256, P-384 or P-521 key (cosign generate-key-pair "
                           "and kitaudit generate-key-pair write P-256)")


def public_key_pem(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_hint(public_key: object) -> str:
    """cosign's key hint: base64(sha256(PKIX DER of the public key))."""
    der = public_key.public_bytes(serialization.Encoding.DER,  # type: ignore[attr-defined]
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def resolve_password(password: str | bytes | None = None, *,
                     prompt: PasswordPrompt | None = None, confirm: bool = False) -> bytes:
    """Password from the argument, ``KITAUDIT_PASSWORD``, ``COSIGN_PASSWORD`` or
    ``prompt`` (in that order). An empty password is allowed, as in cosign."""
    if password is not None:
        return password.encode() if isinstance(password, str) else password
    for var in PASSWORD_ENV_VARS:
        if var in os.environ:
            return os.environ[var].encode()
    if prompt is not None:
        return prompt(confirm).encode()
    raise SigningError("no password for the private key",
                       fix="set KITAUDIT_PASSWORD (or COSIGN_PASSWORD), or run interactively")


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    from nacl.bindings import crypto_pwhash_scryptsalsa208sha256_ll

    return crypto_pwhash_scryptsalsa208sha256_ll(password, salt, n, r, p, dklen=_KEY_SIZE,
                                                 maxmem=256 * 1024 * 1024)


def _pem_encode(pem_type: str, body: bytes) -> bytes:
    b64 = base64.b64encode(body).decode()
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {pem_type}-----\n" + "\n".join(lines)
            + f"\n-----END {pem_type}-----\n").encode()


def _pem_decode(data: bytes) -> tuple[str, bytes] | None:
    """(type, body) of the first PEM block, or None when there is none."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    start = text.find("-----BEGIN ")
    if start < 0:
        return None
    head_end = text.find("-----", start + 11)
    if head_end < 0:
        return None
    pem_type = text[start + 11:head_end]
    end_marker = f"-----END {pem_type}-----"
    end = text.find(end_marker, head_end)
    if end < 0:
        return None
    body = "".join(text[head_end + 5:end].split())
    try:
        return pem_type, base64.b64decode(body, validate=True)
    except binascii.Error:
        return None


def encrypt_private_key(private_key: ec.EllipticCurvePrivateKey, password: bytes) -> bytes:
    """The cosign ``ENCRYPTED SIGSTORE PRIVATE KEY`` PEM of ``private_key``."""
    from nacl.secret import SecretBox

    der = private_key.private_bytes(serialization.Encoding.DER,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    salt = secrets.token_bytes(_SALT_SIZE)
    nonce = secrets.token_bytes(_NONCE_SIZE)
    key = _scrypt(password, salt, _SCRYPT_WRITE["N"], _SCRYPT_WRITE["r"], _SCRYPT_WRITE["p"])
    boxed = SecretBox(key).encrypt(der, nonce).ciphertext  # tag || ciphertext, as Go's Seal
    envelope = {
        "kdf": {"name": "scrypt", "params": dict(_SCRYPT_WRITE),
                "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(boxed).decode(),
    }
    body = json.dumps(envelope, separators=(",", ":")).encode()
    return _pem_encode(_WRITE_PEM_TYPE, body)


def generate_key_pair(password: str | bytes | None = None, *,
                      prompt: PasswordPrompt | None = None) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key pair as (encrypted cosign private key PEM, public key PEM)."""
    pw = resolve_password(password, prompt=prompt, confirm=True)
    private_key = ec.generate_private_key(ec.SECP256R1())
    return encrypt_private_key(private_key, pw), public_key_pem(private_key.public_key())


def _decrypt_cosign(body: bytes, password: bytes, source: str) -> bytes:
    from nacl.exceptions import CryptoError
    from nacl.secret import SecretBox

    try:
        env = json.loads(body)
        kdf, cipher = env["kdf"], env["cipher"]
        if kdf["name"] != "scrypt":
            raise SigningError(f"{source}: unsupported key derivation {kdf['name']!r}",
                               fix="use a key written by cosign or kitaudit generate-key-pair")
        if cipher["name"] != "nacl/secretbox":
            raise SigningError(f"{source}: unsupported cipher {cipher['name']!r}",
                               fix="use a key written by cosign or kitaudit generate-key-pair")
        params = {"N": int(kdf["params"]["N"]), "r": int(kdf["params"]["r"]),
                  "p": int(kdf["params"]["p"])}
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(cipher["nonce"], validate=True)
        ciphertext = base64.b64decode(env["ciphertext"], validate=True)
    except SigningError:
        raise
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise SigningError(f"{source}: malformed cosign private key (bad JSON envelope)",
                           fix="check the file; regenerate with kitaudit generate-key-pair")
    if params not in _SCRYPT_ALLOWED:
        raise SigningError(f"{source}: unexpected scrypt parameters {params}",
                           fix="use a key written by cosign or kitaudit generate-key-pair")
    if len(nonce) != _NONCE_SIZE:
        raise SigningError(f"{source}: malformed cosign private key (bad nonce)")
    key = _scrypt(password, salt, params["N"], params["r"], params["p"])
    try:
        return SecretBox(key).decrypt(ciphertext, nonce)
    except CryptoError:
        raise SigningError(f"{source}: wrong password for the private key (decryption failed)",
                           fix="set KITAUDIT_PASSWORD or COSIGN_PASSWORD to the key's password")


def _check_supported(key: object, source: str) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        kind = type(key).__name__.lstrip("_").replace("PrivateKey", "") or "unknown"
        raise SigningError(f"{source}: unsupported key type {kind}; only ECDSA keys are "
                           "supported", fix="use an ECDSA P-256 key (kitaudit generate-key-pair)")
    hash_for_curve(key.curve)
    return key


def load_private_key(data: bytes, *, password: str | bytes | None = None,
                     prompt: PasswordPrompt | None = None,
                     source: str = "private key") -> LoadedKey:
    """Load a cosign key or a plain PEM EC private key. The password is only asked for
    when the key is encrypted."""
    block = _pem_decode(data)
    if block is None:
        raise SigningError(f"{source}: not a PEM private key",
                           fix="pass a cosign.key or a PEM PKCS#8 EC private key")
    pem_type, body = block
    if pem_type in COSIGN_PEM_TYPES:
        der = _decrypt_cosign(body, resolve_password(password, prompt=prompt), source)
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, UnsupportedAlgorithm):
            raise SigningError(f"{source}: decrypted key is not a valid PKCS#8 private key")
        return LoadedKey(_check_supported(key, source), source)
    if pem_type in ("PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        pw = None
        if pem_type == "ENCRYPTED PRIVATE KEY":
            pw = resolve_password(password, prompt=prompt)
        try:
            key = serialization.load_pem_private_key(data, password=pw)
        except UnsupportedAlgorithm:
            raise SigningError(f"{source}: unsupported key algorithm",
                               fix="use an ECDSA P-256 key (kitaudit generate-key-pair)")
        except (ValueError, TypeError):
            if pw is not None:
                raise SigningError(f"{source}: wrong password for the private key "
                                   "(or the encrypted key is damaged)",
                                   fix="set KITAUDIT_PASSWORD or COSIGN_PASSWORD")
            raise SigningError(f"{source}: malformed PEM private key")
        return LoadedKey(_check_supported(key, source), source)
    if pem_type in ("RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "DSA PRIVATE KEY"):
        raise SigningError(f"{source}: unsupported key type ({pem_type})",
                           fix="use an ECDSA P-256 key (kitaudit generate-key-pair)")
    if pem_type == "PUBLIC KEY":
        raise SigningError(f"{source}: this is a public key; signing needs the private key",
                           fix="pass cosign.key, not cosign.pub")
    raise SigningError(f"{source}: unsupported PEM block {pem_type!r}",
                       fix="pass a cosign.key or a PEM PKCS#8 EC private key")


def load_private_key_file(path: str | Path, *, password: str | bytes | None = None,
                          prompt: PasswordPrompt | None = None) -> LoadedKey:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        from kitaudit.errors import NotFound

        raise NotFound(f"key file {p} does not exist")
    except OSError as err:
        raise SigningError(f"cannot read key file {p}: {err.strerror}")
    return load_private_key(data, password=password, prompt=prompt, source=str(p))


def load_public_key(data: bytes, *, source: str = "public key") -> ec.EllipticCurvePublicKey:
    """A PEM ``PUBLIC KEY`` (PKIX) ECDSA key, as cosign writes ``cosign.pub``. Raises
    :class:`kitaudit.errors.VerificationError` when it does not load."""
    from kitaudit.errors import VerificationError

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise VerificationError(f"{source}: not a valid PEM public key",
                                fix="pass the cosign.pub that matches the signing key")
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError(f"{source}: unsupported public key type; only ECDSA keys "
                                "are supported")
    try:
        hash_for_curve(key.curve)
    except SigningError as err:
        raise VerificationError(f"{source}: {err.message}")
    return key


def write_key_pair(prefix: str | Path, private_pem: bytes, public_pem: bytes, *,
                   force: bool = False) -> tuple[Path, Path]:
    """Write ``<prefix>.key`` (mode 0600) and ``<prefix>.pub``; refuses to overwrite
    unless ``force``."""
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    if not force:
        for p in (key_path, pub_path):
            if p.exists():
                from kitaudit.errors import UsageError

                raise UsageError(f"{p} already exists", fix="remove it or choose another "
                                 "--output-key-prefix")
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    pub_path.write_bytes(public_pem)
    return key_path, pub_path
