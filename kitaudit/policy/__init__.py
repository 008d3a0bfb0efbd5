"""CEL policies over a documented input document, with waivers, unit tests and lint.

Typical use::

    from kitaudit.policy import load_policies, load_waivers, evaluate
    policies = load_policies(["policies/baseline.yaml"], params={"allowed_licenses": "MIT"})
    report = evaluate(policies, input_doc, waivers=load_waivers("policies/waivers.yaml"))
    report.decision        # "pass" | "warn" | "deny"

The input document is described in docs/policy.md (``normalize_input`` fills defaults).
"""

from __future__ import annotations

from kitaudit.policy.evaluate import evaluate, evaluate_normalized
from kitaudit.policy.inputdoc import (
                                     INPUT_SCHEMA_VERSION,
                                     empty_input,
                                     normalize_input,
                                     to_json_document,
)
from kitaudit.policy.loader import (
                                     PolicyFileError,
                                     apply_params,
                                     load_policies,
                                     load_policy,
                                     loads_policy,
                                     parse_param_args,
)
from kitaudit.policy.model import Control, Policy, PolicyReport, Rule, RuleResult, Waiver
from kitaudit.policy.waivers import load_waivers, loads_waivers

__all__ = [
    "INPUT_SCHEMA_VERSION", "Control", "Policy", "PolicyFileError", "PolicyReport", "Rule",
    "RuleResult", "Waiver", "apply_params", "empty_input", "evaluate", "evaluate_normalized",
    "load_policies", "load_policy", "load_waivers", "loads_policy", "loads_waivers",
    "normalize_input", "parse_param_args", "to_json_document",
]
