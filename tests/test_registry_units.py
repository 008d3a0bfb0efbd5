"""Registry pieces that need no server: challenge and Link parsing, credentials lookup
order, endpoint mapping, loopback detection, net options, progress display."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kitaudit.errors import UsageError
from kitaudit.registry.auth import (
    config_paths,
    find_credentials,
    parse_challenge,
    remove_credentials,
    store_credentials,
)
from kitaudit.registry.client import _next_link, endpoints_from_env, is_loopback, needs_monolithic
from kitaudit.registry.transfer import Progress
from kitaudit.registry.transport import NetOptions

_token = st.text(alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd"),
                                        whitelist_characters="-_./:,"),
                 min_size=1, max_size=40)


@given(realm=_token, service=_token, scope=_token)
def test_parse_challenge_round_trip(realm, service, scope):
    header = f'Bearer realm="{realm}",service="{service}",scope="{scope}"'
    scheme, params = parse_challenge(header)
    assert scheme == "bearer"
    assert params == {"realm": realm, "service": service, "scope": scope}


@given(st.text(max_size=200))
def test_parse_challenge_never_crashes(text):
    scheme, params = parse_challenge(text)
    assert isinstance(scheme, str) and isinstance(params, dict)


def test_next_link_forms():
    def resp(link):
        return httpx.Response(200, headers={"Link": link} if link else {})

    assert _next_link(resp('</v2/a/tags/list?n=2&last=b>; rel="next"')) == \
        "/v2/a/tags/list?n=2&last=b"
    assert _next_link(resp("<https://x/y?p=2>; rel=next")) == "https://x/y?p=2"
    assert _next_link(resp('</a>; rel="prev", </b>; rel="next"')) == "/b"
    assert _next_link(resp(None)) is None


def test_lookup_order_and_login_file(tmp_path, monkeypatch):
    monkeypatch.setenv("KITAUDIT_HOME", str(tmp_path / "kh"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    paths = config_paths()
    assert paths == [tmp_path / "kh" / "credentials.json", tmp_path / "auth.json",
                     tmp_path / "dc" / "config.json", tmp_path / "home" / ".docker" /
                     "config.json"]
    (tmp_path / "home" / ".docker").mkdir(parents=True)
    auth = base64.b64encode(b"homeuser:homepass").decode()
    (tmp_path / "home" / ".docker" / "config.json").write_text(json.dumps(
        {"auths": {"https://index.docker.io/v1/": {"auth": auth},
                   "reg.example.com": {"identitytoken": "refresh-xyz"}}}))
    assert find_credentials("docker.io").username == "homeuser"
    tok = find_credentials("reg.example.com")
    assert tok.identity_token == "refresh-xyz" and "refresh-xyz" not in repr(tok)
    path = store_credentials("reg.example.com", "me", "pw")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert find_credentials("reg.example.com").username == "me"  # own file first
    assert remove_credentials("https://reg.example.com") is True
    assert find_credentials("reg.example.com").identity_token == "refresh-xyz"
    assert remove_credentials("reg.example.com") is False


def test_malformed_auth_entry_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("KITAUDIT_HOME", str(tmp_path))
    (tmp_path / "credentials.json").write_text(json.dumps(
        {"auths": {"r.example": {"auth": "bm9jb2xvbg=="}}}))  # "nocolon"
    from kitaudit.errors import AuthError

    with pytest.raises(AuthError) as err:
        find_credentials("r.example")
    assert "malformed" in str(err.value) and "nocolon" not in str(err.value)


def test_endpoint_mapping_and_loopback(monkeypatch):
    monkeypatch.setenv("KITAUDIT_REGISTRY_ENDPOINTS", "localhost=127.0.0.1:5000, a.b=c:1")
    assert endpoints_from_env() == {"localhost": "127.0.0.1:5000", "a.b": "c:1"}
    assert is_loopback("127.0.0.1:5000") and is_loopback("localhost")
    assert not is_loopback("registry.example.com:5000")
    assert needs_monolithic("ghcr.io") and needs_monolithic("x.dkr.ecr.eu-west-1.amazonaws.com")
    assert needs_monolithic("europe-docker.pkg.dev") and not needs_monolithic("quay.io")


def test_net_options():
    opts = NetOptions.from_kwargs(plain_http=True, concurrency=None)
    assert opts.plain_http and opts.concurrency == 5
    assert NetOptions.from_kwargs(net=opts, tls_verify=False).plain_http
    with pytest.raises(UsageError):
        NetOptions.from_kwargs(bogus=1)


def test_progress_modes(capsys):
    with Progress("plain") as prog:
        advance = prog.blob("abc model", 10)
        advance(10)
        prog.done("abc model", 10, "uploaded")
    assert "uploaded: abc model (10 B)" in capsys.readouterr().err
    with Progress("fancy") as prog:  # rich bars (written to stderr), must not fail
        advance = prog.blob("abc model", 100)
        advance(60)
        advance(40)
    with pytest.raises(UsageError):
        Progress("loud")


def test_httpx_cli_deferred_but_available():
    """Importing the registry client leaves httpx's own CLI (rich, pygments) unloaded, and
    the CLI still works when called (a fresh interpreter: the import state is global)."""
    code = (
        "import sys\n"
        "import kitaudit.registry.client\n"
        "import httpx\n"
        "assert 'httpx' in sys.modules\n"
        "assert 'rich.console' not in sys.modules, 'httpx CLI was imported'\n"
        "assert 'pygments' not in sys.modules\n"
        "from httpx._main import print_help\n"
        "assert 'rich.console' in sys.modules\n"
        "try:\n"
        "    httpx.main(['--help'])\n"
        "except SystemExit as err:\n"
        "    assert not err.code, err.code\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HTTPX" in out.stdout
