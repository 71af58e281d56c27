"""The tuning bill: an estimate from counted tokens x epochs x the dated price before the job, the billed tokens
from the job's tuning_data_stats after it; a model without a price is unpriced, never free."""

import json
import math

import pytest
from fake_vertex import serve_fake_vertex
from google.genai import types

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients import pricing
from tunekit.components.tuning import cost


@pytest.fixture
def vertex(monkeypatch, tmp_path):
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=1, gcs_root=str(tmp_path / "gcs"))


def _gemini_rows(n: int) -> list[dict]:
    return [
        {
            "systemInstruction": {"parts": [{"text": "route the ticket"}]},
            "contents": [
                {"role": "user", "parts": [{"text": f"ticket number {i}"}]},
                {"role": "model", "parts": [{"text": "billing"}]},
            ],
        }
        for i in range(n)
    ]


def _write(path, rows) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_an_open_model_is_priced_per_million_training_tokens():
    estimate = cost.estimate("meta/llama3_1@llama-3.1-8b-instruct", 2_000_000, 3, counted_by="countTokens")
    assert estimate.price_per_million == 0.67 and estimate.training_tokens == 6_000_000
    assert estimate.dollars == pytest.approx(4.02)
    assert "$4.02" in estimate.line() and pricing.TUNING_PRICES_AS_OF in estimate.line()
    assert cost.estimate("qwen/qwen3@qwen3-32b", 1_000_000, 1, counted_by="x").dollars == pytest.approx(6.57)


def test_a_model_without_a_price_is_unpriced_not_free():
    estimate = cost.estimate("gemini-3.5-flash", 1000, 2, counted_by="countTokens")
    assert estimate.price_per_million is None and estimate.dollars is None
    assert "unpriced" in estimate.line()
    # Unknown epochs (the service's default): the tokens are known, the dollars are not.
    assert cost.estimate("qwen/qwen3@qwen3-32b", 1000, 0, counted_by="x").dollars is None


def test_a_price_table_overrides_and_bad_prices_are_one_line():
    table = pricing.parse_tuning_price_table({"gemini-3.5-flash": 5})
    assert cost.estimate("gemini-3.5-flash", 1_000_000, 2, counted_by="x", prices=table).dollars == 10.0
    with pytest.raises(UserError, match="dollars per million training tokens") as caught:
        pricing.parse_tuning_price_table({"gemini-3.5-flash": "cheap"})
    assert caught.value.field == "tuning_price_table"


def test_a_preference_example_counts_its_prompt_twice():
    assert cost.preference_example_tokens(prompt=10, chosen=4, rejected=6) == 30


def test_count_tokens_asks_the_service_in_batches(vertex, tmp_path):
    path = _write(tmp_path / "train.jsonl", _gemini_rows(120))
    tokens, examples = cost.count_gemini_tokens(path, "gemini-2.5-flash", vertex.genai_client())
    # The fake counts whitespace words: system (3) + prompt (3) + answer (1) per row.
    assert (tokens, examples) == (120 * 7, 120)
    assert len(vertex.requests_to(r":countTokens$", "POST")) == math.ceil(120 / cost.COUNT_BATCH_ROWS)


def test_billed_tokens_come_from_the_jobs_tuning_data_stats(vertex, tmp_path):
    _write(tmp_path / "gcs" / "bucket" / "train.jsonl", _gemini_rows(10))
    client = vertex.genai_client()
    job = client.tunings.tune(
        base_model="gemini-2.5-flash",
        training_dataset=types.TuningDataset(gcs_uri="gs://bucket/train.jsonl"),
        config=types.CreateTuningJobConfig(epoch_count=4),
    )
    job = client.tunings.get(name=job.name)
    after = cost.billed(job, "gemini-2.5-flash", prices={"gemini-2.5-flash": 2.0})
    assert after.counted_by == "tuning_data_stats" and after.examples == 10
    assert after.dataset_tokens == 70 and after.epochs == 4 and after.training_tokens == 280
    assert after.dollars == pytest.approx(280 * 2.0 / 1e6)
    # The estimate before the job counts the same tokens.
    before = cost.gemini_tuning_costs(
        base_model="gemini-2.5-flash",
        train_path=str(tmp_path / "gcs" / "bucket" / "train.jsonl"),
        epochs=4,
        client=client,
    )
    assert before.training_tokens == after.training_tokens


def test_a_job_without_stats_bills_nothing_known():
    assert cost.billed(types.TuningJob(name="j"), "gemini-2.5-flash") is None


