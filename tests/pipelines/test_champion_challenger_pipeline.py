"""Champion/challenger through the local KFP runner: a worse second run does not replace the first."""

import pytest

from tunekit.components.common.jsonl import write_jsonl
from tunekit.components.deployment import local_registry
from tunekit.pipelines.local_run import run_local
from tunekit.pipelines.registry import METHODS
from tunekit.pipelines.supervised_tuning import SupervisedTuningConfig

SIZE = {"d_model": 32, "d_kv": 8, "num_heads": 4, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1}


@pytest.mark.slow
def test_second_worse_run_keeps_the_first_model_as_champion(tmp_path):
    from tunekit.components.tuning.tiny import make_tiny_model

    base = make_tiny_model(str(tmp_path / "base"), "seq2seq", **SIZE)
    # 8 of 10 held-out rows want "ok": a model that always says "ok" scores 0.8, one that says "no" 0.2.
    validation = str(tmp_path / "validation.jsonl")
    write_jsonl(
        validation, [{"input_text": f"ticket {i}", "output_text": "ok" if i < 8 else "no"} for i in range(10)]
    )
    out = tmp_path / "out"

    def run(answer):
        train = str(tmp_path / f"train-{answer}.jsonl")
        write_jsonl(train, [{"input_text": f"ticket {i}", "output_text": answer} for i in range(100, 108)])
        config = SupervisedTuningConfig(
            train_dataset_uri=train,
            validation_dataset_uri=validation,
            task="classification",
            backend="local",
            base_model=base,
            train_steps=20,
            learning_rate=3e-2,
            batch_size=8,
            lora_rank=4,
            local_options={"modules_to_save": ["lm_head"], "max_target_length": 8, "device": "cpu"},
            max_output_tokens=4,
            purpose="ticket-routing",
        )
        return run_local(METHODS["supervised-tuning"], config, str(out))

    first = run("ok")
    assert first.succeeded, first.failure
    metrics = first.metadata("evaluate-supervised")
    assert metrics["tuned_accuracy"] == pytest.approx(0.8) and metrics["gate_passed"] is True
    assert "deploy-model" in first.task_outputs
    registry = str(out / "registry.json")
    champion = local_registry.champion(registry, "ticket-routing")
    assert champion["model_dir"] == first.artifact_dir("tune-supervised", "tuned_model")
    confusion = first.metadata("evaluate-supervised", "confusion_matrix")
    assert confusion["confusionMatrix"]["rows"][0]["row"] == [0, 2]  # the "no" rows, said "ok"

    second = run("no")  # new data (so the fingerprint check lets it train), a worse model
    assert second.succeeded, second.failure
    metrics = second.metadata("evaluate-supervised")
    assert metrics["tuned_accuracy"] == pytest.approx(0.2) and metrics["champion_accuracy"] == pytest.approx(0.8)
    assert metrics["gate_passed"] is False and "champion ticket-routing-1" in metrics["gate_reason"]
    assert metrics["gate_delta_champion"] == pytest.approx(-0.6)
    assert "deploy-model" not in second.task_outputs
    assert local_registry.champion(registry, "ticket-routing")["model_dir"] == champion["model_dir"]
