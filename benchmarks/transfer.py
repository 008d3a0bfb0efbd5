"""Transfer benchmark against a local docker-registry (one run, prints ratios).

    .venv/bin/python benchmarks/transfer.py [--size-mib 1024] [--big-mib 4096] [--skip-big]

Measures, on loopback:
* push and pull of a ModelKit of ``--size-mib`` (4 equal layers) with kitaudit, against
  ``curl`` PUT/GET of the same bytes (4 curl processes in parallel, like kitaudit's
  concurrency) and against ``skopeo copy`` of the same artifact;
* re-push of the unchanged ModelKit;
* bytes on the wire for ``pull --filter model`` vs the sum of the selected blobs (counted
  by the test proxy from tests/registry_fixtures.py);
* peak RSS of a ``kitaudit push`` process pushing one ``--big-mib`` layer.

Targets (issue 3): push and pull <= 1.15x curl and faster than skopeo; unchanged
re-push <= 0.3 s; filtered-pull bytes ratio 1.00; RSS <= 150 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kitaudit.registry import pull, push  # noqa: E402
from kitaudit.store import Store  # noqa: E402
from tests.registry_fixtures import FaultProxy, start_registry  # noqa: E402

MIB = 1 << 20


def _fill(store: Store, size: int, seed: int) -> tuple[str, int]:
    """A pseudo-random blob of ``size`` bytes written straight into the store."""
    block = hashlib.sha256(str(seed).encode()).digest()
    chunk = bytearray(os.urandom(4 * MIB))
    chunk[:32] = block
    written = 0
    with store.blob_writer() as w:
        while written < size:
            n = min(len(chunk), size - written)
            chunk[0:8] = written.to_bytes(8, "big")
            w.write(bytes(chunk[:n]))
            written += n
    assert w.digest is not None
    return w.digest, size


def build_kit(store: Store, ref: str, total: int, layers: int = 4) -> dict:
    descs = []
    entries = []
    for i in range(layers):
        digest, size = _fill(store, total // layers, i)
        kind = "model" if i == 0 else "dataset"
        descs.append({"mediaType": f"application/vnd.kitops.modelkit.{kind}.v1.raw",
                      "digest": digest, "size": size,
                      "annotations": {"org.cncf.model.filepath": f"f{i}.bin"}})
        entries.append({"name": f"l{i}", "path": f"f{i}.bin", "digest": digest})
    config = {"manifestVersion": "1.0.0", "package": {"name": "bench"},
              "model": entries[0], "datasets": entries[1:]}
    cfg = json.dumps(config).encode()
    cfg_digest = store.put_blob(cfg)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.kitops.modelkit.manifest.v1+json",
                "config": {"mediaType": "application/vnd.kitops.modelkit.config.v1+json",
                           "digest": cfg_digest, "size": len(cfg)},
                "layers": descs}
    raw = json.dumps(manifest).encode()
    store.put_manifest(raw, tags=[ref])
    return manifest


def _curl_push(host: str, repo: str, store: Store, descs: list[dict]) -> float:
    def one(d: dict) -> None:
        out = subprocess.run(["curl", "-sS", "-X", "POST", "-D", "-", "-o", "/dev/null",
                              f"http://{host}/v2/{repo}/blobs/uploads/"],
                             capture_output=True, text=True, check=True).stdout
        loc = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                   if line.lower().startswith("location:"))
        sep = "&" if "?" in loc else "?"
        # -T streams the file (--data-binary @file would read it into memory first)
        subprocess.run(["curl", "-sS", "-f", "-X", "PUT", "-H",
                        "Content-Type: application/octet-stream", "-H", "Expect:",
                        "-T", str(store.blob_path(d["digest"])), "-o", "/dev/null",
                        f"{loc}{sep}digest={d['digest']}"], check=True)

    os.sync()
    started = time.perf_counter()
    with ThreadPoolExecutor(len(descs)) as pool:
        list(pool.map(one, descs))
    return time.perf_counter() - started


def _curl_pull(host: str, repo: str, descs: list[dict], outdir: Path) -> tuple[float, float]:
    outdir.mkdir(parents=True, exist_ok=True)

    def one(d: dict) -> None:
        subprocess.run(["curl", "-sS", "-f", "-o", str(outdir / d["digest"][7:]),
                        f"http://{host}/v2/{repo}/blobs/{d['digest']}"], check=True)

    os.sync()
    started = time.perf_counter()
    with ThreadPoolExecutor(len(descs)) as pool:
        list(pool.map(one, descs))
    curl_only = time.perf_counter() - started
    os.sync()  # kitaudit fsyncs what it stores; report curl's figure with and without
    return curl_only, time.perf_counter() - started


def _timed(fn) -> float:
    os.sync()  # every phase starts with no dirty pages left by the previous one
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _rss_push(host: str, home: Path, ref: str) -> float:
    """Peak RSS (MB) of a separate ``kitaudit push`` process (measured by a wrapper
    process, so that curl's and skopeo's memory does not count)."""
    env = {**os.environ, "KITAUDIT_HOME": str(home)}
    exe = Path(sys.executable).parent / "kitaudit"
    wrapper = ("import resource, subprocess, sys; "
               "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, str(exe), "push", "--plain-http",
                          "--progress", "none", ref], env=env, check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--big-mib", type=int, default=4096)
    ap.add_argument("--skip-big", action="store_true")
    args = ap.parse_args()
    if not shutil.which("curl"):
        sys.exit("curl is needed")
    work = Path(tempfile.mkdtemp(prefix="kitaudit-bench-"))
    server = start_registry(work / "registry")
    results: dict[str, float] = {}
    try:
        host = server.host
        store = Store(work / "home" / "store")
        ref = f"{host}/bench/kit:v1"
        print(f"building a {args.size_mib} MiB ModelKit (4 layers)...", flush=True)
        manifest = build_kit(store, ref, args.size_mib * MIB)
        descs = [manifest["config"], *manifest["layers"]]
        net = {"plain_http": True}

        t_push = _timed(lambda: push(ref, store=store, progress="none", **net))
        t_curl_push = _curl_push(host, "bench/curl", store, manifest["layers"])
        t_skopeo_push = _timed(lambda: subprocess.run(
            ["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false",
             f"oci:{store.root}:{ref}", f"docker://{host}/bench/skopeo:v1"],
            check=True, capture_output=True)) if shutil.which("skopeo") else float("nan")
        t_repush = _timed(lambda: push(ref, store=store, progress="none", **net))

        dst = Store(work / "pull" / "store")
        t_pull = _timed(lambda: pull(ref, store=dst, progress="none", **net))
        t_curl_pull, t_curl_pull_sync = _curl_pull(host, "bench/kit", descs,
                                                   work / "curl-out")
        t_skopeo_pull = _timed(lambda: subprocess.run(
            ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false",
             f"docker://{ref}", f"oci:{work / 'skopeo-out'}:v1"],
            check=True, capture_output=True)) if shutil.which("skopeo") else float("nan")

        proxy = FaultProxy(server)
        fdst = Store(work / "filtered" / "store")
        pull(f"{proxy.host}/bench/kit:v1", store=fdst, filters=["model"], progress="none",
             referrers=False, **net)
        wire = sum(e.body_bytes for e in proxy.exchanges if "/blobs/" in e.path)
        selected = manifest["config"]["size"] + manifest["layers"][0]["size"]
        proxy.close()

        results.update(push_s=t_push, curl_push_s=t_curl_push, skopeo_push_s=t_skopeo_push,
                       pull_s=t_pull, curl_pull_s=t_curl_pull,
                       curl_pull_synced_s=t_curl_pull_sync, skopeo_pull_s=t_skopeo_pull,
                       repush_s=t_repush, filtered_bytes_ratio=wire / selected)
        if not args.skip_big:
            print(f"building a {args.big_mib} MiB layer...", flush=True)
            shutil.rmtree(work / "pull", ignore_errors=True)
            shutil.rmtree(work / "curl-out", ignore_errors=True)
            shutil.rmtree(work / "skopeo-out", ignore_errors=True)
            big_home = work / "bighome"
            big_store = Store(big_home / "store")
            big_ref = f"{host}/bench/big:v1"
            digest, size = _fill(big_store, args.big_mib * MIB, 99)
            cfg = big_store.put_blob(b"{}")
            raw = json.dumps({"schemaVersion": 2,
                              "mediaType": "application/vnd.oci.image.manifest.v1+json",
                              "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                         "digest": cfg, "size": 2},
                              "layers": [{"mediaType":
                                          "application/vnd.kitops.modelkit.model.v1.raw",
                                          "digest": digest, "size": size}]}).encode()
            big_store.put_manifest(raw, tags=[big_ref])
            results["big_push_peak_rss_mb"] = _rss_push(host, big_home, big_ref)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(json.dumps({k: round(v, 3) for k, v in results.items()}, indent=2))
    print()
    print(f"push  / curl   : {results['push_s'] / results['curl_push_s']:.2f}x (target <= 1.15)")
    print(f"push  / skopeo : {results['push_s'] / results['skopeo_push_s']:.2f}x (target < 1)")
    print(f"pull  / curl   : {results['pull_s'] / results['curl_pull_s']:.2f}x (target <= 1.15)")
    print(f"pull  / (curl + sync of its files): "
          f"{results['pull_s'] / results['curl_pull_synced_s']:.2f}x")
    print(f"pull  / skopeo : {results['pull_s'] / results['skopeo_pull_s']:.2f}x (target < 1)")
    print(f"re-push        : {results['repush_s']:.3f} s (target <= 0.3)")
    print(f"filtered bytes : {results['filtered_bytes_ratio']:.2f} (target 1.00)")
    if "big_push_peak_rss_mb" in results:
        print(f"peak RSS {args.big_mib} MiB push: {results['big_push_peak_rss_mb']:.0f} MB "
              "(target <= 150)")


if __name__ == "__main__":
    main()
