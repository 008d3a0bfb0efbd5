"""Finding ModelKit references in admission objects, AdmissionReview parsing and
responses, and the positive-only cache (pure functions: no server here)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitaudit.admission.cache import CacheKey, ResultCache
from kitaudit.admission.extract import ImageMatcher, extract, normalise_image
from kitaudit.admission.review import (
    MalformedReview,
    Outcome,
    build_response,
    parse_review,
)
from kitaudit.admission.verifier import Verdict

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _refs(ex):
    return [(f.reference, f.source, f.path) for f in ex.references]


def kitops_pod(ref: str = "registry.example/team/model:v1") -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ml"},
            "spec": {
                "initContainers": [{
                    "name": "kitops-init", "image": "ghcr.io/kitops-ml/kitops-init:v1",
                    "env": [{"name": "MODELKIT_REF", "value": ref},
                            {"name": "UNPACK_PATH", "value": "/home/user/modelkit"}]}],
                "containers": [{"name": "app", "image": "python:3.12",
                                "args": ["serve", "--model", "/home/user/modelkit"]}]}}


def test_kitops_init_container_modelkit_ref():
    ex = extract(kitops_pod(), "Pod")
    assert _refs(ex) == [("registry.example/team/model:v1", "modelkit-ref-env",
                          "spec.initContainers[0].env[0].value")]
    assert ex.problems == []


def test_modelkit_ref_with_scheme_and_without_tag():
    ex = extract(kitops_pod("kit://registry.example/team/model"), "Pod")
    assert _refs(ex) == [("registry.example/team/model:latest", "kit-uri",
                          "spec.initContainers[0].env[0].value")]


def test_kit_uris_in_args_command_and_env():
    pod = {"spec": {"containers": [{
        "name": "c", "image": "busybox",
        "command": ["run", "kit://r.example:5000/a/b@" + D1],
        "args": ["--model=kit://r.example/team/m2:v2,", "--x='kit://r.example/q/r:1'."],
        "env": [{"name": "MODEL", "value": "uri kit://r.example/e/f:tag;"}]}]}}
    ex = extract(pod, "Pod")
    assert sorted(r[0] for r in _refs(ex)) == sorted([
        "r.example:5000/a/b@" + D1, "r.example/team/m2:v2", "r.example/q/r:1",
        "r.example/e/f:tag"])
    assert {f.path for f in ex.references} == {
        "spec.containers[0].command[1]", "spec.containers[0].args[0]",
        "spec.containers[0].args[1]", "spec.containers[0].env[0].value"}
    assert ex.problems == []


def test_modelkit_ref_value_from_is_a_problem():
    pod = kitops_pod()
    pod["spec"]["initContainers"][0]["env"][0] = {
        "name": "MODELKIT_REF", "valueFrom": {"configMapKeyRef": {"name": "m", "key": "ref"}}}
    ex = extract(pod, "Pod")
    assert ex.references == []
    assert len(ex.problems) == 1 and "valueFrom" in ex.problems[0]
    assert ex.problems[0].startswith("spec.initContainers[0].env[0]")


def test_invalid_kit_reference_is_a_problem():
    isvc = {"spec": {"predictor": {"sklearn": {"storageUri": "kit://Registry.Example/Bad"}}}}
    ex = extract(isvc, "InferenceService")
    assert ex.references == []
    assert ex.problems and "spec.predictor.sklearn.storageUri" in ex.problems[0]
    assert "not a valid ModelKit reference" in ex.problems[0]


@pytest.mark.parametrize("component", ["model", "sklearn", "pytorch", "huggingface"])
def test_inferenceservice_storage_uri(component):
    isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "spec": {"predictor": {component: {"modelFormat": {"name": "sklearn"},
                                               "storageUri": "kit://r.example/m/iris:v1"}}}}
    ex = extract(isvc, "InferenceService")
    assert _refs(ex) == [("r.example/m/iris:v1", "kit-uri",
                          f"spec.predictor.{component}.storageUri")]


def test_inferenceservice_inline_containers_and_transformer():
    isvc = {"spec": {
        "predictor": {"containers": [{"name": "kserve-container", "image": "srv:1",
                                      "env": [{"name": "MODELKIT_REF",
                                               "value": "r.example/m/a:1"}]}]},
        "transformer": {"containers": [{"name": "t", "image": "t:1",
                                        "args": ["kit://r.example/m/b:1"]}]}}}
    ex = extract(isvc, "InferenceService")
    assert sorted(_refs(ex)) == [
        ("r.example/m/a:1", "modelkit-ref-env", "spec.predictor.containers[0].env[0].value"),
        ("r.example/m/b:1", "kit-uri", "spec.transformer.containers[0].args[0]")]


def test_other_storage_uris_are_ignored():
    isvc = {"spec": {"predictor": {"model": {"storageUri": "s3://bucket/model"}}}}
    assert extract(isvc, "InferenceService").references == []
    assert extract({"spec": {"predictor": {"model": {"storageUri": "oci://r.example/m:1"}}}},
                   "InferenceService").references == []


def test_images_only_when_configured():
    pod = {"spec": {"containers": [{"name": "c", "image": "models.example/llm/x:1"},
                                   {"name": "d", "image": "nginx"}],
                    "volumes": [{"name": "v", "image": {"reference": "models.example/llm/w@" + D1}},
                                {"name": "e", "emptyDir": {}}]}}
    assert extract(pod, "Pod").references == []
    ex = extract(pod, "Pod", images=ImageMatcher(["models.example/**"]))
    assert _refs(ex) == [
        ("models.example/llm/x:1", "image", "spec.containers[0].image"),
        ("models.example/llm/w@" + D1, "image-volume", "spec.volumes[0].image.reference")]
    ex = extract(pod, "Pod", images=ImageMatcher(["docker.io/library/*"]))
    assert _refs(ex) == [("docker.io/library/nginx:latest", "image", "spec.containers[1].image")]


def test_image_pattern_segments():
    m = ImageMatcher(["models.example/team/*"])
    assert m.matches("models.example/team/a:1") == "models.example/team/a:1"
    assert m.matches("models.example/team/sub/a:1") is None
    assert m.matches("models.example:443/team/a") is None
    assert ImageMatcher(["localhost:5000/**"]).matches("localhost:5000/a/b") == \
        "localhost:5000/a/b:latest"


def test_normalise_image():
    assert normalise_image("ubuntu") == "docker.io/library/ubuntu:latest"
    assert normalise_image("org/app:1") == "docker.io/org/app:1"
    assert normalise_image("r.example:5000/app") == "r.example:5000/app:latest"
    assert normalise_image("r.example/app@" + D1) == "r.example/app@" + D1
    assert normalise_image("  ") is None


def test_pod_templates_of_workloads():
    tmpl = kitops_pod()["spec"]
    dep = {"spec": {"template": {"spec": tmpl}}}
    assert _refs(extract(dep, "Deployment"))[0][2] == \
        "spec.template.spec.initContainers[0].env[0].value"
    cron = {"spec": {"jobTemplate": {"spec": {"template": {"spec": tmpl}}}}}
    assert _refs(extract(cron, "CronJob"))[0][2] == \
        "spec.jobTemplate.spec.template.spec.initContainers[0].env[0].value"


def test_duplicates_are_reported_once():
    pod = kitops_pod("r.example/m/a:1")
    pod["spec"]["containers"][0]["args"] = ["kit://r.example/m/a:1"]
    ex = extract(pod, "Pod")
    assert ex.unique_references() == ["r.example/m/a:1"]
    assert len(ex.paths_of("r.example/m/a:1")) == 2


def test_odd_shapes_do_not_crash():
    for obj in (None, [], "x", {"spec": None}, {"spec": {"containers": "x"}},
                {"spec": {"containers": [None, 1, {"env": "x"}, {"env": [None, {"name": 1}]}]}},
                {"spec": {"volumes": [{"image": None}, {"image": {"reference": 5}}]}}):
        ex = extract(obj, "Pod", images=ImageMatcher(["**"]))
        assert ex.references == [] and ex.problems == []


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_kit_uri_scanner_never_raises_and_yields_canonical(text):
    from kitaudit.admission.extract import canonical_reference

    ex = extract({"spec": {"containers": [{"args": [text, "kit://" + text]}]}}, "Pod")
    for f in ex.references:
        assert canonical_reference(f.reference) == f.reference
    for p in ex.problems:
        assert "\n" not in p  # one line each


# ---------------------------------------------------------------------- review
def _review(**req):
    base = {"uid": "u-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "operation": "CREATE", "namespace": "ml", "name": "p", "object": kitops_pod()}
    base.update(req)
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": base}).encode()


def test_parse_review():
    r = parse_review(_review())
    assert (r.uid, r.operation, r.kind, r.namespace, r.name) == ("u-1", "CREATE", "Pod", "ml", "p")
    obj = kitops_pod()
    obj["metadata"] = {"generateName": "server-7d9f-", "namespace": "ml"}
    assert parse_review(_review(name="", object=obj)).name == "server-7d9f-*"


@pytest.mark.parametrize("body, message", [
    (b"not json", "not JSON"),
    (b"[]", "not a JSON object"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                 "request": {}}).encode(), "apiVersion"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}).encode(), "kind"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
     "request is missing"),
    (_review(uid=None), "request.uid"),
    (_review(operation="PATCH"), "request.operation"),
    (_review(kind="Pod"), "request.kind"),
    (_review(object=None), "request.object"),
    (_review(operation="UPDATE"), "request.oldObject"),
])
def test_malformed_reviews(body, message):
    with pytest.raises(MalformedReview, match=message):
        parse_review(body)


def test_build_response():
    resp = build_response("abc", Outcome(False, "denied: x", warnings=["w" * 300]))
    assert resp["apiVersion"] == "admission.k8s.io/v1" and resp["kind"] == "AdmissionReview"
    r = resp["response"]
    assert r["uid"] == "abc" and r["allowed"] is False
    assert r["status"]["code"] == 403 and r["status"]["message"] == "denied: x"
    assert len(r["warnings"][0]) == 256
    ok = build_response("abc", Outcome(True))["response"]
    assert ok == {"uid": "abc", "allowed": True}
    many = build_response("abc", Outcome(True, warnings=[str(i) for i in range(50)]))
    assert len(many["response"]["warnings"]) == 20
    assert many["response"]["warnings"][-1] == "... and 31 more"


# ---------------------------------------------------------------------- cache
def test_cache_stores_only_clean_passes():
    now = [100.0]
    cache = ResultCache(ttl=10, clock=lambda: now[0])
    key = CacheKey("r/a:1", D1, "p", "t")
    assert not cache.put(key, Verdict("r/a:1", "deny", D1, failures=("x/y: no",)))
    assert not cache.put(key, Verdict("r/a:1", "error", D1, problems=("down",)))
    assert not cache.put(key, Verdict("r/a:1", "pass", D1, warnings=("x/w: warn",),
                                      fully_verified=False))
    assert not cache.put(key, Verdict("r/a:1", "pass", D1, fully_verified=False))
    # a pass of another digest than the key's
    assert not cache.put(key, Verdict("r/a:1", "pass", D2, fully_verified=True))
    assert len(cache) == 0 and cache.get(key) is None
    good = Verdict("r/a:1", "pass", D1, fully_verified=True)
    assert cache.put(key, good)
    assert cache.get(key) is good
    assert cache.get(CacheKey("r/a:1", D1, "p2", "t")) is None
    assert cache.get(CacheKey("r/b:1", D1, "p", "t")) is None
    now[0] += 10.5
    assert cache.get(key) is None and len(cache) == 0


def test_cache_ttl_zero_and_bound():
    key = CacheKey("r/a:1", D1, "p", "t")
    assert not ResultCache(ttl=0).put(key, Verdict("r/a:1", "pass", D1, fully_verified=True))
    cache = ResultCache(ttl=10, max_entries=2)
    keys = [CacheKey(f"r/a:{i}", D1, "p", "t") for i in range(3)]
    for k in keys:
        cache.put(k, Verdict(k.reference, "pass", D1, fully_verified=True))
    assert len(cache) == 2 and cache.get(keys[0]) is None


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) |
    st.sampled_from(["kit://r.example/m/a:1", "MODELKIT_REF", "kit://", "CREATE", "Pod"]),
    lambda children: st.lists(children, max_size=4) |
    st.dictionaries(st.sampled_from(["spec", "containers", "initContainers", "env", "name",
                                     "value", "valueFrom", "image", "volumes", "args",
                                     "predictor", "model", "storageUri", "template",
                                     "uid", "x"]), children, max_size=5),
    max_leaves=25)


@settings(max_examples=150, deadline=None)
@given(_json)
def test_parse_review_only_raises_malformed(value):
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": value}).encode()
    try:
        parse_review(body)
    except MalformedReview as err:
        assert "\n" not in str(err)


@settings(max_examples=150, deadline=None)
@given(_json, st.sampled_from(["Pod", "InferenceService", "Deployment", "CronJob", "X"]))
def test_extract_any_shape(obj, kind):
    ex = extract({"spec": obj}, kind, images=ImageMatcher(["**"]))
    for f in ex.references:
        assert f.path.startswith("spec")
