"""Credentials and auth against real registries: htpasswd basic auth, token auth (JWTs
the registry validates itself), TLS with a test CA; docker config files and a real
``docker-credential-*`` helper executable; secrets never shown."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from kitaudit._cli import main
from kitaudit.errors import AuthError, RegistryError
from kitaudit.registry import NetOptions, RegistryClient, pull, push
from kitaudit.registry.auth import Credentials, find_credentials, parse_challenge, store_credentials
from kitaudit.registry.credentials import login, logout
from kitaudit.store import Store
from tests.registry_fixtures import build_modelkit

pytestmark = pytest.mark.registry


def test_parse_challenge_bearer_and_basic():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="reg",'
        'scope="repository:a/b:pull,push"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.example/token", "service": "reg",
                      "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_credentials_repr_hides_secrets():
    c = Credentials("bob", "hunter2-secret", source="x")
    t = Credentials("bob", identity_token="tok-secret", source="x")
    for text in (repr(c), str(c), repr(t), f"{c}", f"{[c, t]}"):
        assert "hunter2" not in text and "tok-secret" not in text


def test_basic_auth_needs_login(basic_registry, tmp_path, kit_home):
    store = Store(tmp_path / "s")
    ref = f"{basic_registry.host}/team/basic:v1"
    build_modelkit(store, ref, seed="basic")
    with pytest.raises(AuthError) as err:
        push(ref, store=store, progress="none", **basic_registry.net)
    assert "requires a login" in str(err.value)
    assert err.value.fix and "kitaudit login" in err.value.fix


def test_login_push_pull_logout_basic(basic_registry, tmp_path, kit_home):
    store = Store(tmp_path / "s")
    ref = f"{basic_registry.host}/team/basic2:v1"
    kit = build_modelkit(store, ref, seed="basic2")
    path = login(basic_registry.host, basic_registry.username, basic_registry.password,
                 **basic_registry.net)
    assert path == kit_home / "credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(path.read_text())
    user_pass = base64.b64decode(data["auths"][basic_registry.host]["auth"]).decode()
    assert user_pass == f"{basic_registry.username}:{basic_registry.password}"
    push(ref, store=store, progress="none", **basic_registry.net)
    dst = Store(tmp_path / "d")
    assert pull(ref, store=dst, progress="none", **basic_registry.net).digest == kit.digest
    assert logout(basic_registry.host)
    assert basic_registry.host not in json.loads(path.read_text())["auths"]


def test_cli_wrong_password_one_clear_message(basic_registry, kit_home):
    secret = "definitely-wrong-PASSWORD-123"
    result = CliRunner().invoke(main, ["login", basic_registry.host, "-u",
                                       basic_registry.username, "--password-stdin",
                                       "--plain-http"], input=secret + "\n")
    assert result.exit_code == 2
    out = result.output
    assert secret not in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "authentication failed" in errors[0]
    assert not (kit_home / "credentials.json").exists()


def test_cli_login_password_stdin(basic_registry, kit_home):
    result = CliRunner().invoke(main, ["login", basic_registry.host, "-u",
                                       basic_registry.username, "--password-stdin",
                                       "--http"], input=basic_registry.password + "\n")
    assert result.exit_code == 0, result.output
    assert basic_registry.password not in result.output
    creds = find_credentials(basic_registry.host)
    assert creds and creds.password == basic_registry.password
    result = CliRunner().invoke(main, ["logout", basic_registry.host])
    assert result.exit_code == 0 and find_credentials(basic_registry.host) is None


def test_docker_config_and_registry_auth_file(basic_registry, tmp_path, kit_home,
                                              monkeypatch):
    auth = base64.b64encode(
        f"{basic_registry.username}:{basic_registry.password}".encode()).decode()
    docker = Path(os.environ["DOCKER_CONFIG"])
    docker.mkdir(parents=True, exist_ok=True)
    (docker / "config.json").write_text(json.dumps(
        {"auths": {f"http://{basic_registry.host}": {"auth": auth}}}))
    creds = find_credentials(basic_registry.host)
    assert creds and creds.username == basic_registry.username
    client = RegistryClient(basic_registry.host, net=NetOptions(plain_http=True))
    client.ping()
    client.close()
    # REGISTRY_AUTH_FILE wins over DOCKER_CONFIG
    other = tmp_path / "auth.json"
    other.write_text(json.dumps({"auths": {basic_registry.host: {
        "username": "someone", "password": "else"}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(other))
    assert find_credentials(basic_registry.host).username == "someone"


def test_credential_helper_executable(basic_registry, tmp_path, kit_home, monkeypatch):
    """credHelpers and credsStore call a real docker-credential-* program (a script)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls.txt"
    helper = bindir / "docker-credential-kittest"
    helper.write_text(
        "#!/bin/sh\n"
        f"read server; echo \"$1 $server\" >> {calls}\n"
        f"if [ \"$server\" = \"{basic_registry.host}\" ]; then\n"
        f"  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{basic_registry.username}\","
        f"\"Secret\":\"{basic_registry.password}\"}}' \"$server\"\n"
        "else echo 'credentials not found in native keychain'; exit 1; fi\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    docker = Path(os.environ["DOCKER_CONFIG"])
    docker.mkdir(parents=True, exist_ok=True)
    (docker / "config.json").write_text(json.dumps(
        {"credHelpers": {basic_registry.host: "kittest"}}))
    client = RegistryClient(basic_registry.host, net=NetOptions(plain_http=True))
    client.ping()
    client.close()
    assert calls.read_text().split() == ["get", basic_registry.host]
    (docker / "config.json").write_text(json.dumps({"credsStore": "kittest"}))
    assert find_credentials(basic_registry.host).username == basic_registry.username
    assert find_credentials("elsewhere.example") is None


def test_token_auth_push_pull_and_token_reuse(token_registry, tmp_path, kit_home):
    store = Store(tmp_path / "s")
    ref = f"{token_registry.host}/team/tokens:v1"
    kit = build_modelkit(store, ref, seed="tok")
    store_credentials(token_registry.host, token_registry.username, token_registry.password)
    issuer = token_registry.token_issuer
    before = len(issuer.requests)
    push(ref, store=store, progress="none", **token_registry.net)
    used = len(issuer.requests) - before
    # one token for the push scope, one for the pull-only referrers listing at most
    assert 1 <= used <= 2, issuer.requests[before:]
    dst = Store(tmp_path / "d")
    assert pull(ref, store=dst, progress="none", **token_registry.net).digest == kit.digest
    for entry in issuer.requests[before:]:
        assert entry["ok"]
        assert all(s.startswith("repository:team/tokens:") for s in entry["scopes"])


def test_token_auth_wrong_password(token_registry, tmp_path, kit_home, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "not-the-password-xyz"
    store_credentials(token_registry.host, token_registry.username, secret)
    with pytest.raises(AuthError) as err:
        pull(f"{token_registry.host}/team/tokens:v1", store=Store(tmp_path / "d"),
             progress="none", **token_registry.net)
    assert "authentication failed" in str(err.value)
    assert secret not in str(err.value) and secret not in (err.value.fix or "")
    assert secret not in caplog.text


def test_token_auth_anonymous_is_refused(token_registry, tmp_path, kit_home):
    with pytest.raises(AuthError) as err:
        pull(f"{token_registry.host}/team/tokens:v1", store=Store(tmp_path / "d"),
             progress="none", **token_registry.net)
    assert "anonymous" in str(err.value)


def test_tls_registry_with_ca_bundle(tls_registry, tmp_path, kit_home):
    store = Store(tmp_path / "s")
    ref = f"{tls_registry.host}/team/tls:v1"
    kit = build_modelkit(store, ref, seed="tls")
    push(ref, store=store, progress="none", tls_cert=str(tls_registry.ca_path))
    dst = Store(tmp_path / "d")
    assert pull(ref, store=dst, progress="none", tls_verify=False).digest == kit.digest


def test_tls_unknown_ca_is_a_clear_error(tls_registry, tmp_path, kit_home):
    with pytest.raises(RegistryError) as err:
        pull(f"{tls_registry.host}/team/tls:v1", store=Store(tmp_path / "d"), progress="none")
    assert "certificate" in str(err.value)
    assert "--tls-cert" in (err.value.fix or "")


def test_mutual_tls_client_certificate(make_registry, tmp_path, kit_home):
    """distribution's http.tls.clientcas: the registry refuses clients without a cert."""
    server = make_registry(tls=True, client_ca=True)
    ca = server.extra["ca"]
    client_cert = ca.issue_cert("kitaudit-client")
    cert_path, key_path = tmp_path / "client.pem", tmp_path / "client.key"
    client_cert.cert_chain_pems[0].write_to_path(str(cert_path))
    client_cert.private_key_pem.write_to_path(str(key_path))
    store = Store(tmp_path / "s")
    ref = f"{server.host}/team/mtls:v1"
    build_modelkit(store, ref, seed="mtls")
    with pytest.raises(RegistryError):
        push(ref, store=store, progress="none", tls_cert=str(server.ca_path),
             max_attempts=1)
    push(ref, store=store, progress="none", tls_cert=str(server.ca_path),
         cert=str(cert_path), key=str(key_path))


def test_token_login_and_identity_token(token_registry, tmp_path, kit_home):
    """``login`` against a token registry; then docker's ``identitytoken`` credentials
    use the OAuth2 refresh-token grant."""
    login(token_registry.host, token_registry.username, token_registry.password,
          **token_registry.net)
    store = Store(tmp_path / "s")
    ref = f"{token_registry.host}/team/identity:v1"
    kit = build_modelkit(store, ref, seed="identity")
    push(ref, store=store, progress="none", **token_registry.net)
    logout(token_registry.host)
    token_registry.token_issuer.refresh_tokens["refresh-abc"] = token_registry.username
    docker = Path(os.environ["DOCKER_CONFIG"])
    docker.mkdir(parents=True, exist_ok=True)
    (docker / "config.json").write_text(json.dumps(
        {"auths": {token_registry.host: {"identitytoken": "refresh-abc"}}}))
    before = token_registry.token_issuer.refresh_grants
    got = pull(ref, store=Store(tmp_path / "d"), progress="none", **token_registry.net)
    assert got.digest == kit.digest
    assert token_registry.token_issuer.refresh_grants > before
