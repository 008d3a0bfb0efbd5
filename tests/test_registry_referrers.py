"""OCI referrers: the fallback tag index against real distribution 2.8 (which has no
referrers API), and the API path against the in-test proxy (tests/registry_fixtures.py
``FaultProxy(referrers_api=True)``), which implements the distribution-spec 1.1
"Listing Referrers" section on top of distribution: OCI-Subject on manifest PUT, an image
index answer with Content-Type checked by the client, artifactType filtering
(OCI-Filters-Applied) and Link pagination."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest

from kitaudit import mediatypes as mt
from kitaudit import referrers as refs
from kitaudit.errors import RegistryError
from kitaudit.registry import NetOptions, RegistryClient, pull, push
from kitaudit.store import Store
from tests.registry_fixtures import build_modelkit

pytestmark = pytest.mark.registry

SBOM_TYPE = "application/vnd.cyclonedx+json"
SIG_TYPE = mt.SIGSTORE_BUNDLE_V03


def _referrer(kit, artifact_type: str, payload: bytes, note: str) -> tuple[bytes, dict]:
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": kit.digest, "size": len(kit.raw)}
    raw = refs.referrer_manifest(subject, artifact_type,
                                 [{"mediaType": artifact_type, "digest": digest,
                                   "size": len(payload)}],
                                 annotations={"org.example.note": note})
    return raw, {digest: payload}


def _client(server) -> RegistryClient:
    return RegistryClient(server.host, net=NetOptions(plain_http=True))


@pytest.fixture
def remote_kit(registry, tmp_path, kit_home):
    src = Store(tmp_path / "src")
    ref = f"{registry.host}/refs/{tmp_path.name[:30].replace('_', '-').strip('-')}:v1"
    kit = build_modelkit(src, ref, seed=tmp_path.name)
    push(ref, store=src, progress="none", **registry.net)
    kit.store = src  # type: ignore[attr-defined]
    return kit


def _repo(kit) -> str:
    return kit.ref.split("/", 1)[1].rsplit(":", 1)[0]


def test_fallback_attach_and_list(registry, remote_kit):
    client = _client(registry)
    repo = _repo(remote_kit)
    sbom, sbom_blobs = _referrer(remote_kit, SBOM_TYPE, b'{"bomFormat":"CycloneDX"}', "sbom")
    sig, sig_blobs = _referrer(remote_kit, SIG_TYPE, b'{"mediaType":"bundle"}', "sig")
    assert refs.push_referrer(client, repo, sbom, sbom_blobs).method == "fallback"
    assert refs.push_referrer(client, repo, sig, sig_blobs).method == "fallback"
    # attaching the same referrer again adds no duplicate
    assert refs.push_referrer(client, repo, sig, sig_blobs).method == "present"
    found = refs.list_referrers(client, repo, remote_kit.digest)
    assert [d["digest"] for d in found] == [refs.descriptor_of(sbom)["digest"],
                                            refs.descriptor_of(sig)["digest"]]
    assert found[0]["artifactType"] == SBOM_TYPE
    assert found[0]["annotations"] == {"org.example.note": "sbom"}
    only_sigs = refs.list_referrers(client, repo, remote_kit.digest, artifact_type=SIG_TYPE)
    assert [d["artifactType"] for d in only_sigs] == [SIG_TYPE]
    # the fallback tag holds a proper OCI image index
    index = client.get_manifest(repo, refs.fallback_tag(remote_kit.digest))
    assert index.media_type == mt.OCI_INDEX
    assert json.loads(index.raw)["schemaVersion"] == 2
    client.close()


def test_referrers_api_path_with_pagination(registry, fault_proxy, remote_kit):
    proxy = fault_proxy(registry, referrers_api=True, page_size=2)
    client = _client(proxy)
    repo = _repo(remote_kit)
    digests = []
    for i in range(3):
        raw, blobs = _referrer(remote_kit, SIG_TYPE if i else SBOM_TYPE,
                               f'{{"n":{i}}}'.encode(), f"r{i}")
        assert refs.push_referrer(client, repo, raw, blobs).method == "api"
        digests.append(refs.descriptor_of(raw)["digest"])
    # no fallback tag was written
    assert not [e for e in proxy.exchanges if "/manifests/sha256-" in e.path and
                e.method == "PUT"]
    found = refs.list_referrers(client, repo, remote_kit.digest)
    assert [d["digest"] for d in found] == digests
    pages = [e for e in proxy.exchanges if "/referrers/" + remote_kit.digest in e.path]
    assert len(pages) == 2  # 3 entries, 2 per page: the Link was followed
    sigs = refs.list_referrers(client, repo, remote_kit.digest, artifact_type=SIG_TYPE)
    assert [d["digest"] for d in sigs] == digests[1:]
    assert all(d["annotations"]["org.example.note"].startswith("r") for d in found)
    client.close()


def test_oci_subject_header_without_api_uses_fallback(registry, fault_proxy, remote_kit):
    """ECR's behaviour: OCI-Subject answered, but no referrers API: the probe catches it."""
    proxy = fault_proxy(registry, subject_header_only=True)
    client = _client(proxy)
    repo = _repo(remote_kit)
    raw, blobs = _referrer(remote_kit, SBOM_TYPE, b"{}x", "ecr")
    assert refs.push_referrer(client, repo, raw, blobs).method == "fallback"
    assert [d["digest"] for d in refs.list_referrers(client, repo, remote_kit.digest)] == \
        [refs.descriptor_of(raw)["digest"]]
    client.close()


