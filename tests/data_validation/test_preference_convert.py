"""Converters between human preferences, RLHF prompts and Gemini preference data, and their validation."""

import json
import os

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.data_validation import checks
from tunekit.components.data_validation.preference_convert import (
    convert_file,
    gemini_to_human,
    human_to_gemini,
    pair_to_human,
    parse_pair,
    parse_prompt,
    read_pairs,
    to_gemini_sft,
    to_prompt_row,
    to_trl_pair,
)
from tunekit.components.data_validation.validate import validate_dataset
from tunekit.components.tuning.preference.steps import run_prepare_preference

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data", "preference")

HUMAN = {
    "input_text": "My router blinks red.",
    "candidate_0": "Figure it out.",
    "candidate_1": "Sorry. Please restart it.",
    "choice": 1,
}
CHAT = {
    "messages": [
        {"role": "user", "content": "Hi, a question about my printer."},
        {"author": "assistant", "content": "Of course. What happened?"},
        {"role": "user", "content": "It prints blank pages."},
    ],
    "candidate_0": "Thanks. Please replace the ink cartridge.",
    "candidate_1": "Printers can be tricky.",
    "choice": 0,
}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_human_to_gemini_puts_the_choice_first_with_score_one():
    row = human_to_gemini(HUMAN)
    assert row == {
        "contents": [{"role": "user", "parts": [{"text": "My router blinks red."}]}],
        "completions": [
            {"score": 1, "completion": {"role": "model", "parts": [{"text": "Sorry. Please restart it."}]}},
            {"score": 0, "completion": {"role": "model", "parts": [{"text": "Figure it out."}]}},
        ],
    }
    assert checks.detect(row, "preference") == checks.GEMINI_PREFERENCE


def test_messages_become_user_and_model_turns_and_back():
    row = human_to_gemini(CHAT)
    assert [c["role"] for c in row["contents"]] == ["user", "model", "user"]
    back = gemini_to_human(row)
    assert back["messages"][1] == {"role": "assistant", "content": "Of course. What happened?"}
    assert back["candidate_0"] == CHAT["candidate_0"] and back["choice"] == 0


@pytest.mark.parametrize("row", [HUMAN, CHAT])
def test_round_trip_keeps_the_pair(row):
    pair = parse_pair(row)
    again = parse_pair(gemini_to_human(human_to_gemini(row)))
    assert (again.text, again.chosen, again.rejected) == (pair.text, pair.chosen, pair.rejected)
    assert parse_pair(pair_to_human(pair, choice=1)).chosen == pair.chosen


def test_system_instruction_is_kept_in_gemini_and_refused_in_the_human_format():
    row = {"systemInstruction": {"parts": [{"text": "Be brief."}]}, **human_to_gemini(HUMAN)}
    pair = parse_pair(row, line=7)
    assert pair.system == "Be brief." and pair.text.startswith("system: Be brief.")
    assert to_gemini_sft(pair)["systemInstruction"]["parts"][0]["text"] == "Be brief."
    with pytest.raises(UserError, match="no system instruction") as info:
        pair_to_human(pair)
    assert info.value.line == 7


def test_sft_prompt_and_trl_shapes():
    pair = parse_pair(HUMAN)
    assert to_gemini_sft(pair)["contents"][-1] == {
        "role": "model",
        "parts": [{"text": "Sorry. Please restart it."}],
    }
    assert to_trl_pair(pair) == {
        "prompt": "My router blinks red.",
        "chosen": "Sorry. Please restart it.",
        "rejected": "Figure it out.",
    }
    assert to_prompt_row(parse_prompt(CHAT))["messages"][-1]["content"] == "It prints blank pages."
    assert parse_prompt({"input_text": "Hello"}).text == "Hello"


