"""The JSON Schema (draft 2020-12) of ``report.json``, report schema version 1.

Documented field by field in ``docs/report.md``. Within version 1 keys are only ever
added (``additionalProperties`` stays open), never renamed, removed or retyped.
``python -m kitaudit.report.schema`` prints it.
"""

from __future__ import annotations

import json
from typing import Any

_STR = {"type": "string"}
_OSTR = {"type": ["string", "null"]}
_INT = {"type": "integer", "minimum": 0}
_OINT = {"type": ["integer", "null"], "minimum": 0}
_BOOL = {"type": "boolean"}
_DIGEST = {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}
_STRS = {"type": "array", "items": _STR}
_STATUS = {"enum": ["pass", "fail", "warn", "waived", "error"]}
_COUNTS = {"type": "object", "required": ["pass", "fail", "warn", "waived", "error"],
           "properties": {k: _INT for k in ("pass", "fail", "warn", "waived", "error")}}


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": sorted(required),
            "properties": {**required, **(optional or {})}}


_CONTROL = _obj({"framework": _STR, "ref": _STR}, {"framework_name": _STR})
_SUBJECT = _obj({"digest": _DIGEST, "repository": _OSTR, "tags": _STRS, "name": _STR,
                 "status": _STATUS, "reason": _STR},
                {"waiver": {"type": ["object", "null"]}})
_KIT_BRIEF = _obj({"digest": _DIGEST, "repository": _OSTR, "tags": _STRS, "name": _STR})
_RULE = _obj({"id": _STR, "description": _STR, "severity": {"enum": ["deny", "warn"]},
              "controls": {"type": "array", "items": _CONTROL}}, {"remediation": _STR})
_BASELINE = {"type": ["object", "null"], "required": ["kind", "label", "crawl_ids", "at"],
             "properties": {"kind": {"enum": ["crawl", "report", "none"]}, "label": _STR,
                            "crawl_ids": {"type": "array"}, "at": _OSTR, "path": _STR}}

REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://kitaudit.dev/schemas/compliance-report/v1.json",
    "title": "kitaudit compliance report",
    **_obj({
        "schema_version": {"const": 1},
        "kind": {"const": "kitaudit-compliance-report"},
        "title": _STR,
        "generated_at": {"type": "string", "format": "date-time"},
        "kitaudit_version": _STR,
        "database": _obj({"path": _STR, "schema_version": _INT}),
        "scope": _obj({
            "targets": _STRS, "repository_filter": _STRS, "target_filter": _OSTR,
            "repositories": _INT, "tags": _INT, "modelkits": _INT,
            "other_artifacts_tagged": _INT,
            "crawls": {"type": "array", "items": _obj({
                "id": _INT, "run_id": _OSTR, "target": _STR, "shard": _OSTR,
                "status": _STR, "started_at": _OSTR, "finished_at": _OSTR},
                {"kitaudit_version": _OSTR})},
        }),
        "period": _obj({"from": _OSTR, "to": _OSTR, "first_crawl_at": _OSTR,
                        "baseline": _BASELINE}),
        "policy_set": _obj({
            "policies": {"type": "array", "items": _obj({
                "name": _STR, "description": _STR, "source": _STR,
                "fingerprint": _OSTR, "evaluated_fingerprints": _STRS,
                "matches_database": {"type": ["boolean", "null"]},
                "rules": {"type": "array", "items": _RULE}})},
            "fingerprint": _OSTR, "version_note": _STR}),
        "trust": _obj({"crawls": {"type": "array", "items": _obj({
            "crawl_id": _INT, "target": _STR, "verify_fingerprint": _OSTR,
            "verified": _BOOL, "note": _STR, "keys": _STRS, "policies": _STRS,
            "certificate_identity": _OSTR, "certificate_identity_regexp": _OSTR,
            "certificate_oidc_issuer": _OSTR, "certificate_oidc_issuer_regexp": _OSTR,
            "trusted_root": _OSTR, "waivers": _OSTR}, {
            "key_ids": {"type": "array", "items": _obj(
                {"key_id": _OSTR, "hint": _OSTR}, {"name": _OSTR})},
            "policy_fingerprints": {"type": "array", "items": _obj(
                {"name": _OSTR, "fingerprint": _OSTR})},
            "trusted_root_digest": _OSTR, "waivers_digest": _OSTR,
            "identified": _BOOL})}, "note": _STR}),
        "controls_note": _STR,
        "frameworks": {"type": "object", "additionalProperties": _STR},
        "summary": _obj({
            "modelkits": _INT, "repositories": _INT, "tags": _INT, "signed": _INT,
            "unsigned": _INT, "signed_share": {"type": ["number", "null"]},
            "sbom_present": _INT, "sbom_signed": _INT, "sbom_valid": _INT,
            "policies": {"type": "array", "items": _obj({
                "policy": _STR, "pass": _INT, "warn": _INT, "deny": _INT,
                "not_evaluated": _INT, "passing": _INT})},
            "violations": _INT, "warnings": _INT, "waived": _INT,
            "modelkits_with_violations": _INT, "new_violations": _OINT,
            "resolved_violations": _OINT, "new_modelkits": _OINT, "crawl_errors": _INT}),
        "controls": {"type": "array", "items": _obj({
            "policy": _STR, "rule": _STR, "description": _STR,
            "severity": {"enum": ["deny", "warn", ""]}, "remediation": _STR,
            "controls": {"type": "array", "items": _CONTROL}, "counts": _COUNTS,
            "evaluated": _INT, "failing": {"type": "array", "items": _SUBJECT},
            "waived": {"type": "array", "items": _SUBJECT}})},
        "inventory": {"type": "array", "items": _obj({
            "digest": _DIGEST, "repository": _OSTR, "tags": _STRS, "name": _STR,
            "version": _STR, "signed": _BOOL,
            "signers": {"type": "array", "items": _obj({
                "kind": _OSTR, "identity": _OSTR, "issuer": _OSTR, "key_id": _OSTR,
                "text": _STR}, {"source": _OSTR})},
            "unverified_signatures": _INT,
            "licenses": _STRS, "licenses_source": {"enum": ["mlbom", "kitfile"]},
            "base_models": {"type": "array", "items": _obj({
                "reference": _OSTR, "digest": {"type": ["string", "null"]},
                "name": _OSTR, "source": _OSTR, "in_scope": _BOOL},
                {"depth": _OINT, "verified": {"type": ["boolean", "null"]}})},
            "datasets": {"type": "array", "items": _obj({
                "name": _OSTR, "path": _OSTR, "license": _OSTR, "layer_digest": _OSTR,
                "remote_path": _OSTR, "shared_with": _INT})},
            "sbom": _obj({"present": _BOOL, "verified": _BOOL,
                          "matches_manifest": {"type": ["boolean", "null"]},
                          "valid": _BOOL,
                          "completeness": {"type": ["number", "null"], "minimum": 0,
                                           "maximum": 1},
                          "spec_version": _OSTR, "digest": _OSTR}),
            "decision": _OSTR,
            "policies": {"type": "object", "additionalProperties": _obj({
                "status": {"enum": ["pass", "warn", "deny"]}, "counts": _COUNTS})},
        }, {"description": _STR, "created": _OSTR, "verify_error": _OSTR,
            "first_seen_crawl": _OINT, "last_seen_crawl": _OINT})},
        "changes": _obj({
            "baseline": _BASELINE,
            "new": {"type": "array", "items": _KIT_BRIEF},
            "removed": {"type": "array", "items": _KIT_BRIEF},
            "retagged": {"type": "array", "items": _obj({
                "repository": _STR, "tag": _STR, "from": _DIGEST, "to": _DIGEST})},
            "tags_added": {"type": "array", "items": _obj({
                "repository": _STR, "tag": _STR, "digest": _DIGEST})},
            "tags_removed": {"type": "array", "items": _obj({
                "repository": _STR, "tag": _STR, "digest": _DIGEST})},
            "newly_failing": {"type": "array", "items": {"allOf": [_SUBJECT, _obj(
                {"policy": _STR, "rule": _STR, "new_modelkit": _BOOL})]}},
            "newly_passing": {"type": "array", "items": {"allOf": [_SUBJECT, _obj(
                {"policy": _STR, "rule": _STR})]}},
        }, {"note": _STR}),
        "waivers": {"type": "array", "items": _obj({
            "rule": _STR, "policy": _OSTR, "repository": _OSTR, "digest": _OSTR,
            "reason": _STR, "owner": _STR, "expires": _STR,
            "status": {"enum": ["active", "expiring", "expired", "unknown"]},
            "days_left": {"type": ["integer", "null"]},
            "applied_to": {"type": "array"}, "expired_for": {"type": "array"}})},
        "lineage": _obj({
            "nodes": {"type": "array", "items": _obj({
                "id": _STR, "label": _STR, "digest": _OSTR,
                "kind": {"enum": ["modelkit", "out-of-scope", "external"]},
                "tags": _STRS, "signed": {"type": ["boolean", "null"]},
                "violations": _OINT}, {"reference": _OSTR})},
            "edges": {"type": "array", "items": _obj({
                "from": _STR, "to": _DIGEST, "source": _OSTR, "reference": _OSTR,
                "resolved": _BOOL})},
            "shared_datasets": {"type": "array", "items": _obj({
                "key": _STR, "name": _STR, "modelkits": {"type": "array",
                                                         "items": _DIGEST}})}}),
        "charts": _obj({
            "signing_coverage": {"type": "array", "items": _obj({
                "crawl_id": _INT, "at": _OSTR, "modelkits": _INT, "signed": _INT,
                "coverage": {"type": "number", "minimum": 0, "maximum": 1},
                "exact": _BOOL})},
            "violations_by_rule": {"type": "array", "items": _obj({
                "policy": _STR, "rule": _STR, "fail": _INT, "error": _INT, "warn": _INT,
                "waived": _INT})}}),
        "errors": {"type": "array", "items": _obj({
            "crawl_id": _INT, "repository": _OSTR, "reference": _OSTR, "digest": _OSTR,
            "stage": _OSTR, "status": _OINT, "error_type": _OSTR, "message": _OSTR,
            "at": _OSTR})},
        "not_recorded": _STRS,
    }),
}


def report_schema() -> dict[str, Any]:
    """A copy of :data:`REPORT_SCHEMA`."""
    return json.loads(json.dumps(REPORT_SCHEMA))


_VALIDATOR: Any = None


def validate_report(report: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``report`` does not follow the schema."""
    global _VALIDATOR
    if _VALIDATOR is None:
        import jsonschema

        cls = jsonschema.Draft202012Validator
        cls.check_schema(REPORT_SCHEMA)
        _VALIDATOR = cls(REPORT_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    _VALIDATOR.validate(report)


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(REPORT_SCHEMA, indent=2))
