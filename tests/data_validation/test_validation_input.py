"""Issue 15: pipes and FIFOs read once, lone surrogates reported, one-line prompts of Google's tuning guides."""

import contextlib
import io
import json
import os
import threading

from tunekit.components.data_validation import cli, reader, validate
from tunekit.components.data_validation.validate import validate_dataset


def _rows(n: int) -> bytes:
    return b"".join(
        json.dumps({"input_text": f"question {i} " * 40, "output_text": f"answer {i}"}).encode() + b"\n"
        for i in range(n)
    )


def _cli(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


def test_a_pipe_is_read_once_and_whole(tmp_path):
    data = _rows(320)
    read_end, write_end = os.pipe()

    def feed():
        with os.fdopen(write_end, "wb") as handle:
            handle.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        status, out, err = _cli([f"/dev/fd/{read_end}", "--json", "--report", str(tmp_path / "r.json")])
    finally:
        writer.join()
        os.close(read_end)
    assert status == 0, err
    files = json.loads(out)["summary"]["files"]
    assert files["train"]["rows"] == 320 and files["train"]["path"] == f"/dev/fd/{read_end}"
    assert not [name for name in os.listdir(tmp_path) if name != "r.json"]


def test_a_fifo_without_a_writer_is_a_one_line_error_not_a_hang(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "FIFO_WAIT_SECONDS", 0.2, raising=False)
    fifo = str(tmp_path / "in.jsonl")
    os.mkfifo(fifo)
    result = {}
    thread = threading.Thread(target=lambda: result.update(cli=_cli([fifo])), daemon=True)
    thread.start()
    thread.join(10)
    if thread.is_alive():  # the old code blocks in open(); let it go before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        raise AssertionError("validation of a FIFO without a writer hangs")
    status, _, err = result["cli"]
    assert status == 2
    assert err.count("\n") == 1 and fifo in err and "pipe data into it" in err
    report = validate_dataset({"train": fifo}, method="supervised")
    assert report.unreadable and report.counts_by_kind() == {"file_unreadable": 1}


def test_the_normalised_file_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "train.jsonl"
    path.write_bytes(_rows(5))
    calls = []

    def failing(self, obj, fmt):
        calls.append(obj)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return obj

    monkeypatch.setattr(validate._DatasetValidator, "_normalise", failing)
    out = tmp_path / "out"
    try:
        validate_dataset({"train": str(path)}, method="supervised", normalised_dir=str(out))
    except RuntimeError:
        pass
    assert os.listdir(out) == []


def test_a_lone_surrogate_is_a_finding_and_left_out(tmp_path):
    path = tmp_path / "train.jsonl"
    good = json.dumps({"input_text": "hello \ud83d\ude00", "output_text": "a"})
    path.write_text(good + "\n" + '{"input_text": "bad \\ud83d here", "output_text": "b"}\n' + good + "\n")
    out = tmp_path / "out"
    report = validate_dataset({"train": str(path)}, method="supervised", normalised_dir=str(out))
    (finding,) = [f for f in report.findings if f.kind == "lone_surrogate"]
    assert (finding.line, finding.field, finding.severity) == (2, "input_text", "error")
    assert finding.message == "text holds a lone surrogate (\\ud83d); fix the encoding"
    assert len((out / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 2
    report.write_json(str(tmp_path / "r.json"))
    report.render_html()


# One-line prompts of the shapes Google's tuning guides use (written for these tests).
_CLASSES = (
    "Classify the following text into one of the following classes: [HR, Sales, Marketing, Customer Service]."
)
_TICKETS = [
    ("Are you currently hiring?", "HR"),
    ("Can I get a quote for 500 seats?", "Sales"),
    ("Who runs your newsletter campaigns?", "Marketing"),
    ("My order arrived broken, what now?", "Customer Service"),
    ("Do you offer internships in summer?", "HR"),
    ("Is there a volume discount?", "Sales"),
    ("How can I unsubscribe from the promotional emails?", "Marketing"),
    ("I was charged twice for one order.", "Customer Service"),
]


def _write(path, rows):
    path.write_text("".join(json.dumps({"input_text": p, "output_text": o}) + "\n" for p, o in rows))
    return str(path)


def test_one_line_classification_prompts_have_their_classes_parsed(tmp_path):
    rows = [(f"{_CLASSES} Text: {text}", label) for text, label in _TICKETS]
    rows.append((f"{_CLASSES} Text: Please reset my password.", "IT Support"))
    report = validate_dataset(
        {"train": _write(tmp_path / "t.jsonl", rows)}, method="supervised", task="classification"
    )
    found = [f for f in report.findings if f.kind == "class_not_in_instruction"]
    assert [(f.line, f.field) for f in found] == [(9, "output")]
    assert "'IT Support'" in found[0].message
    assert report.summary["files"]["train"]["classes_in_instruction"] == [
        "hr",
        "sales",
        "marketing",
        "customer service",
    ]
    # Google's own example: brackets and no full stop before "Text:".
    prompt = "Classify the following text into one of the following classes: [business, entertainment] Text: 5 stocks to buy now"
    from tunekit.components.data_validation.quality import class_list

    assert class_list(prompt) == ("business", "entertainment")


_CONTEXT = (
    "During the Last Glacial Maximum (LGM), about 26,000 to 20,000 years ago, ice sheets covered much of North "
    "America and northern Europe, and sea level was about 125 metres lower than today."
)
_QA = [
    ("What does LGM stand for?", "Last Glacial Maximum"),
    ("How much lower was sea level?", "about 125 metres"),
    ("When did the LGM end?", "20,000 years ago"),
    ("Which continents were covered?", "North America and northern Europe"),
]


def test_one_line_question_context_prompts_are_checked(tmp_path):
    rows = [(f"question: {q} context: {_CONTEXT}", a) for q, a in _QA]
    rows.append((f"question: What came after the LGM? context: {_CONTEXT}", "the Holocene"))
    report = validate_dataset(
        {"train": _write(tmp_path / "t.jsonl", rows)}, method="supervised", task="extractive_qa"
    )
    counts = report.counts_by_kind()
    assert "missing_context" not in counts
    assert [(f.line, f.kind) for f in report.findings if f.kind == "answer_not_in_context"] == [
        (5, "answer_not_in_context")
    ]


def test_bare_classification_prompts_get_a_missing_instruction_warning(tmp_path):
    rows = [
        ("5 stocks to buy now", "business"),
        ("The new album tops the charts", "entertainment"),
        (
            "Classify the following text into one of the following classes: [business, entertainment] Text: Oil slips",
            "business",
        ),
        ("Is this headline business or entertainment?\nHeadline: Box office record", "entertainment"),
    ]
    report = validate_dataset(
        {"train": _write(tmp_path / "t.jsonl", rows)}, method="supervised", task="classification"
    )
    found = [f for f in report.findings if f.kind == "missing_instruction"]
    assert [(f.line, f.field, f.severity) for f in found] == [(1, "input", "warning"), (2, "input", "warning")]
    assert "prediction time" in found[0].hint
