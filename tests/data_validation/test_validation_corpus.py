"""Every malformed file of tests/data/malformed produces the findings its manifest names."""

import json
import os

import pytest

from tunekit.components.data_validation.findings import ERROR, KINDS
from tunekit.components.data_validation.validate import validate_dataset

HERE = os.path.join(os.path.dirname(__file__), "..", "data", "malformed")
with open(os.path.join(HERE, "manifest.json")) as handle:
    CASES = json.load(handle)


def test_corpus_is_large_and_covers_every_method():
    files = {path for case in CASES for path in case["files"].values() if path}
    assert len(files) >= 40
    assert {case["method"] for case in CASES} == {"supervised", "distillation", "preference", "embedding"}


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_malformed_file_produces_its_finding(case):
    paths = {role: os.path.join(HERE, path) if path else "" for role, path in case["files"].items()}
    report = validate_dataset(paths, method=case["method"], task=case.get("task"), fmt=case.get("format"))
    found = {(f.kind, f.line) for f in report.findings}
    kinds = {kind for kind, _ in found}
    for expected in case["expect"]:
        assert expected["kind"] in KINDS
        if expected["line"] is None:
            assert expected["kind"] in kinds, report.text_summary()
        else:
            assert (expected["kind"], expected["line"]) in found, report.text_summary()
        if KINDS[expected["kind"]][0] == ERROR:
            assert not report.ok
    for finding in report.findings:  # every finding says where, what and what to do
        assert finding.path is not None and finding.message and finding.hint
    assert sum(report.counts_by_kind().values()) >= len(case["expect"])