def test_concurrent_attachers_with_if_match_lose_nothing(registry, fault_proxy, remote_kit):
    proxy = fault_proxy(registry, if_match=True)
    repo = _repo(remote_kit)
    n = 8
    manifests = [_referrer(remote_kit, SIG_TYPE, f"sig-{i}".encode(), f"c{i}")
                 for i in range(n)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def attach(i: int) -> None:
        client = _client(proxy)
        try:
            raw, blobs = manifests[i]
            for digest, data in blobs.items():
                client.upload_bytes(repo, data)
            client.upload_bytes(repo, mt.OCI_EMPTY_DATA)
            barrier.wait()
            refs.push_referrer(client, repo, raw, blobs)
        except BaseException as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=attach, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    client = _client(registry)
    found = {d["digest"] for d in refs.list_referrers(client, repo, remote_kit.digest)}
    assert found == {refs.descriptor_of(raw)["digest"] for raw, _ in manifests}
    # the proxy did refuse stale writes: the If-Match path was exercised
    assert any(e.status == 412 for e in proxy.exchanges)
    client.close()


def test_fallback_tag_that_is_not_an_index_is_an_error(registry, remote_kit):
    client = _client(registry)
    repo = _repo(remote_kit)
    # put a plain manifest under the fallback tag
    client.put_manifest(repo, refs.fallback_tag(remote_kit.digest), remote_kit.raw)
    with pytest.raises(RegistryError) as err:
        refs.list_referrers(client, repo, remote_kit.digest)
    assert "not an image index" in str(err.value)
    client.close()


def test_push_and_pull_carry_local_referrers(registry, tmp_path, kit_home):
    src = Store(tmp_path / "src")
    ref = f"{registry.host}/refs/carry:v1"
    kit = build_modelkit(src, ref, seed="carry")
    raw, blobs = _referrer(kit, SBOM_TYPE, b'{"bomFormat":"CycloneDX","n":1}', "local")
    ref_digest = refs.attach_local(src, raw, blobs)
    res = push(ref, store=src, progress="none", **registry.net)
    assert res.referrers == [ref_digest]
    dst = Store(tmp_path / "dst")
    got = pull(ref, store=dst, progress="none", **registry.net)
    assert got.referrers == [ref_digest]
    listed = refs.local_referrers(dst, kit.digest)
    assert [d["digest"] for d in listed] == [ref_digest]
    assert listed[0]["artifactType"] == SBOM_TYPE
    for digest, data in blobs.items():
        assert dst.blob_path(digest).read_bytes() == data
    # --no-referrers
    dst2 = Store(tmp_path / "dst2")
    assert pull(ref, store=dst2, progress="none", referrers=False, **registry.net).referrers \
        == []
    assert refs.local_referrers(dst2, kit.digest) == []


def test_list_remote_referrers_by_tag(registry, remote_kit):
    client = _client(registry)
    repo = _repo(remote_kit)
    raw, blobs = _referrer(remote_kit, SBOM_TYPE, b"sbom!", "tagged")
    refs.push_referrer(client, repo, raw, blobs)
    client.close()
    subject, found = refs.list_remote_referrers(remote_kit.ref, **registry.net)
    assert subject == remote_kit.digest
    assert [d["digest"] for d in found] == [refs.descriptor_of(raw)["digest"]]


def test_pull_skips_a_listed_referrer_that_is_gone(registry, remote_kit, tmp_path, caplog):
    client = _client(registry)
    repo = _repo(remote_kit)
    raw, blobs = _referrer(remote_kit, SIG_TYPE, b"gone", "gone")
    digest = refs.push_referrer(client, repo, raw, blobs).digest
    client.delete_manifest(repo, digest)
    client.close()
    dst = Store(tmp_path / "gone")
    res = pull(remote_kit.ref, store=dst, progress="none", **registry.net)
    assert res.digest == remote_kit.digest and res.referrers == []
    assert "skipping referrer" in caplog.text
