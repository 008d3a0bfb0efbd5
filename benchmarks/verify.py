"""``kitaudit verify`` benchmark on a loopback registry (Debian's docker-registry).

    .venv/bin/python benchmarks/verify.py [--json] [--rounds N]

A small ModelKit is packed (with its ML-BOM), signed with an ECDSA key (signature + ML-BOM
attestation) and pushed to a fresh registry on 127.0.0.1 (distribution 2.8: referrers via
the fallback tag, plus the two 404s for cosign's .sig/.att tags). Measured:

* in-process **cold**: ``verify(ref, compiled=c, remote=True)`` with ``c`` compiled once
  (key, baseline policy — what the webhook or crawler hold) and no result cache: every
  request is made (tag, fallback-tag index, .sig/.att tags; immutable blobs come from the
  content cache after the first call) and every signature and the ML-BOM re-verified;
* in-process **cold with compile**: ``verify(ref, VerifyOptions(...))`` — also loads the
  key and parses/compiles the policy YAML and opens a new connection each time (what one
  CLI invocation does, minus interpreter start-up);
* in-process **warm**: a positive-result cache hit (``compile_options(..., cache_ttl=)``):
  by tag one manifest GET to resolve the tag, then the cached pass for (digest, options);
  by digest no request at all;
* **CLI**: a full ``kitaudit verify REF --key ... -r --plain-http --policy baseline``
  process (bytecode cached as after installation; also without a bytecode cache);
* **policy per rule**: ``evaluate()`` of the baseline policy over the verified input
  document, divided by its rule count.

Targets (issue 5): cold p50 ≤ 30 ms, warm p50 ≤ 2 ms, CLI ≤ 0.6 s, ≤ 50 µs per rule.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {"cold_p50_ms": 30.0, "warm_p50_ms": 2.0, "cli_s": 0.6, "per_rule_us": 50.0}


def _kit(work: Path, host: str) -> tuple[str, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from kitaudit.pack import pack
    from kitaudit.registry.transfer import push
    from kitaudit.signing import keys
    from kitaudit.signing.attach import sign_local
    from kitaudit.signing.signer import KeySigner
    from kitaudit.store import Store

    ctx = work / "ctx"
    (ctx / "data").mkdir(parents=True)
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: bench\n  license: Apache-2.0\n"
        "model:\n  name: bench\n  path: model.bin\n  license: Apache-2.0\n"
        "datasets:\n  - name: train\n    path: data/train.csv\n    license: CC-BY-4.0\n"
        "docs:\n  - path: README.md\n")
    (ctx / "model.bin").write_bytes(os.urandom(1 << 20))
    (ctx / "data" / "train.csv").write_text("a,b\n1,2\n")
    (ctx / "README.md").write_text("# bench\n## Intended uses\nBenchmarks.\n")
    store = Store(work / "store")
    ref = f"{host}/bench/model:v1"
    pack(ctx, tags=[ref], store=store)
    priv = ec.generate_private_key(ec.SECP256R1())
    sign_local(store, ref, KeySigner(keys.LoadedKey(priv, "bench.key")))
    push(ref, store=store, progress="none", plain_http=True)
    pub = work / "bench.pub"
    pub.write_bytes(priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return ref, pub


def _times(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _stats(samples: list[float], scale: float = 1e3) -> dict[str, float]:
    s = sorted(samples)
    return {"p50": round(statistics.median(s) * scale, 3),
            "p90": round(s[int(len(s) * 0.9) - 1 if len(s) > 1 else 0] * scale, 3),
            "min": round(s[0] * scale, 3), "n": len(s)}


def run(rounds: int = 30) -> dict[str, Any]:
    from kitaudit.policy import evaluate
    from kitaudit.verify import VerifyOptions, compile_options, verify
    from tests.registry_fixtures import start_registry

    baseline = str(ROOT / "policies" / "baseline.yaml")
    with tempfile.TemporaryDirectory(prefix="kitaudit-bench-verify-") as tmp:
        work = Path(tmp)
        os.environ["KITAUDIT_HOME"] = str(work / "home")
        server = start_registry(work / "registry")
        try:
            ref, pub = _kit(work, server.host)
            net = {"plain_http": True}
            opts = VerifyOptions(keys=[str(pub)], policies=[baseline])

            def cold_compile() -> None:
                res = verify(ref, opts, remote=True, net=net)
                assert res.decision == "pass", res.problems

            cold_compile()  # imports, first-time module set-up
            cold_compile_t = _times(cold_compile, rounds)

            compiled = compile_options(opts)

            def cold() -> None:
                res = verify(ref, compiled=compiled, remote=True, net=net)
                assert res.decision == "pass", res.problems

            cold()
            cold_t = _times(cold, rounds)

            cached = compile_options(opts, cache_ttl=300)
            first = verify(ref, compiled=cached, remote=True, net=net)
            pinned = f"{ref.rsplit(':', 1)[0]}@{first.digest}"

            def warm() -> None:
                res = verify(ref, compiled=cached, remote=True, net=net)
                assert res.decision == "pass" and res.cached, res.problems

            def warm_digest() -> None:
                res = verify(pinned, compiled=cached, remote=True, net=net)
                assert res.decision == "pass" and res.cached, res.problems

            warm_digest()
            warm_t = _times(warm, rounds * 5)
            warm_d_t = _times(warm_digest, rounds * 5)

            res = verify(ref, compiled=compiled, remote=True, net=net)
            doc = res.input_document
            n_rules = sum(len(p.rules) for p in compiled.policies)
            from kitaudit.policy.cel import engine
            from kitaudit.policy.inputdoc import normalize_input

            eng = engine()
            per_rule = []
            for p in compiled.policies:
                activation = eng.bind(normalize_input(doc, params=p.params))
                for rule in p.rules:
                    program = eng.compile(rule.expression)
                    program.evaluate(activation)
                    t = _times(lambda program=program, activation=activation:
                               program.evaluate(activation), rounds * 20)
                    per_rule.append(statistics.median(t) * 1e6)
            per_rule_us = max(per_rule)

            def policy() -> None:
                evaluate(compiled.policies, doc, waivers=compiled.waivers)

            policy()
            pol_t = _times(policy, rounds * 10)
            subject_per_rule_us = statistics.median(pol_t) / n_rules * 1e6

            cli = [str(ROOT / ".venv" / "bin" / "kitaudit"), "verify", ref, "--key", str(pub),
                   "-r", "--plain-http", "--policy", baseline]
            # As installed: bytecode cached (kept out of the checkout with a prefix). This
            # environment sets PYTHONDONTWRITEBYTECODE=1, which makes every process
            # compile every module from source: measured too, for comparison.
            env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
            env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
            subprocess.run(cli, capture_output=True, env=env)  # writes the bytecode
            cli_t, cli_src_t, cli_cpu = [], [], []
            nocache = {**env, "PYTHONDONTWRITEBYTECODE": "1",
                       "PYTHONPYCACHEPREFIX": str(work / "none")}
            for _ in range(max(3, rounds // 6)):
                for times, e in ((cli_t, env), (cli_src_t, nocache)):
                    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    t0 = time.perf_counter()
                    proc = subprocess.run(cli, capture_output=True, env=e)
                    times.append(time.perf_counter() - t0)
                    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                    if e is env:  # CPU seconds: less sensitive to a loaded machine
                        cli_cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
                    assert proc.returncode == 0, proc.stderr.decode()
            compiled.close()
            cached.close()
        finally:
            server.stop()
    out = {
        "in_process_cold_ms": _stats(cold_t),
        "in_process_cold_with_compile_ms": _stats(cold_compile_t),
        "in_process_warm_ms": _stats(warm_t),
        "in_process_warm_by_digest_ms": _stats(warm_d_t),
        "cli_s": _stats(cli_t, 1.0),
        "cli_cpu_s": _stats(cli_cpu, 1.0),
        "cli_no_bytecode_cache_s": _stats(cli_src_t, 1.0),
        "load_average": os.getloadavg()[0],
        "policy_per_rule_us": round(per_rule_us, 2),   # worst rule, compiled + bound
        "policy_evaluate_per_rule_us": round(subject_per_rule_us, 2),  # incl. normalise
        "rules": n_rules,
        "targets": TARGETS,
    }
    out["met"] = {
        "cold_p50_ms": out["in_process_cold_ms"]["p50"] <= TARGETS["cold_p50_ms"],
        "warm_p50_ms": out["in_process_warm_ms"]["p50"] <= TARGETS["warm_p50_ms"],
        "cli_s": out["cli_s"]["p50"] <= TARGETS["cli_s"],
        "per_rule_us": per_rule_us <= TARGETS["per_rule_us"],
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    out = run(args.rounds)
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"in-process cold   p50 {out['in_process_cold_ms']['p50']:8.2f} ms "
          f"(p90 {out['in_process_cold_ms']['p90']:.2f})  target ≤ 30 ms")
    print(f"in-process cold with compile p50 "
          f"{out['in_process_cold_with_compile_ms']['p50']:8.2f} ms")
    print(f"in-process warm   p50 {out['in_process_warm_ms']['p50']:8.3f} ms "
          f"(p90 {out['in_process_warm_ms']['p90']:.3f})  target ≤ 2 ms")
    print(f"in-process warm by digest p50 {out['in_process_warm_by_digest_ms']['p50']:8.3f} ms")
    print(f"CLI process       p50 {out['cli_s']['p50']:8.3f} s   target ≤ 0.6 s "
          f"(CPU {out['cli_cpu_s']['p50']:.3f} s; without bytecode cache "
          f"{out['cli_no_bytecode_cache_s']['p50']:.3f} s)")
    print(f"load average during the run: {out['load_average']:.1f}")
    print(f"policy per rule       {out['policy_per_rule_us']:8.2f} µs (worst of "
          f"{out['rules']} rules) target ≤ 50 µs; evaluate() per rule "
          f"{out['policy_evaluate_per_rule_us']:.2f} µs (document normalised each time)")
    print("met: " + ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in out["met"].items()))


if __name__ == "__main__":
    main()
