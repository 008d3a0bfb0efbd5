"""Crawl benchmark: N small ModelKits, each with an ML-BOM referrer and two signature
bundles (the manifest signature and the ML-BOM attestation, key-based), seeded into a
local docker-registry (distribution 2.8: referrers through the fallback tag), then:

* a cold crawl with verification (``--key``) into a new database;
* a recrawl with nothing changed;
* the baseline: a plain concurrent GET (HEAD for HEADs) of exactly the URLs the cold
  crawl requested, with the same concurrency, on one keep-alive httpx client.

    .venv/bin/python benchmarks/crawl.py [--kits 2000] [--repos 100] [--concurrency 8]
                                         [--no-verify] [--json] [--keep]

Targets (issue 6): cold crawl request rate >= 0.7x the baseline's; unchanged recrawl
<= 10% of the cold crawl time; database <= 50 KB per ModelKit. Needs
/usr/bin/docker-registry.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KITFILE = """manifestVersion: 1.0.0
package:
  name: bench-{i}
  version: 1.0.{i}
  license: Apache-2.0
  description: benchmark ModelKit {i}
model:
  name: bench-model-{i}
  path: model.bin
  license: Apache-2.0
datasets:
  - name: shared-corpus
    path: data/corpus.csv
    license: CC-BY-4.0
