"""cosign-format key pairs: generation, encryption format, loading, clear errors."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.secret import SecretBox

from kitaudit.errors import SigningError, UsageError, VerificationError
from kitaudit.signing import keys


@pytest.fixture(autouse=True)
def _no_password_env(monkeypatch):
    for var in keys.PASSWORD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def key_pair() -> tuple[bytes, bytes]:
    return keys.generate_key_pair("s3cret")


def _pem_body(pem: bytes) -> tuple[str, bytes]:
    lines = pem.decode().strip().splitlines()
    assert lines[0].startswith("-----BEGIN ") and lines[-1].startswith("-----END ")
    assert all(len(line) <= 64 for line in lines[1:-1])
    return lines[0][11:-5], base64.b64decode("".join(lines[1:-1]))


def test_private_key_is_cosign_encrypted_json(key_pair):
    private_pem, public_pem = key_pair
    pem_type, body = _pem_body(private_pem)
    assert pem_type == "ENCRYPTED SIGSTORE PRIVATE KEY"
    doc = json.loads(body)
    # exactly go-securesystemslib's field layout and order, compact like Go's json.Marshal
    assert list(doc) == ["kdf", "cipher", "ciphertext"]
    assert list(doc["kdf"]) == ["name", "params", "salt"]
    assert doc["kdf"]["name"] == "scrypt"
    assert doc["kdf"]["params"] == {"N": 32768, "r": 8, "p": 1}
    assert list(doc["kdf"]["params"]) == ["N", "r", "p"]
    assert doc["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 24
    assert b" " not in body
    pub_type, _ = _pem_body(public_pem)
    assert pub_type == "PUBLIC KEY"


def test_independent_decryption_interoperates(key_pair):
    """Decrypt with hashlib.scrypt + nacl SecretBox directly (not the library's code)."""
    private_pem, public_pem = key_pair
    doc = json.loads(_pem_body(private_pem)[1])
    p = doc["kdf"]["params"]
    box_key = hashlib.scrypt(b"s3cret", salt=base64.b64decode(doc["kdf"]["salt"]), n=p["N"],
                             r=p["r"], p=p["p"], dklen=32, maxmem=128 * 1024 * 1024)
    der = SecretBox(box_key).decrypt(base64.b64decode(doc["ciphertext"]),
                                     base64.b64decode(doc["cipher"]["nonce"]))
    priv = serialization.load_der_private_key(der, password=None)
    assert isinstance(priv, ec.EllipticCurvePrivateKey)
    assert isinstance(priv.curve, ec.SECP256R1)
    pub = serialization.load_pem_public_key(public_pem)
    assert pub.public_numbers() == priv.public_key().public_numbers()


def test_load_key_written_independently():
    """A key encrypted the way cosign does it, by test code only, loads."""
    priv = ec.generate_private_key(ec.SECP256R1())
    der = priv.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    salt, nonce = os.urandom(32), os.urandom(24)
    box_key = hashlib.scrypt(b"pw", salt=salt, n=32768, r=8, p=1, dklen=32,
                             maxmem=128 * 1024 * 1024)
    ct = SecretBox(box_key).encrypt(der, nonce).ciphertext
    body = json.dumps({"kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1},
                               "salt": base64.b64encode(salt).decode()},
                       "cipher": {"name": "nacl/secretbox",
                                  "nonce": base64.b64encode(nonce).decode()},
                       "ciphertext": base64.b64encode(ct).decode()}).encode()
    for pem_type in ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"):
        pem = (f"-----BEGIN {pem_type}-----\n".encode() + base64.encodebytes(body)
               + f"-----END {pem_type}-----\n".encode())
        loaded = keys.load_private_key(pem, password="pw")
        assert loaded.public_key.public_numbers() == priv.public_key().public_numbers()


def test_round_trip_and_sign(key_pair):
    private_pem, public_pem = key_pair
    loaded = keys.load_private_key(private_pem, password="s3cret")
    sig = loaded.private_key.sign(b"data", ec.ECDSA(hashes.SHA256()))
    keys.load_public_key(public_pem).verify(sig, b"data", ec.ECDSA(hashes.SHA256()))
    assert loaded.public_pem == public_pem


