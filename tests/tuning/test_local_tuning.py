import json
import os

import pytest
from tuning_helpers import EXAMPLES_DATA

from tunekit.components.common.errors import UserError
from tunekit.components.model_clients.base import STATUSES, GenerationConfig, Prompt
from tunekit.components.model_clients.hf import HFLocalClient
from tunekit.components.tuning.lora import PRESETS, TRAINING_LOG, LocalTuningConfig, read_prompt_completions
from tunekit.components.tuning.supervised.local import tune_local
from tunekit.components.tuning.tiny import make_tiny_model

pytest.importorskip("torch")
pytest.importorskip("peft")

# The smallest models that still learn something: a tuning run of quick_test takes about a second.
SIZES = {
    "seq2seq": {"d_model": 32, "d_kv": 8, "num_heads": 4, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1},
    "causal": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4},
}
LABELS = ["billing", "technical", "shipping", "account"]
MESSAGES = ["card charged twice", "app crashes", "parcel is late", "reset password", "refund please", "error 500"]


def _rows(count):
    return [
        {"prompt": f"Route: {MESSAGES[i % len(MESSAGES)]}\nTeam:", "completion": LABELS[i % len(LABELS)]}
        for i in range(count)
    ]


def _write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return _write(root / "train.jsonl", _rows(12)), _write(root / "validation.jsonl", _rows(4))


@pytest.fixture(scope="module", params=["seq2seq", "causal"])
def tuned(request, tmp_path_factory, data):
    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    base = make_tiny_model(str(root / "base"), kind, **SIZES[kind])
    steps = []
    config = LocalTuningConfig.preset("quick_test", max_steps=8)
    summary = tune_local(base, data[0], data[1], str(root / "out"), config, progress=lambda *a: steps.append(a))
    return kind, base, str(root / "out"), summary, steps


def test_tune_local_writes_adapter_tokenizer_and_log(tuned):
    kind, base, out, summary, steps = tuned
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer_config.json", TRAINING_LOG):
        assert os.path.isfile(os.path.join(out, name)), name
    with open(os.path.join(out, TRAINING_LOG)) as handle:
        log = json.load(handle)
    assert log["is_encoder_decoder"] == (kind == "seq2seq")
    assert [entry["step"] for entry in log["log"]] == list(range(1, 9))
    assert log["eval"][-1]["eval_loss"] == summary["eval_loss"]
    assert summary["steps"] == 8 and summary["train_examples"] == 12 and summary["validation_examples"] == 4
    assert summary["wall_seconds"] > 0 and summary["examples_per_second"] > 0
    assert summary["adapter"] is True and summary["device"] == "cpu"
    assert [s[:2] for s in steps] == [(i, 8) for i in range(1, 9)]


def test_tune_local_loss_decreases(tuned):
    _, _, out, _, _ = tuned
    with open(os.path.join(out, TRAINING_LOG)) as handle:
        losses = [entry["loss"] for entry in json.load(handle)["log"]]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_client_loads_adapter_and_keeps_order(tuned):
    _, base, out, _, _ = tuned
    prompts = [Prompt(row["prompt"]) for row in _rows(5)] + [Prompt("x"), Prompt("a much longer prompt " * 3)]
    config = GenerationConfig(max_output_tokens=6)
    client = HFLocalClient(base, adapter_dir=out, batch_size=3, device="cpu")
    batched = client.generate(prompts, config)
    assert len(batched) == len(prompts)
    # Batches are formed by length; each answer must still be the one its own prompt gets alone.
    alone = [client.generate([p], config)[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert all(g.status in STATUSES and g.input_tokens > 0 for g in batched)
    # An adapter directory on its own names its base model.
    assert [g.text for g in HFLocalClient(out, device="cpu").generate(prompts, config)] == [
        g.text for g in batched
    ]


def test_tune_local_is_deterministic_and_merges(tmp_path, data):
    base = make_tiny_model(str(tmp_path / "base"), "seq2seq", **SIZES["seq2seq"])
    config = LocalTuningConfig.preset("quick_test", max_steps=3)
    first = tune_local(base, data[0], None, str(tmp_path / "a"), config)
    merged = LocalTuningConfig.preset("quick_test", max_steps=3, merge_adapter=True)
    second = tune_local(base, data[0], None, str(tmp_path / "b"), merged)
    assert first["train_loss"] == second["train_loss"]
    assert first["eval_loss"] is None and second["adapter"] is False
    assert not os.path.exists(tmp_path / "b" / "adapter_config.json")
    prompts = [Prompt(row["prompt"]) for row in _rows(3)]
    config = GenerationConfig(max_output_tokens=4)
    from_adapter = HFLocalClient(base, adapter_dir=str(tmp_path / "a"), device="cpu").generate(prompts, config)
    from_merged = HFLocalClient(str(tmp_path / "b"), device="cpu").generate(prompts, config)
    assert [g.text for g in from_adapter] == [g.text for g in from_merged]


def test_read_prompt_completions_accepts_text_pairs_and_chat(tmp_path):
    pairs = _write(tmp_path / "pairs.jsonl", [{"input_text": "q", "output_text": "a"}])
    assert read_prompt_completions(pairs) == [{"prompt": "q", "completion": "a"}]
    chat = _write(
        tmp_path / "chat.jsonl",
        [
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "q"},
                    {"role": "model", "content": "a"},
                ]
            }
        ],
    )
    assert read_prompt_completions(chat) == [{"prompt": "system: s\nuser: q\nmodel:", "completion": "a"}]
    unlabelled = _write(tmp_path / "unlabelled.jsonl", [{"input_text": "q"}])
    with pytest.raises(UserError, match="no answer"):
        read_prompt_completions(unlabelled)
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "q", "completion": 3}])
    with pytest.raises(UserError, match="must both be strings"):
        read_prompt_completions(bad)


