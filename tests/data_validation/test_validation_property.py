"""Property tests: whatever the bytes, the validator ends with a report or a usage error, never a traceback."""

import json
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunekit.components.data_validation import cli
from tunekit.components.data_validation.validate import validate_dataset

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
METHODS = ("supervised", "distillation", "preference")

# JSON values that look like dataset rows: known keys, wrong types, odd nesting.
KEYS = st.sampled_from(
    [
        "input_text",
        "output_text",
        "messages",
        "contents",
        "systemInstruction",
        "parts",
        "role",
        "text",
        "fileData",
        "fileUri",
        "mimeType",
        "candidate_0",
        "candidate_1",
        "choice",
        "completions",
        "score",
        "completion",
        "content",
        "author",
        "_id",
        "x",
    ]
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["user", "model", "system", "assistant", "gs://b/o", "http://x", "", " "]),
)
VALUES = st.recursive(
    LEAVES,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(KEYS, children, max_size=5)),
    max_leaves=25,
)
ROWS = st.lists(st.dictionaries(KEYS, VALUES, max_size=6) | VALUES, max_size=6)


def _validate_bytes(data: bytes, method: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.jsonl")
        with open(path, "wb") as handle:
            handle.write(data)
        report = validate_dataset({"train": path}, method=method, task="classification")
        report.to_dict()
        report.render_html()
        report.text_summary()
        assert sum(report.counts_by_kind().values()) >= 0


@SETTINGS
@given(st.binary(max_size=400), st.sampled_from(METHODS))
def test_random_bytes_end_in_a_report(data, method):
    _validate_bytes(data, method)


@SETTINGS
@given(ROWS, st.sampled_from(METHODS), st.booleans())
def test_near_valid_json_ends_in_a_report(rows, method, corrupt):
    lines = [json.dumps(row) for row in rows]
    if corrupt and lines:
        lines[0] = lines[0][: len(lines[0]) // 2]
    _validate_bytes("\n".join(lines).encode(), method)


@settings(max_examples=40, deadline=None)
@given(
    st.binary(max_size=200),
    st.lists(st.sampled_from(["--strict", "--json", "--format", "gemini", "--task", "chat"]), max_size=3),
)
def test_cli_never_prints_a_traceback(data, flags):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.jsonl")
        with open(path, "wb") as handle:
            handle.write(data)
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = cli.main([path, *flags, "--report", os.path.join(tmp, "r.json")])
        assert status in (0, 1, 2)
        assert "unexpectedly" not in err.getvalue() and "Traceback" not in out.getvalue() + err.getvalue()


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200))
def test_random_embedding_sets_end_in_a_report(corpus, labels):
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for role, data in (("corpus", corpus), ("queries", corpus[::-1]), ("train_labels", labels)):
            paths[role] = os.path.join(tmp, role)
            with open(paths[role], "wb") as handle:
                handle.write(data)
        validate_dataset(paths, method="embedding").render_html()


# Lone surrogates (issue 15): a valid row per format and the paths of its text fields.
_SURROGATE_ROWS = {
    ("supervised", "text_pair"): ({"input_text": "q", "output_text": "a"}, [["input_text"], ["output_text"]]),
    ("supervised", "chat"): (
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "q"},
                {"role": "model", "content": "a"},
            ]
        },
        [["messages", 0, "content"], ["messages", 1, "content"], ["messages", 2, "content"]],
    ),
    ("supervised", "gemini"): (
        {
            "systemInstruction": {"parts": [{"text": "s"}]},
            "contents": [{"role": "user", "parts": [{"text": "q"}]}, {"role": "model", "parts": [{"text": "a"}]}],
        },
        [
            ["systemInstruction", "parts", 0, "text"],
            ["contents", 0, "parts", 0, "text"],
            ["contents", 1, "parts", 0, "text"],
        ],
    ),
    ("preference", "human_preference"): (
        {"input_text": "q", "candidate_0": "a", "candidate_1": "b", "choice": 0},
        [["input_text"], ["candidate_0"], ["candidate_1"]],
    ),
    ("preference", "prompt"): ({"messages": [{"author": "user", "content": "q"}]}, [["messages", 0, "content"]]),
    ("preference", "gemini_preference"): (
        {
            "contents": [{"role": "user", "parts": [{"text": "q"}]}],
            "completions": [
                {"score": 1, "completion": {"role": "model", "parts": [{"text": "a"}]}},
                {"score": 0, "completion": {"role": "model", "parts": [{"text": "b"}]}},
            ],
        },
        [["contents", 0, "parts", 0, "text"], ["completions", 0, "completion", "parts", 0, "text"]],
    ),
}


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(sorted(_SURROGATE_ROWS)),
    st.data(),
    st.integers(0xD800, 0xDFFF),
    st.text(max_size=5),
    st.text(max_size=5),
)
def test_lone_surrogates_in_any_text_field_are_findings(case, data, code, before, after):
    import copy

    method, fmt = case
    valid, fields = _SURROGATE_ROWS[case]
    field = data.draw(st.sampled_from(fields))
    bad = copy.deepcopy(valid)
    target = bad
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = before + chr(code) + after
    lines = [json.dumps(valid), json.dumps(bad), json.dumps(valid)]  # json.dumps escapes it: \udXXX
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "train.jsonl")
        with open(path, "w", encoding="ascii") as handle:
            handle.write("\n".join(lines) + "\n")
        out = os.path.join(tmp, "out")
        report = validate_dataset({"train": path}, method=method, fmt=fmt, normalised_dir=out)
        found = [f for f in report.findings if f.kind == "lone_surrogate"]
        assert [(f.line, f.severity) for f in found] == [(2, "error")]
        assert f"\\u{code:04x}" in found[0].message and found[0].field.endswith(str(field[-1]))
        with open(os.path.join(out, "train.jsonl"), encoding="utf-8") as handle:
            assert len(handle.read().splitlines()) == 2
        report.write_json(os.path.join(tmp, "r.json"))
        report.render_html()
        report.text_summary()
