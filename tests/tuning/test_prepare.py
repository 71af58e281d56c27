import json

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.tuning.prepare import prepare_supervised


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def read(path):
    return [json.loads(line) for line in open(path)]


def test_text_pairs_to_gemini_with_holdout(tmp_path):
    train = write(tmp_path / "t.jsonl", [{"input_text": f"q{i}", "output_text": f"a{i}"} for i in range(20)])
    result = prepare_supervised(
        train,
        None,
        backend="vertex",
        train_out=str(tmp_path / "o.jsonl"),
        validation_out=str(tmp_path / "v.jsonl"),
    )
    assert (result.train_rows, result.validation_rows, result.held_out) == (18, 2, True)
    rows = read(tmp_path / "o.jsonl") + read(tmp_path / "v.jsonl")
    assert len(rows) == 20  # every input row is in exactly one output
    assert rows[0]["contents"][0]["role"] == "user"
    assert rows[0]["contents"][1] == {
        "role": "model",
        "parts": [{"text": rows[0]["contents"][0]["parts"][0]["text"].replace("q", "a")}],
    }
    assert sorted(r["contents"][0]["parts"][0]["text"] for r in rows) == sorted(f"q{i}" for i in range(20))


def test_chat_to_prompt_completion_with_validation_file(tmp_path):
    chat = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "model", "content": "Hello"},
        ]
    }
    train = write(tmp_path / "t.jsonl", [chat] * 3)
    val = write(tmp_path / "v.jsonl", [{"input_text": "x", "output_text": "y"}])
    result = prepare_supervised(
        train, val, backend="local", train_out=str(tmp_path / "o.jsonl"), validation_out=str(tmp_path / "ov.jsonl")
    )
    assert result.source_format == "chat" and not result.held_out
    assert read(tmp_path / "o.jsonl")[0] == {
        "prompt": "system: Be brief.\nuser: Hi\nmodel:",
        "completion": "Hello",
    }
    assert read(tmp_path / "ov.jsonl") == [{"prompt": "x", "completion": "y"}]


def test_gemini_with_system_instruction_round_trips(tmp_path):
    row = {
        "systemInstruction": {"role": "system", "parts": [{"text": "Classify."}]},
        "contents": [{"role": "user", "parts": [{"text": "A"}]}, {"role": "model", "parts": [{"text": "B"}]}],
    }
    train = write(tmp_path / "t.jsonl", [row, row])
    prepare_supervised(
        train,
        train,
        backend="vertex",
        train_out=str(tmp_path / "o.jsonl"),
        validation_out=str(tmp_path / "v.jsonl"),
    )
    assert read(tmp_path / "o.jsonl")[0] == row


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"input_text": "no answer"}], "no answer to learn"),
        ([{"prompt": "x"}], "unknown format"),
        ([], "empty"),
    ],
)
def test_bad_datasets(tmp_path, rows, message):
    train = write(tmp_path / "t.jsonl", rows)
    with pytest.raises(UserError, match=message) as info:
        prepare_supervised(
            train, None, backend="local", train_out=str(tmp_path / "o"), validation_out=str(tmp_path / "v")
        )
    assert "t.jsonl" in str(info.value)


def test_not_jsonl(tmp_path):
    path = tmp_path / "array.jsonl"
    path.write_text('[{"input_text": "a", "output_text": "b"}]\n')
    with pytest.raises(UserError, match="JSON array") as info:
        prepare_supervised(
            str(path), None, backend="local", train_out=str(tmp_path / "o"), validation_out=str(tmp_path / "v")
        )
    assert ":1" in str(info.value)


def test_unknown_backend(tmp_path):
    train = write(tmp_path / "t.jsonl", [{"input_text": "a", "output_text": "b"}] * 2)
    with pytest.raises(UserError, match="unknown backend"):
        prepare_supervised(
            train, None, backend="tpu", train_out=str(tmp_path / "o"), validation_out=str(tmp_path / "v")
        )
