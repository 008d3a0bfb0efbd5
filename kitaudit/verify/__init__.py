"""``kitaudit verify``: signatures, the signed ML-BOM and policies in one fail-closed pass.

Typical use::

    from kitaudit.verify import VerifyOptions, compile_options, verify
    opts = VerifyOptions(keys=["cosign.pub"], policies=["policies/baseline.yaml"])
    compiled = compile_options(opts)              # once: keys, trust root, policies
    res = verify("registry.example/team/model:v1", compiled=compiled, remote=True)
    res.decision, res.exit_code, res.to_dict()    # "pass" | "deny" | "error", 0/1/2

Callers must treat ``error`` (exit 2, could not decide) as a denial. See docs/verify.md.
"""

from __future__ import annotations

from kitaudit.verify.core import decide, verify, verify_fetched
from kitaudit.verify.discover import FetchedReferrer, Subject, discover
from kitaudit.verify.options import CompiledOptions, VerifyOptions, compile_options
from kitaudit.verify.result import SCHEMA_VERSION, VerifyResult

__all__ = [
    "SCHEMA_VERSION", "CompiledOptions", "FetchedReferrer", "Subject", "VerifyOptions",
    "VerifyResult", "compile_options", "decide", "discover", "verify", "verify_fetched",
]