def test_the_vertex_tuning_step_prints_and_records_its_bill_before_and_after(vertex, tmp_path, capsys):
    from tuning_helpers import ON_FAKE_VERTEX

    from tunekit.components.tuning.supervised.steps import run_tune

    train = _write(tmp_path / "train.jsonl", _gemini_rows(9))
    metadata: dict = {}
    record = run_tune(
        backend="vertex",
        base_model="gemini-2.5-flash",
        task="classification",
        train_path=train,
        train_uri="gs://bucket/root/train_dataset",
        validation_path="",
        validation_uri="",
        model_path=str(tmp_path / "tuned"),
        model_metadata=metadata,
        epoch_count=3,
        **ON_FAKE_VERTEX,
    )
    recorded = record["tuning_cost"]
    assert metadata["estimated_training_tokens"] == metadata["billed_training_tokens"] == 189
    assert "estimated_tuning_dollars" not in metadata  # unpriced, not free
    assert recorded["estimate"]["counted_by"] == "countTokens"
    assert (recorded["estimate"]["dataset_tokens"], recorded["estimate"]["training_tokens"]) == (63, 189)
    assert recorded["billed"]["counted_by"] == "tuning_data_stats"
    assert recorded["billed"]["training_tokens"] == 189 and recorded["billed"]["epochs"] == 3
    # gemini-2.5-flash has no tuning price in the table: unpriced, and the log says so.
    assert recorded["estimate"]["dollars"] is None
    printed = capsys.readouterr().out
    assert "tuning cost estimated before the job (countTokens): 63 tokens x 3 epochs" in printed
    assert "tuning cost billed (tuning_data_stats)" in printed and "unpriced" in printed


def test_the_local_tuning_step_counts_with_the_tokenizer_and_is_unpriced(tmp_path, capsys):
    pytest.importorskip("peft")
    from transformers import AutoTokenizer

    from tunekit.components.tuning.supervised.steps import run_tune
    from tunekit.components.tuning.tiny import make_tiny_model

    sizes = {"d_model": 32, "d_kv": 8, "num_heads": 4, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1}
    base = make_tiny_model(str(tmp_path / "base"), "seq2seq", **sizes)
    rows = [{"prompt": f"ticket {i} about my invoice", "completion": "billing"} for i in range(8)]
    train = _write(tmp_path / "train.jsonl", rows)
    metadata: dict = {}
    record = run_tune(
        backend="local",
        base_model=base,
        task="classification",
        train_path=train,
        train_uri="",
        validation_path="",
        validation_uri="",
        model_path=str(tmp_path / "tuned"),
        model_metadata=metadata,
        train_steps=2,
        batch_size=4,
    )
    tokenizer = AutoTokenizer.from_pretrained(base)
    expected = sum(
        len(tokenizer(r[k], add_special_tokens=False)["input_ids"]) for r in rows for k in ("prompt", "completion")
    )
    estimate = record["tuning_cost"]["estimate"]
    # 2 steps x 4 examples over 8 rows: one pass over the data.
    assert (estimate["counted_by"], estimate["dataset_tokens"], estimate["epochs"]) == ("tokenizer", expected, 1)
    assert metadata["estimated_training_tokens"] == expected and estimate["dollars"] is None
    assert "tuning cost estimated before training (tokenizer)" in capsys.readouterr().out


def test_a_missing_local_base_model_is_one_user_error_before_any_counting(tmp_path):
    from tunekit.components.tuning.lora import LocalTuningConfig

    train = _write(tmp_path / "train.jsonl", [{"prompt": "p", "completion": "c"}])
    with pytest.raises(UserError, match="base model directory not found"):
        cost.local_estimate(str(tmp_path / "nope"), train, LocalTuningConfig())


def test_preference_data_counts_each_prompt_once_per_completion(vertex, tmp_path):
    rows = [
        {
            "contents": [{"role": "user", "parts": [{"text": "which team for ticket seven"}]}],
            "completions": [
                {"score": 1, "completion": {"role": "model", "parts": [{"text": "billing"}]}},
                {"score": 0, "completion": {"role": "model", "parts": [{"text": "the shipping team"}]}},
            ],
        }
    ] * 3
    path = _write(tmp_path / "preference.jsonl", rows)
    tokens, examples = cost.count_preference_tokens(path, "gemini-2.5-flash", vertex.genai_client())
    # Per row: the prompt (5 words) twice, and both completions (1 + 3 words).
    assert (tokens, examples) == (3 * (2 * 5 + 1 + 3), 3)
    before = cost.vertex_estimate(
        "gemini-2.5-flash", path, 2, project=vertex.project, location=vertex.location, preference=True
    )
    assert before.training_tokens == 2 * tokens and before.counted_by == "countTokens"


def test_an_open_model_in_the_chat_layout_is_estimated_from_its_characters(tmp_path, capsys):
    rows = [{"messages": [{"role": "user", "content": "x" * 40}, {"role": "assistant", "content": "y" * 8}]}] * 5
    path = _write(tmp_path / "open.jsonl", rows)
    before = cost.vertex_estimate("meta/llama3_1@llama-3.1-8b-instruct", path, 2, project="p", location="l")
    # About four characters a token: 10 + 2 per row.
    assert (before.counted_by, before.dataset_tokens, before.training_tokens) == ("characters/4", 60, 120)
    assert before.dollars == pytest.approx(120 * 0.67 / 1e6)
    assert "characters/4" in capsys.readouterr().out