def test_convert_file_writes_one_row_per_input_row(tmp_path):
    source = write(tmp_path / "h.jsonl", [HUMAN, CHAT])
    assert convert_file(source, str(tmp_path / "g.jsonl"), "gemini_preference") == 2
    assert convert_file(str(tmp_path / "g.jsonl"), str(tmp_path / "h2.jsonl"), "human_preference") == 2
    assert convert_file(source, str(tmp_path / "p.jsonl"), "prompt") == 2
    assert convert_file(source, str(tmp_path / "s.jsonl"), "sft") == 2
    for name, method in (("g", "preference"), ("h2", "preference"), ("p", "preference"), ("s", "supervised")):
        report = validate_dataset({"train": str(tmp_path / f"{name}.jsonl")}, method=method)
        assert report.ok, (name, report.text_summary())
    with pytest.raises(UserError, match="unknown target"):
        convert_file(source, str(tmp_path / "x.jsonl"), "csv")


def test_a_bad_row_names_file_line_and_field(tmp_path):
    source = write(tmp_path / "bad.jsonl", [HUMAN, {**HUMAN, "choice": "1"}])
    with pytest.raises(UserError) as info:
        read_pairs(source)
    assert (info.value.path, info.value.line, info.value.field) == (source, 2, "choice")
    with pytest.raises(UserError, match="not a preference row"):
        parse_pair({"input_text": "only a prompt"})


@pytest.mark.parametrize("name", ["train.jsonl", "eval.jsonl", "prompts.jsonl", "train_gemini.jsonl"])
def test_bundled_sample_data_is_valid(name):
    report = validate_dataset({"train": os.path.join(DATA, name)}, method="preference")
    assert report.ok and not report.counts_by_kind(), report.text_summary()


def test_sample_data_is_what_the_generator_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_preference_data", os.path.join(DATA, "..", "..", "make_preference_data.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--out", str(tmp_path)])
    for name in ("train.jsonl", "eval.jsonl", "prompts.jsonl", "train_gemini.jsonl"):
        assert (tmp_path / name).read_text() == open(os.path.join(DATA, name)).read(), name


def test_prepare_holds_out_pairs_and_drops_nothing(tmp_path):
    validated = tmp_path / "validated"
    validated.mkdir()
    rows = [{**HUMAN, "input_text": f"Router {i} blinks red."} for i in range(10)]
    write(validated / "train.jsonl", rows)
    out = {name: str(tmp_path / name) for name in ("pref", "eval", "prompts", "sft", "reports")}
    prompts = write(tmp_path / "prompts.jsonl", [{"input_text": f"Question {i}"} for i in range(3)])
    counts = run_prepare_preference(
        validated_dir=str(validated),
        prompt_dataset_uri=prompts,
        sft_dataset_uri="",
        eval_split=0.3,
        seed=0,
        preference_path=out["pref"],
        eval_path=out["eval"],
        prompt_path=out["prompts"],
        sft_path=out["sft"],
        reports_dir=out["reports"],
    )
    assert counts["train_pairs"] + counts["eval_pairs"] == 10 and counts["eval_pairs"] == 3
    assert counts["prompts"] == 3 and counts["sft_rows"] == 7
    train = {p.text for p in read_pairs(out["pref"])}
    held = {p.text for p in read_pairs(out["eval"])}
    assert not train & held and len(train | held) == 10


def test_prepare_fails_on_an_invalid_prompt_dataset(tmp_path):
    from tunekit.components.data_validation.steps import ValidationFailed

    validated = tmp_path / "validated"
    validated.mkdir()
    write(validated / "train.jsonl", [HUMAN, {**HUMAN, "input_text": "Other"}])
    bad = write(tmp_path / "prompts.jsonl", [{"input_text": ""}])
    with pytest.raises(ValidationFailed, match="empty"):
        run_prepare_preference(
            validated_dir=str(validated),
            prompt_dataset_uri=bad,
            sft_dataset_uri="",
            eval_split=0.5,
            seed=0,
            preference_path=str(tmp_path / "p"),
            eval_path=str(tmp_path / "e"),
            prompt_path=str(tmp_path / "q"),
            sft_path=str(tmp_path / "s"),
            reports_dir=str(tmp_path / "r"),
        )
    assert os.path.exists(tmp_path / "r" / "prompts_report.json")
