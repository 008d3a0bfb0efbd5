"""Train the tiny churn model: logistic regression by gradient descent, pure Python.

Run from this directory: ``python src/train.py``. Writes ``data/*.csv`` (a synthetic,
seeded data set) and ``model/churn-model.json`` (weights and metrics).
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path

FEATURES = ["tenure_months", "monthly_charges", "support_calls"]
ROOT = Path(__file__).resolve().parent.parent


def make_data(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        tenure = rng.randint(1, 72)
        charges = round(rng.uniform(20, 120), 2)
        calls = rng.randint(0, 9)
        logit = -1.5 - 0.05 * tenure + 0.02 * charges + 0.45 * calls
        churn = 1 if rng.random() < 1 / (1 + math.exp(-logit)) else 0
        rows.append({"tenure_months": tenure, "monthly_charges": charges,
                     "support_calls": calls, "churn": churn})
    return rows


def write_csv(path: Path, rows: list[dict[str, float]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*FEATURES, "churn"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def scale(rows):
    means = {f: sum(r[f] for r in rows) / len(rows) for f in FEATURES}
    stds = {f: math.sqrt(sum((r[f] - means[f]) ** 2 for r in rows) / len(rows)) or 1.0
            for f in FEATURES}
    return means, stds


def predict(w, b, x):
    z = b + sum(wi * xi for wi, xi in zip(w, x, strict=True))
    return 1 / (1 + math.exp(-z))


def main() -> None:
    train, valid = make_data(800, 7), make_data(200, 11)
    write_csv(ROOT / "data" / "train.csv", train)
    write_csv(ROOT / "data" / "validation.csv", valid)
    means, stds = scale(train)

    def vec(r):
        return [(r[f] - means[f]) / stds[f] for f in FEATURES]

    w, b, lr = [0.0] * len(FEATURES), 0.0, 0.1
    for _epoch in range(300):
        gw, gb = [0.0] * len(FEATURES), 0.0
        for r in train:
            x = vec(r)
            err = predict(w, b, x) - r["churn"]
            gw = [g + err * xi for g, xi in zip(gw, x, strict=True)]
            gb += err
        w = [wi - lr * g / len(train) for wi, g in zip(w, gw, strict=True)]
        b -= lr * gb / len(train)
    correct = sum((predict(w, b, vec(r)) >= 0.5) == bool(r["churn"]) for r in valid)
    model = {"type": "logistic-regression", "features": FEATURES,
             "weights": [round(x, 6) for x in w], "bias": round(b, 6),
             "scaling": {"mean": {k: round(v, 6) for k, v in means.items()},
                         "std": {k: round(v, 6) for k, v in stds.items()}},
             "metrics": {"validation_accuracy": round(correct / len(valid), 4)}}
    (ROOT / "model" / "churn-model.json").write_text(json.dumps(model, indent=2) + "\n")
    print(json.dumps(model["metrics"]))


if __name__ == "__main__":
    main()
