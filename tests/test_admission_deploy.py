"""The manifests in deploy/admission/ are consistent with the webhook: the settings
the Kubernetes docs require for a validating webhook, and container args that
``kitaudit admission serve`` accepts."""

from __future__ import annotations

import glob
from pathlib import Path

import click
import yaml

from kitaudit._cli.admission import serve_cmd

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "admission"


def _docs() -> dict[str, dict]:
    out = {}
    for f in sorted(glob.glob(str(DEPLOY / "*.yaml"))):
        for doc in yaml.safe_load_all(Path(f).read_text()):
            assert doc is not None, f"{f}: empty document"
            out[doc["kind"]] = doc
    return out


def test_webhook_configuration():
    vwc = _docs()["ValidatingWebhookConfiguration"]
    (hook,) = vwc["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert 1 <= hook["timeoutSeconds"] <= 30
    svc = hook["clientConfig"]["service"]
    assert (svc["name"], svc["namespace"], svc["path"]) == \
        ("kitaudit-webhook", "kitaudit-system", "/validate")
    (expr,) = hook["namespaceSelector"]["matchExpressions"]
    assert expr["key"] == "kubernetes.io/metadata.name" and expr["operator"] == "NotIn"
    assert {"kube-system", "kitaudit-system"} <= set(expr["values"])
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r for r in hook["rules"]}
    for key in ((("",), ("pods",)), (("serving.kserve.io",), ("inferenceservices",))):
        assert sorted(rules[key]["operations"]) == ["CREATE", "UPDATE"]


def test_deployment_args_are_accepted_and_deadline_below_timeout():
    docs = _docs()
    hook = docs["ValidatingWebhookConfiguration"]["webhooks"][0]
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[:2] == ["admission", "serve"]
    known = {opt for p in serve_cmd.params if isinstance(p, click.Option) for opt in p.opts}
    flags = {a.split("=", 1)[0] for a in args[2:]}
    assert flags <= known, flags - known
    values = dict(a.split("=", 1) for a in args[2:])
    assert float(values["--timeout"]) < hook["timeoutSeconds"]
    assert values["--failure-policy"] == "deny" and values["--mode"] == "enforce"
    # the serving certificate comes from the Secret the Certificate writes
    cert = docs["Certificate"]["spec"]
    vols = {v["name"]: v for v in docs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert vols["tls"]["secret"]["secretName"] == cert["secretName"]
    assert "kitaudit-webhook.kitaudit-system.svc" in cert["dnsNames"]
    port = container["ports"][0]["containerPort"]
    assert values["--port"] == str(port)
    svc = docs["Service"]["spec"]["ports"][0]
    assert svc["port"] == hook["clientConfig"]["service"]["port"] == 443


def test_parse_args_with_click():
    """The args parse (files replaced by ones that exist)."""
    docs = _docs()
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    args = []
    for a in container["args"][2:]:
        flag, _, value = a.partition("=")
        if value.startswith("/etc/"):
            value = __file__
        args.append(f"{flag}={value}")
    ctx = serve_cmd.make_context("serve", args)
    assert ctx.params["timeout"] == 8.0 and ctx.params["keys"] == (__file__,)
