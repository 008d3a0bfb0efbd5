"""Hugging Face-style model card parsing: front matter, sections, placeholders, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kitaudit import kitfile as kf
from kitaudit.modelcard import ModelCardError, find_model_card, load_model_card, parse_model_card

# The Hugging Face model card template's shape (headings and placeholders), with some
# sections filled in.
HF_CARD = """---
language:
- en
license: apache-2.0
library_name: transformers
tags: [text-classification, sentiment]
datasets:
- imdb
- sst2
base_model: distilbert/distilbert-base-uncased
pipeline_tag: text-classification
model-index:
- name: sentiment-distilbert
  results:
  - task:
      type: text-classification
      name: Text Classification
    dataset:
      name: IMDB
      type: imdb
      config: plain_text
      split: test
    metrics:
    - type: accuracy
      value: 0.9312
      name: Accuracy
    - type: f1
      value: 0.93
  - task:
      type: text-classification
    dataset:
      name: SST-2
      type: sst2
      split: validation
    metrics:
    - type: accuracy
      value: 0.91
co2_eq_emissions:
  emissions: 12.5
  source: codecarbon
  training_type: fine-tuning
  hardware_used: 1 x A100
---

# Model Card for sentiment-distilbert

<!-- Provide a quick summary of what the model is/does. -->

## Model Details

### Model Description

- **Developed by:** Example Lab
- **License:** apache-2.0

## Uses

<!-- Address questions around how the model is intended to be used. -->

### Direct Use

Classify the sentiment of English movie reviews.

Batch scoring of customer feedback.

### Downstream Use [optional]

[More Information Needed]

### Out-of-Scope Use

- Medical or legal decisions.
- Languages other than English.

## Bias, Risks, and Limitations

The model inherits biases of IMDB reviewers.

### Recommendations

Evaluate on your own data before deployment.

## Fairness

Accuracy is 4 points lower on reviews written in African-American English.

## Training Details

### Training Data

IMDB and SST-2.

## Environmental Impact

- **Hardware Type:** A100
- **Hours used:** 3
- **Cloud Provider:** [More Information Needed]

## Technical Specifications [optional]

### Model Architecture and Objective

DistilBERT encoder with a linear classification head.

```python
# code blocks are never facts
## Limitations
```
"""


def test_front_matter_facts():
    card = parse_model_card(HF_CARD, source="README.md")
    assert card.source == "README.md"
    assert card.license == "apache-2.0"
    assert card.base_models == ["distilbert/distilbert-base-uncased"]
    assert card.datasets == ["imdb", "sst2"]
    assert card.pipeline_tag == "text-classification"
    assert card.library_name == "transformers"
    assert card.languages == ["en"]
    assert card.model_name == "sentiment-distilbert"
    assert card.co2 == {"emissions": "12.5", "source": "codecarbon",
                        "training_type": "fine-tuning", "hardware_used": "1 x A100"}
    assert [(m.type, m.value, m.dataset, m.split) for m in card.metrics] == [
        ("accuracy", "0.9312", "IMDB", "test"), ("f1", "0.93", "IMDB", "test"),
        ("accuracy", "0.91", "SST-2", "validation")]
    assert card.metrics[0].config == "plain_text"
    assert card.metrics[0].task == "text-classification"
    assert card.warnings == []


def test_sections_and_placeholders():
    card = parse_model_card(HF_CARD)
    # "Downstream Use" holds only the placeholder: absent, not invented.
    assert card.intended_uses == ["Classify the sentiment of English movie reviews.",
                                  "Batch scoring of customer feedback."]
    assert card.out_of_scope == ["Medical or legal decisions.", "Languages other than English."]
    assert card.risks == ["The model inherits biases of IMDB reviewers."]
    assert card.limitations == ["The model inherits biases of IMDB reviewers."]
    assert card.recommendations == ["Evaluate on your own data before deployment."]
    assert card.fairness == [
        "Accuracy is 4 points lower on reviews written in African-American English."]
    assert card.architecture == "DistilBERT encoder with a linear classification head."
    assert card.environmental == {"Hardware Type": "A100", "Hours used": "3"}


def test_heading_variants():
    text = """Intended uses & limitations
---------------------------

More information needed

# 1. Intended Use:
* Research on summarisation

### Known limitations ###
1. Truncates at 512 tokens
2) Hallucinates dates

## Ethical Considerations
Not for surveillance.

## Primary intended users
Researchers.