def test_password_from_env(key_pair, monkeypatch):
    private_pem, _ = key_pair
    monkeypatch.setenv("COSIGN_PASSWORD", "s3cret")
    keys.load_private_key(private_pem)
    monkeypatch.setenv("KITAUDIT_PASSWORD", "wrong")  # KITAUDIT_PASSWORD wins
    with pytest.raises(SigningError, match="wrong password"):
        keys.load_private_key(private_pem)


def test_password_prompt_used_last(key_pair):
    private_pem, _ = key_pair
    asked = []

    def prompt(confirm: bool) -> str:
        asked.append(confirm)
        return "s3cret"

    keys.load_private_key(private_pem, prompt=prompt)
    assert asked == [False]
    with pytest.raises(SigningError, match="no password"):
        keys.load_private_key(private_pem)


def test_wrong_password_is_one_clear_error(key_pair):
    with pytest.raises(SigningError) as exc:
        keys.load_private_key(key_pair[0], password="nope", source="cosign.key")
    assert str(exc.value) == "cosign.key: wrong password for the private key (decryption failed)"
    assert "nope" not in str(exc.value) and exc.value.fix


def test_malformed_keys():
    for data in (b"", b"hello", b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n"
                 b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
                 b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"):
        with pytest.raises(SigningError, match=r"malformed|not a PEM"):
            keys.load_private_key(data, password="x")


def test_tampered_scrypt_params_refused(key_pair):
    doc = json.loads(_pem_body(key_pair[0])[1])
    doc["kdf"]["params"]["N"] = 1 << 30
    pem = (b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
           + base64.encodebytes(json.dumps(doc).encode())
           + b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    with pytest.raises(SigningError, match="scrypt parameters"):
        keys.load_private_key(pem, password="s3cret")


@pytest.mark.parametrize("make", [
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    lambda: ed25519.Ed25519PrivateKey.generate(),
    lambda: ec.generate_private_key(ec.SECP256K1()),
])
def test_unsupported_key_types(make):
    pem = make().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    with pytest.raises(SigningError, match="unsupported"):
        keys.load_private_key(pem)


def test_plain_pem_ec_keys():
    priv = ec.generate_private_key(ec.SECP384R1())
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = priv.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        loaded = keys.load_private_key(pem)
        assert isinstance(loaded.hash_algorithm, hashes.SHA384)
    enc = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(b"pw"))
    assert keys.load_private_key(enc, password="pw").public_key.public_numbers() == \
        priv.public_key().public_numbers()
    with pytest.raises(SigningError, match="wrong password"):
        keys.load_private_key(enc, password="bad")


def test_public_key_given_instead_of_private(key_pair):
    with pytest.raises(SigningError, match="public key"):
        keys.load_private_key(key_pair[1])


def test_bad_public_key():
    with pytest.raises(VerificationError):
        keys.load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")


def test_hint_is_sha256_of_pkix_der(key_pair):
    pub = serialization.load_pem_public_key(key_pair[1])
    der = pub.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    assert keys.public_key_hint(pub) == base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_write_key_pair(tmp_path, key_pair):
    k, p = keys.write_key_pair(tmp_path / "cosign", *key_pair)
    assert k.name == "cosign.key" and p.name == "cosign.pub"
    assert (k.stat().st_mode & 0o777) == 0o600
    with pytest.raises(UsageError, match="already exists"):
        keys.write_key_pair(tmp_path / "cosign", *key_pair)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_loader_never_crashes(data):
    """Arbitrary input gives a SigningError, never another exception."""
    try:
        keys.load_private_key(b"-----BEGIN PRIVATE KEY-----\n" + data
                              + b"\n-----END PRIVATE KEY-----\n", password="x")
    except SigningError:
        pass
    try:
        keys.load_private_key(data, password="x")
    except SigningError:
        pass


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                     lambda c: st.lists(c, max_size=3)
                     | st.dictionaries(st.sampled_from(["kdf", "cipher", "ciphertext", "name",
                                                        "params", "salt", "nonce", "N", "r",
                                                        "p"]), c, max_size=4), max_leaves=15)


@settings(max_examples=150, deadline=None)
@given(_json)
def test_cosign_envelope_parser_never_crashes(doc):
    """Arbitrary JSON inside an ENCRYPTED SIGSTORE PRIVATE KEY block: SigningError only."""
    pem = (b"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"
           + base64.encodebytes(json.dumps(doc).encode())
           + b"-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    with pytest.raises(SigningError):
        keys.load_private_key(pem, password="x")
