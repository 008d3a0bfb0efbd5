"""pack --sign and push --sign: the signatures are made as the ModelKit is written and
travel with it to a real registry, where verify accepts them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kitaudit._cli import main
from kitaudit.verify import VerifyOptions, verify

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "churn-model"

pytestmark = pytest.mark.registry


def _run(*args: str, code: int = 0):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == code, (args, result.output)
    return result


def test_pack_sign_then_push_sign(registry, kit_home, tmp_path, monkeypatch):
    monkeypatch.setenv("KITAUDIT_PASSWORD", "pw")
    prefix = tmp_path / "cosign"
    _run("generate-key-pair", "--output-key-prefix", str(prefix))
    ref = f"{registry.host}/team/churn:challenger"

    packed = json.loads(_run("pack", str(EXAMPLE), "-t", ref, "--sign", "--key",
                             f"{prefix}.key", "--output", "json").stdout)
    assert len(packed["signed"]["attached"]) == 2
    _run("push", "--http", ref)
    options = VerifyOptions(keys=[f"{prefix}.pub"])
    remote = verify(ref, options, remote=True, net={"plain_http": True})
    assert remote.decision == "pass", remote.problems

    # a second kit signed at push time instead
    ref2 = f"{registry.host}/team/churn:beta"
    _run("pack", str(EXAMPLE), "-t", ref2)
    _run("push", "--http", ref2, "--sign", "--signing-key", f"{prefix}.key")
    assert verify(ref2, options, remote=True, net={"plain_http": True}).decision == "pass"

    # signing flags without --sign are a usage error, nothing pushed
    _run("push", "--http", ref2, "--signing-key", f"{prefix}.key", code=2)