## Trade-offs
Speed over accuracy.
"""
    card = parse_model_card(text)
    assert card.intended_uses == ["More information needed", "Research on summarisation"]
    assert card.limitations == ["More information needed", "Truncates at 512 tokens",
                                "Hallucinates dates"]
    assert card.risks == ["Not for surveillance."]
    assert card.users == ["Researchers."]
    assert card.tradeoffs == ["Speed over accuracy."]


def test_no_front_matter_and_empty():
    assert parse_model_card("").is_empty()
    assert parse_model_card("# Title\n\nJust prose.\n").is_empty()
    card = parse_model_card("---\n---\n## Limitations\nNone known.\n")
    assert card.limitations == ["None known."] and card.warnings == []


def test_license_list_and_base_model_list():
    card = parse_model_card("---\nlicense: [mit, apache-2.0]\nbase_model:\n- a/b\n- c/d\n"
                            "license_name: custom\n---\n")
    assert card.license == "mit OR apache-2.0"
    assert card.base_models == ["a/b", "c/d"]
    assert card.license_name == "custom"


def test_malformed_front_matter_strict_is_an_error():
    text = "---\nlicense: [mit\n---\n## Limitations\nx\n"
    with pytest.raises(ModelCardError) as err:
        parse_model_card(text, source="card.md", strict=True)
    assert "card.md: front matter is not valid YAML" in str(err.value)
    assert err.value.fix


def test_malformed_front_matter_lenient_warns_and_keeps_sections():
    card = parse_model_card("---\nlicense: [mit\n---\n## Limitations\nx\n", strict=False)
    assert card.license is None
    assert card.limitations == ["x"]
    assert len(card.warnings) == 1 and "front matter ignored" in card.warnings[0]


def test_front_matter_not_a_mapping():
    with pytest.raises(ModelCardError, match="not a YAML mapping"):
        parse_model_card("---\n- a\n- b\n---\n", strict=True)
    card = parse_model_card("---\n- a\n- b\n---\n")
    assert card.warnings and card.license is None


def test_bad_model_index_is_ignored_with_warning():
    card = parse_model_card("---\nmodel-index: 3\nlicense: mit\n---\n")
    assert card.metrics == [] and card.license == "mit"
    assert any("model-index" in w for w in card.warnings)


def test_load_model_card_errors(tmp_path: Path):
    bad = tmp_path / "bin.md"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ModelCardError, match="not UTF-8"):
        load_model_card(bad)
    with pytest.raises(ModelCardError, match="cannot read"):
        load_model_card(tmp_path / "missing.md")
    big = tmp_path / "big.md"
    big.write_bytes(b"a" * ((4 << 20) + 1))
    with pytest.raises(ModelCardError, match="larger than 4 MiB"):
        load_model_card(big)


def _kitfile(text: str) -> kf.Kitfile:
    return kf.loads(text)


def test_find_model_card_order(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "model").mkdir()
    kit = _kitfile("manifestVersion: 1.0.0\nmodel:\n  path: model\ndocs:\n  - path: docs\n")
    assert find_model_card(kit, tmp_path) is None
    (tmp_path / "README.md").write_text("root")
    assert find_model_card(kit, tmp_path) == (tmp_path / "README.md").resolve()
    (tmp_path / "model" / "README.md").write_text("model")
    assert find_model_card(kit, tmp_path) == (tmp_path / "model" / "README.md").resolve()
    (tmp_path / "docs" / "MODEL_CARD.md").write_text("docs")
    assert find_model_card(kit, tmp_path) == (tmp_path / "docs" / "MODEL_CARD.md").resolve()


def test_find_model_card_docs_file_entry(tmp_path: Path):
    (tmp_path / "CARD").mkdir()
    (tmp_path / "my_model_card.md").write_text("x")
    kit = _kitfile("manifestVersion: 1.0.0\ndocs:\n  - path: my_model_card.md\n")
    assert find_model_card(kit, tmp_path) == (tmp_path / "my_model_card.md").resolve()


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_find_model_card_never_leaves_the_context(tmp_path: Path):
    outside = tmp_path / "outside.md"
    outside.write_text("secret")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "README.md").symlink_to(outside)
    kit = _kitfile("manifestVersion: 1.0.0\n")
    assert find_model_card(kit, ctx) is None


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_parser_never_crashes_lenient(text: str):
    card = parse_model_card(text)
    assert isinstance(card.warnings, list)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["---", "license: mit", "a: [", "- x", "## Limitations",
                                 "text", "", "```", "# Uses", "key: {a: 1}", "...", "|t|"]),
                max_size=12))
def test_parser_strict_raises_only_model_card_errors(lines: list[str]):
    try:
        parse_model_card("\n".join(lines), strict=True)
    except ModelCardError:
        pass
