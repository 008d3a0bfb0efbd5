"""The end-to-end demo behind ``kitaudit demo`` (README's main command).

It runs the whole mission on the embedded default, a local store in a demo home, with
no server to start: build a small ML project (train a real tiny model), pack it with its
ML-BOM, generate a key pair, sign, verify against ``policies/baseline.yaml``, retag
challenger → champion, crawl the store and write a compliance report. With ``registry``
the ModelKit is also pushed there and the checks run against the registry.

Every step is a call into the library; each prints one line saying what it did.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitaudit.errors import KitauditError, NotFound

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "churn-model"
DEMO_PASSWORD = "kitaudit-demo"  # noqa: S105 - the demo's throwaway key, not a secret


@dataclass
class DemoResult:
    home: str
    reference: str
    digest: str = ""
    steps: list[dict[str, Any]] = field(default_factory=list)
    report_dir: str | None = None
    verify_exit_code: int | None = None


def _example_dir() -> Path:
    if EXAMPLE.is_dir():
        return EXAMPLE
    raise NotFound(f"{EXAMPLE} is missing", fix="run the demo from a kitaudit checkout")


def run_demo(home: str | Path, *, registry: str | None = None, plain_http: bool = False,
             report_dir: str | Path | None = None,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Run every step; raise on the first failure (the CLI prints it)."""
    from kitaudit import local
    from kitaudit.pack import pack
    from kitaudit.signing.attach import sign_local
    from kitaudit.signing.keys import generate_key_pair, write_key_pair
    from kitaudit.signing.signer import KeySigner
    from kitaudit.store import Store

    home = Path(home).resolve()
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    os.environ["KITAUDIT_HOME"] = str(home)  # library defaults (credentials, caches)
    store = Store(home / "store")
    repo = f"{registry}/demo/churn-model" if registry else "demo/churn-model"
    challenger = local.full_ref(f"{repo}:challenger")
    result = DemoResult(str(home), challenger)

    def step(name: str, text: str, **data: Any) -> None:
        result.steps.append({"step": name, "text": text, **data})
        echo(f"[{len(result.steps)}] {name}: {text}")

    # 1. the project: copy the example, train the model for real
    project = home / "project"
    shutil.copytree(_example_dir(), project)
    out = subprocess.run([sys.executable, "src/train.py"], cwd=project, check=True,
                         capture_output=True, text=True)
    step("train", f"trained the churn model in {project} ({out.stdout.strip()})")

    # 2. pack with its ML-BOM
    packed = pack(project, tags=[challenger], store=store)
    result.digest = packed.digest
    step("pack", f"{challenger} → {packed.digest} ({len(packed.layers)} layers, "
         f"ML-BOM {packed.sbom_digest})", digest=packed.digest, sbom=packed.sbom_digest)

    # 3. a key pair for air-gapped signing
    private_pem, public_pem = generate_key_pair(DEMO_PASSWORD)
    key_path, pub_path = write_key_pair(home / "cosign", private_pem, public_pem)
    step("generate-key-pair", f"wrote {key_path} and {pub_path}")

    # 4. sign the ModelKit and its ML-BOM
    signer = KeySigner.from_file(str(key_path), password=DEMO_PASSWORD)
    signed = sign_local(store, challenger, signer)
    step("sign", f"attached {len(signed.attached)} signed bundles to {packed.digest} "
         f"({signed.signer}; ML-BOM attestation: {'yes' if signed.sbom_signed else 'no'})",
         attached=signed.attached)

    net = {"plain_http": plain_http} if plain_http else {}
    if registry:
        from kitaudit.registry.transfer import push

        pushed = push(challenger, store=store, progress="none", **net)
        step("push", f"{challenger} → {registry} with its signatures and ML-BOM "
             f"({getattr(pushed, 'digest', packed.digest)})")

    # 5. the admission check: signature, signed ML-BOM matching the manifest, baseline policy
    from kitaudit.verify import VerifyOptions, verify

    baseline = REPO_ROOT / "policies" / "baseline.yaml"
    options = VerifyOptions(keys=[str(pub_path)], policies=[str(baseline)])
    verdict = verify(challenger, options, store=store, remote=bool(registry), net=net)
    result.verify_exit_code = verdict.exit_code
    rules = verdict.policy.counts() if verdict.policy is not None else {}
    step("verify", f"{challenger}: {verdict.decision} (exit {verdict.exit_code}; "
         f"policy {baseline.name}: {rules})", decision=verdict.decision,
         problems=list(verdict.problems))
    if verdict.decision != "pass":
        raise DemoError(f"verification did not pass: {'; '.join(verdict.problems) or rules}")

    # 6. promote: challenger → champion
    champion = local.full_ref(f"{repo}:champion")
    if registry:
        from kitaudit.registry.transfer import remote_tag

        remote_tag(challenger, champion, **net)
        step("tag", f"{champion} → {packed.digest} (manifest PUT on {registry})")
    else:
        local.tag(store, challenger, champion)
        step("tag", f"{champion} → {packed.digest}")

    # 7. lineage: a regional variant derived from the champion (its model is a reference
    #    to the base ModelKit; only its calibration part and its own data are packed)
    variant = _make_variant(home / "variant", champion)
    variant_ref = local.full_ref(f"{repo}-eu:challenger")
    derived = pack(variant, tags=[variant_ref], store=store,
                   remote=_remote_resolver(net) if registry else None)
    sign_local(store, variant_ref, signer)
    step("derive", f"{variant_ref} → {derived.digest}, base model {champion} "
         f"({derived.ancestors[0].digest if derived.ancestors else '?'}), signed",
         digest=derived.digest)
    if registry:
        from kitaudit.registry.transfer import push

        push(variant_ref, store=store, progress="none", **net)
        step("push", f"{variant_ref} → {registry}")

    # 8. the auditor: crawl the store (or the registry) into SQLite
    from kitaudit.audit.crawl import crawl

    db = home / "audit.db"
    target = registry if registry else f"oci:{store.root}"
    stats = crawl(target, db, options=options, net=net or None)
    step("crawl", f"{target} → {db} ({_counts(stats)})", database=str(db))

    # 9. the compliance report for governance
    from kitaudit.report.data import build_report
    from kitaudit.report.render import write_report

    out_dir = Path(report_dir) if report_dir else REPO_ROOT / "reports" / "demo"
    report = build_report(db, since="last", policies=[str(baseline)],
                          title="kitaudit demo compliance report")
    written = write_report(report, out_dir)
    result.report_dir = str(out_dir)
    step("report", f"wrote {', '.join(p.name for p in written)} into {out_dir}",
         files=[str(p) for p in written])
    return result