"""


def _seed_repo(client: Any, host: str, repo: str, indexes: list[int], signer: Any) -> int:
    from kitaudit import kitfile as kf
    from kitaudit import mediatypes as mt
    from kitaudit import mlbom, referrers
    from kitaudit.modelkit import manifest_json
    from kitaudit.signing.signer import sign_modelkit

    model = b"tiny weights " * 8
    corpus = b"id,text\n" + b"".join(b"%d,row\n" % n for n in range(32))
    model_d = client.upload_bytes(repo, model)
    corpus_d = client.upload_bytes(repo, corpus)
    created = datetime(2026, 11, 27, tzinfo=UTC)
    for i in indexes:
        kit = kf.loads(KITFILE.format(i=i))
        assert kit.model is not None
        kit.model.digest = kit.model.diff_id = model_d
        kit.datasets[0].digest = kit.datasets[0].diff_id = corpus_d
        config = kit.to_json().encode()
        cfg_d = client.upload_bytes(repo, config)
        layers = [
            {"mediaType": mt.kit_layer_media_type("model", "raw"), "digest": model_d,
             "size": len(model), "annotations": {mt.ANN_FILEPATH: "model.bin"}},
            {"mediaType": mt.kit_layer_media_type("dataset", "raw"), "digest": corpus_d,
             "size": len(corpus), "annotations": {mt.ANN_FILEPATH: "data/corpus.csv"}},
        ]
        manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                    "artifactType": mt.KIT_ARTIFACT_TYPE,
                    "config": {"mediaType": mt.KIT_CONFIG, "digest": cfg_d,
                               "size": len(config)},
                    "layers": layers,
                    "annotations": {mt.ANN_CREATED: "2026-11-27T00:00:00Z"}}
        raw = manifest_json(manifest)
        tag = f"v{i}"
        client.put_manifest(repo, tag, raw, mt.OCI_MANIFEST)
        import hashlib

        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        subject = {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(raw)}
        facts = [mlbom.LayerFacts("model", "model.bin", layers[0]["mediaType"], model_d,
                                  model_d, len(model)),
                 mlbom.LayerFacts("dataset", "data/corpus.csv", layers[1]["mediaType"],
                                  corpus_d, corpus_d, len(corpus))]
        bom = mlbom.build_mlbom(kit, manifest_digest=digest, layers=facts,
                                reference=f"{host}/{repo}:{tag}", created=created)
        bom_d = "sha256:" + hashlib.sha256(bom).hexdigest()
        sbom_raw = referrers.referrer_manifest(
            subject, mt.CYCLONEDX_JSON,
            [{"mediaType": mt.CYCLONEDX_JSON, "digest": bom_d, "size": len(bom)}],
            annotations={mt.ANN_CREATED: "2026-11-27T00:00:00Z"})
        referrers.push_referrer(client, repo, sbom_raw, {bom_d: bom})
        for signed in sign_modelkit(digest, subject, sbom=bom, signer=signer, created=created):
            referrers.push_referrer(client, repo, signed.manifest_bytes, signed.blobs)
    return len(indexes)


def seed(host: str, kits: int, repos: int, signer: Any, concurrency: int) -> float:
    from kitaudit.registry.client import RegistryClient
    from kitaudit.registry.transport import NetOptions

    started = time.perf_counter()
    plan: dict[str, list[int]] = {}
    for i in range(kits):
        plan.setdefault(f"bench/r{i % repos:04d}", []).append(i)
    with RegistryClient(host, net=NetOptions(plain_http=True, concurrency=concurrency)) as c:
        with ThreadPoolExecutor(concurrency) as pool:
            done = list(pool.map(lambda item: _seed_repo(c, host, item[0], item[1], signer),
                                 plan.items()))
    assert sum(done) == kits
    return time.perf_counter() - started


def baseline(urls: list[tuple[str, str]], concurrency: int) -> float:
    """A plain concurrent GET of the same URLs on one keep-alive client."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency * 2,
                          max_keepalive_connections=concurrency * 2)
    accept = ", ".join(["application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.oci.image.index.v1+json"])
    with httpx.Client(limits=limits, headers={"Accept": accept}) as client:
        def get(item: tuple[str, str]) -> int:
            method, url = item
            resp = client.request(method, url, follow_redirects=True)
            resp.read()
            return resp.status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(get, urls))
        return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kits", type=int, default=2000)
    ap.add_argument("--repos", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--no-verify", action="store_true", help="crawl without trust options")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true",
                    help="keep the registry data and the database (printed path)")
    args = ap.parse_args()

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from kitaudit.audit.crawl import crawl
    from kitaudit.audit.sources import RegistrySource
    from kitaudit.signing import keys
    from kitaudit.signing.signer import KeySigner
    from kitaudit.verify import VerifyOptions
    from tests.registry_fixtures import start_registry

    work = Path(tempfile.mkdtemp(prefix="kitaudit-crawl-bench-"))
    reg = start_registry(work / "registry")
    try:
        priv = ec.generate_private_key(ec.SECP256R1())
        pub = work / "cosign.pub"
        pub.write_bytes(priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        signer = KeySigner(keys.LoadedKey(priv, "bench"))
        seed_s = seed(reg.host, args.kits, min(args.repos, args.kits), signer,
                      args.concurrency)
        print(f"seeded {args.kits} ModelKits (+ ML-BOM and 2 signature referrers each) "
              f"in {seed_s:.1f}s", file=sys.stderr)
        options = None if args.no_verify else VerifyOptions(keys=[str(pub)])

        urls: list[tuple[str, str]] = []
        lock = threading.Lock()
        source = RegistrySource(reg.host, net={"plain_http": True},
                                concurrency=args.concurrency)

        def record(request: Any) -> None:
            with lock:
                urls.append((request.method, str(request.url)))

        source.client.transport.client.event_hooks["request"].append(record)
        db = work / "audit.db"
        t0 = time.perf_counter()
        cold = crawl(source, db, options=options, concurrency=args.concurrency)
        cold_s = time.perf_counter() - t0
        source.close()
        cold_requests = len(urls)

        again = RegistrySource(reg.host, net={"plain_http": True},
                               concurrency=args.concurrency)
        t0 = time.perf_counter()
        warm = crawl(again, db, options=options, concurrency=args.concurrency)
        warm_s = time.perf_counter() - t0
        warm_requests = again.requests
        again.close()

        base_s = baseline(urls, args.concurrency)
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        size = db.stat().st_size
        kits = cold.modelkits
        out = {
            "kits": args.kits, "repositories": cold.repositories, "modelkits": kits,
            "verify": options is not None, "concurrency": args.concurrency,
            "seed_seconds": round(seed_s, 2),
            "cold_seconds": round(cold_s, 3), "cold_requests": cold_requests,
            "cold_requests_per_s": round(cold_requests / cold_s, 1),
            "baseline_seconds": round(base_s, 3),
            "baseline_requests_per_s": round(cold_requests / base_s, 1),
            "rate_ratio": round(base_s / cold_s, 3),
            "recrawl_seconds": round(warm_s, 3), "recrawl_requests": warm_requests,
            "recrawl_ratio": round(warm_s / cold_s, 3),
            "recrawl_unchanged": warm.unchanged,
            "db_bytes": size, "db_bytes_per_modelkit": round(size / max(kits, 1)),
            "errors": cold.errors + warm.errors,
        }
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            print(f"cold crawl:   {cold_s:.2f}s, {cold_requests} requests "
                  f"({out['cold_requests_per_s']}/s), {kits} ModelKits, "
                  f"{cold.errors} errors")
            print(f"baseline GET: {base_s:.2f}s ({out['baseline_requests_per_s']}/s) -> "
                  f"crawl rate = {out['rate_ratio']:.2f}x baseline (target >= 0.7)")
            print(f"recrawl:      {warm_s:.2f}s, {warm_requests} requests = "
                  f"{out['recrawl_ratio'] * 100:.1f}% of cold (target <= 10%)")
            print(f"database:     {size / 1024:.0f} KiB = "
                  f"{out['db_bytes_per_modelkit'] / 1024:.1f} KB per ModelKit "
                  f"(target <= 50 KB)")
        return 0
    finally:
        reg.stop()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
