"""Fault injection through a loopback proxy in front of a real docker-registry: each
case ends in success with correct data, or a clear error with nothing corrupt stored."""

from __future__ import annotations

import time

import pytest

from kitaudit.errors import DigestMismatch, RegistryError
from kitaudit.registry import pull, push
from kitaudit.registry.transport import RetryBudget, backoff_delay, parse_retry_after
from kitaudit.store import Store
from tests.registry_fixtures import build_modelkit

pytestmark = pytest.mark.registry

BIG = 600_000


@pytest.fixture
def pushed(registry, tmp_path, kit_home):
    src = Store(tmp_path / "src")
    ref = f"{registry.host}/faults/kit:{tmp_path.name[-20:].replace('_', '-').strip('-')}"
    kit = build_modelkit(src, ref, seed=tmp_path.name, sizes={"model": BIG})
    push(ref, store=src, progress="none", **registry.net)
    return kit


def _proxy_ref(proxy, kit):
    return f"{proxy.host}/{kit.ref.split('/', 1)[1]}"


def _assert_complete(dst: Store, kit) -> None:
    for digest, data in kit.blobs.items():
        assert dst.blob_path(digest).read_bytes() == data
    assert [p for p in dst.ingest_dir.iterdir() if not p.name.endswith(".partial")] == []


def _assert_nothing_corrupt(dst: Store, kit) -> None:
    for digest, data in kit.blobs.items():
        if dst.has_blob(digest):
            assert dst.blob_path(digest).read_bytes() == data


def test_dropped_connection_mid_blob_resumes_with_range(registry, fault_proxy, pushed,
                                                        tmp_path):
    proxy = fault_proxy(registry)
    model = pushed.layers["model"]
    proxy.add("drop", path=f"/blobs/{model}", after=250_000)
    dst = Store(tmp_path / "dst")
    pull(_proxy_ref(proxy, pushed), store=dst, progress="none", **proxy.net)
    _assert_complete(dst, pushed)
    gets = [e for e in proxy.exchanges if e.method == "GET" and e.path.endswith(model)]
    assert len(gets) == 2
    assert gets[0].body_bytes == 250_000
    # the second request asked only for the rest
    assert gets[1].body_bytes == BIG - 250_000
    assert proxy.bytes_for(model) == BIG


def test_500_then_success(registry, fault_proxy, pushed, tmp_path):
    proxy = fault_proxy(registry)
    proxy.add("status", path=f"/blobs/{pushed.layers['model']}", status=500, times=2)
    dst = Store(tmp_path / "dst")
    pull(_proxy_ref(proxy, pushed), store=dst, progress="none", **proxy.net)
    _assert_complete(dst, pushed)


def test_429_retry_after_is_honoured(registry, fault_proxy, pushed, tmp_path):
    proxy = fault_proxy(registry)
    proxy.add("status", path="/manifests/", status=429, headers={"Retry-After": "1"})
    dst = Store(tmp_path / "dst")
    started = time.monotonic()
    pull(_proxy_ref(proxy, pushed), store=dst, progress="none", **proxy.net)
    assert time.monotonic() - started >= 1.0
    _assert_complete(dst, pushed)


def test_persistent_500_is_a_bounded_clear_error(registry, fault_proxy, pushed, tmp_path):
    proxy = fault_proxy(registry)
    proxy.add("status", path=f"/blobs/{pushed.layers['model']}", status=503, times=None)
    dst = Store(tmp_path / "dst")
    started = time.monotonic()
    with pytest.raises(RegistryError) as err:
        pull(_proxy_ref(proxy, pushed), store=dst, progress="none", max_attempts=3,
             **proxy.net)
    assert time.monotonic() - started < 10
    assert "503" in str(err.value) or "UNAVAILABLE" in str(err.value)
    assert not dst.has_blob(pushed.layers["model"])
    _assert_nothing_corrupt(dst, pushed)
    hits = [e for e in proxy.exchanges if e.path.endswith(pushed.layers["model"])]
    assert len(hits) == 3


def test_flipped_byte_is_refused_and_nothing_stored(registry, fault_proxy, pushed, tmp_path):
    proxy = fault_proxy(registry)
    model = pushed.layers["model"]
    proxy.add("flip", path=f"/blobs/{model}", at=1234, times=None)
    dst = Store(tmp_path / "dst")
    with pytest.raises(DigestMismatch):
        pull(_proxy_ref(proxy, pushed), store=dst, progress="none", **proxy.net)
    assert not dst.has_blob(model)
    assert list(dst.ingest_dir.iterdir()) == []
    _assert_nothing_corrupt(dst, pushed)
    # no tag points at an incomplete ModelKit
    assert dst.list_tags() == []
    # once the network is healthy again the pull succeeds
    proxy.clear()
    pull(_proxy_ref(proxy, pushed), store=dst, progress="none", **proxy.net)
    _assert_complete(dst, pushed)


def test_slow_registry_still_completes(registry, fault_proxy, pushed, tmp_path):
    proxy = fault_proxy(registry)
    proxy.add("slow", path=f"/blobs/{pushed.layers['model']}", delay=0.02)
    dst = Store(tmp_path / "dst")
    pull(_proxy_ref(proxy, pushed), store=dst, progress="none", **proxy.net)
    _assert_complete(dst, pushed)


def test_upload_retries_after_500_on_put(registry, fault_proxy, tmp_path, kit_home):
    proxy = fault_proxy(registry)
    src = Store(tmp_path / "src")
    ref = f"{proxy.host}/faults/upload:v1"
    kit = build_modelkit(src, ref, seed="upload-500")
    proxy.add("status", method="PUT", path=r"/blobs/uploads/", status=500, times=2)
    push(ref, store=src, progress="none", **proxy.net)
    dst = Store(tmp_path / "dst")
    pull(f"{registry.host}/faults/upload:v1", store=dst, progress="none", **registry.net)
    _assert_complete(dst, kit)


def test_unreachable_registry_fails_fast(tmp_path, kit_home):
    from tests.registry_fixtures import free_port

    started = time.monotonic()
    with pytest.raises(RegistryError) as err:
        pull(f"127.0.0.1:{free_port()}/x/y:z", store=Store(tmp_path / "d"), progress="none",
             plain_http=True, max_attempts=3)
    assert time.monotonic() - started < 10
    assert err.value.fix


def test_backoff_is_bounded_and_jittered():
    assert backoff_delay(0, rng=lambda: 1.0) == 0.25
    assert backoff_delay(10, rng=lambda: 1.0) == 8.0
    assert backoff_delay(3, rng=lambda: 0.0) == 0.0
    budget = RetryBudget(3, 100, sleep=lambda s: None)
    assert budget.next_delay() is not None
    assert budget.next_delay() is not None
    assert budget.next_delay() is None  # third attempt was the last
    budget = RetryBudget(10, 0.5)
    assert budget.next_delay(retry_after=5) is None  # Retry-After beyond the time bound


def test_retry_after_forms():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    when = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    assert when == 10.0