def _make_variant(directory: Path, base_ref: str) -> Path:
    """A small project whose model is the base ModelKit plus a calibration part."""
    directory.mkdir(parents=True)
    (directory / "calibration").mkdir()
    (directory / "calibration" / "eu-thresholds.json").write_text(
        '{"region": "eu", "decision_threshold": 0.42}\n')
    (directory / "data").mkdir()
    (directory / "data" / "eu-validation.csv").write_text(
        "tenure_months,monthly_charges,support_calls,churn\n12,70.5,3,1\n48,35.0,0,0\n")
    (directory / "Kitfile").write_text(f"""manifestVersion: 1.0.0
package:
  name: churn-model-eu
  version: 1.0.0
  description: EU calibration of the churn model.
  license: Apache-2.0
  authors: [ML Platform Team <ml-platform@example.com>]
model:
  name: churn-model-eu
  path: {base_ref}
  license: Apache-2.0
  parts:
    - name: eu-calibration
      path: calibration/eu-thresholds.json
      type: config
datasets:
  - name: eu-validation
    path: data/eu-validation.csv
    license: CC0-1.0
""")
    return directory


def _remote_resolver(net: dict[str, Any]) -> Callable[[str], tuple[str, Any]]:
    from kitaudit.registry.transfer import fetch_kitfile

    return lambda ref: fetch_kitfile(ref, **net)


def _counts(stats: Any) -> str:
    data = stats.to_dict()
    return ", ".join(f"{k} {data[k]}" for k in ("repositories", "tags", "manifests",
                                                   "modelkits", "errors"))


class DemoError(KitauditError):
    """A demo step did not give the expected result."""

    exit_code = 1