def test_config_from_dict_and_presets():
    assert LocalTuningConfig.from_dict({"lora_r": 4}).lora_r == 4
    with pytest.raises(UserError, match="unknown local tuning setting"):
        LocalTuningConfig.from_dict({"lora_rank": 4})
    with pytest.raises(UserError, match="unknown preset"):
        LocalTuningConfig.preset("fast")
    for name in PRESETS:
        assert LocalTuningConfig.preset(name).max_steps > 0


def test_tune_local_rejects_missing_base(tmp_path, data):
    with pytest.raises(UserError, match="base model directory not found"):
        tune_local(str(tmp_path / "nope"), data[0], None, str(tmp_path / "out"), LocalTuningConfig())


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_make_tiny_model_loads_with_auto_classes(tmp_path, kind):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    path = make_tiny_model(str(tmp_path), kind, seed=3, **SIZES[kind])
    config = AutoConfig.from_pretrained(path)
    assert config.is_encoder_decoder == (kind == "seq2seq")
    model = (AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM).from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.vocab_size == len(tokenizer)
    assert tokenizer.decode(tokenizer("héllo", add_special_tokens=False)["input_ids"]) == "héllo"
    again = make_tiny_model(str(tmp_path / "again"), kind, seed=3, **SIZES[kind])
    second = type(model).from_pretrained(again)
    first_weights, second_weights = model.state_dict(), second.state_dict()
    assert all((first_weights[k] == second_weights[k]).all() for k in first_weights)


def test_make_tiny_model_rejects_unknown_kind(tmp_path):
    with pytest.raises(UserError, match="unknown tiny model kind"):
        make_tiny_model(str(tmp_path), "encoder")


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,overrides", [("seq2seq", {}), ("causal", {"modules_to_save": ["lm_head"]})], ids=["seq2seq", "causal"]
)
def test_demo_preset_beats_the_untuned_model(tmp_path, kind, overrides):
    """The demo claim: about a minute of CPU training takes the tiny model from ~0 to >= 0.6 accuracy."""
    from tunekit.components.evaluation.metrics import compute_metrics

    train = os.path.join(EXAMPLES_DATA, "support_tickets_train.jsonl")
    validation = os.path.join(EXAMPLES_DATA, "support_tickets_validation.jsonl")
    rows = read_prompt_completions(validation)
    prompts = [Prompt(row["prompt"]) for row in rows]
    references = [row["completion"] for row in rows]
    config = GenerationConfig(max_output_tokens=16)
    base = make_tiny_model(str(tmp_path / "base"), kind)
    before = HFLocalClient(base, device="cpu").generate_texts([p.text for p in prompts], config)
    summary = tune_local(
        base, train, validation, str(tmp_path / "out"), LocalTuningConfig.preset("demo", device="cpu", **overrides)
    )
    after = HFLocalClient(base, adapter_dir=str(tmp_path / "out"), device="cpu").generate(prompts, config)
    base_accuracy = compute_metrics("classification", before, references)["accuracy"]
    tuned_accuracy = compute_metrics("classification", [g.text for g in after], references)["accuracy"]
    print(f"{kind}: base {base_accuracy:.3f} tuned {tuned_accuracy:.3f} {summary}")
    assert base_accuracy <= 0.1
    assert tuned_accuracy >= 0.6


def test_packing_and_gradient_checkpointing_train_a_causal_model(tmp_path, data):
    """TRL's best-fit packing (causal only) and gradient checkpointing: the same steps, a finite loss, an adapter."""
    base = make_tiny_model(str(tmp_path / "base"), "causal", **SIZES["causal"])
    config = LocalTuningConfig.preset("quick_test", max_steps=3, packing=True, gradient_checkpointing=True)
    summary = tune_local(base, data[0], data[1], str(tmp_path / "out"), config)
    with open(tmp_path / "out" / TRAINING_LOG) as handle:
        log = json.load(handle)
    assert log["trainer"] == "SFTTrainer" and [e["step"] for e in log["log"]] == [1, 2, 3]
    assert summary["steps"] == 3 and summary["train_loss"] > 0 and summary["eval_loss"] > 0
    assert os.path.isfile(tmp_path / "out" / "adapter_model.safetensors")
    seq2seq = make_tiny_model(str(tmp_path / "seq2seq"), "seq2seq", **SIZES["seq2seq"])
    with pytest.raises(UserError, match="packing is for causal models"):
        tune_local(seq2seq, data[0], None, str(tmp_path / "s"), config)
