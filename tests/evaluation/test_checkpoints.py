"""Checkpoint selection: every checkpoint answers the same held-out rows and the best one is the candidate.

Locally the checkpoints are the trainer's ``checkpoints/checkpoint-<step>`` folders; on the fake Vertex they are a
supervised job's per-epoch checkpoints, each on its own endpoint: the best becomes the default checkpoint and the
others' endpoints are undeployed.
"""

import json
import time

import pytest
from evaluation_helpers import TEAMS, evaluate_locally, gemini_tickets, tickets, truth, write_rows
from google.genai import types

from tunekit.components.common.errors import UserError
from tunekit.components.evaluation import checkpoints as ckpt
from tunekit.components.model_clients.base import FakeClient

ROWS = tickets(10)
TRUTH = truth(ROWS)


def _adapter(folder, content: str) -> None:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_text(content)


def _checkpoint(folder, content: str, *, complete: bool = True) -> None:
    """A trainer checkpoint: the adapter, optimizer state, and the completeness mark when it was written whole."""
    _adapter(folder, content)
    (folder / "optimizer.pt").write_text("optimizer state")
    if complete:
        (folder / ckpt.COMPLETE).write_text(json.dumps({"step": int(folder.name.split("-")[1])}))


def _half_right(prompt):
    number = int(prompt.text.split()[1])
    return TRUTH[prompt.text] if number < 5 else TEAMS[(number + 1) % 2]


def test_local_selection_scores_every_checkpoint_and_keeps_the_best_adapter(tmp_path):
    write_rows(tmp_path / "v.jsonl", ROWS)
    model = tmp_path / "model"
    _adapter(model, "final")
    _checkpoint(model / "checkpoints" / "checkpoint-10", "step 10")
    _checkpoint(model / "checkpoints" / "checkpoint-20", "step 20")
    _checkpoint(model / "checkpoints" / "checkpoint-30", "cut short", complete=False)
    clients = {
        "base": FakeClient(lambda p: "no idea"),
        "checkpoint-10": FakeClient(lambda p: TRUTH[p.text]),
        "checkpoint-20": FakeClient(_half_right),
    }
    result = evaluate_locally(tmp_path, "model", clients, select_checkpoint=True)

    assert [c.checkpoint_id for c in ckpt.local_checkpoints(str(model))] == ["10", "20"]
    assert result.metrics["tuned"]["accuracy"] == 1.0 and set(result.metrics) == {"base", "tuned"}
    assert result.figures["checkpoint_10_accuracy"] == 1.0 and result.figures["checkpoint_20_accuracy"] == 0.5
    low, high = result.figures["checkpoint_20_accuracy_ci_low"], result.figures["checkpoint_20_accuracy_ci_high"]
    assert 0.0 < low < 0.5 < high < 1.0
    selection = result.metadata["checkpoints"]
    assert selection["best"] == "10" and selection["default_changed"] and selection["undeployed"] == []
    assert [c["value"] for c in selection["checkpoints"]] == [1.0, 0.5]
    # The winner's adapter is now the tuned model's (what deploy and serve load); the rest of the folder stays.
    assert (model / "adapter_model.safetensors").read_text() == "step 10"
    assert not (model / "optimizer.pt").exists()
    assert result.passed
    assert "## Checkpoints (accuracy, best: 10)" in (tmp_path / "model-summary.md").read_text()
    # Each row keeps what every checkpoint answered.
    row = json.loads((tmp_path / "model-pred.jsonl").read_text().splitlines()[7])
    assert row["checkpoint-20_prediction"] != row["tuned_prediction"] == row["checkpoint-10_prediction"]


def test_select_checkpoint_without_checkpoints_is_one_user_error(tmp_path):
    write_rows(tmp_path / "v.jsonl", ROWS)
    _adapter(tmp_path / "model", "final")
    clients = {"base": FakeClient(), "tuned": FakeClient()}
    with pytest.raises(UserError, match="no checkpoints to choose from") as caught:
        evaluate_locally(tmp_path, "model", clients, select_checkpoint=True)
    assert caught.value.field == "select_checkpoint"


def test_a_tie_keeps_the_default_checkpoint():
    scores = [
        ckpt.CheckpointScore(ckpt.Checkpoint("1", step=10), 0.5, 0.4, 0.6),
        ckpt.CheckpointScore(ckpt.Checkpoint("2", step=20, is_default=True), 0.5, 0.4, 0.6),
        ckpt.CheckpointScore(ckpt.Checkpoint("3", step=30), 0.4, 0.3, 0.5),
    ]
    assert ckpt.choose(scores).checkpoint_id == "2"


def _tuned_job(vertex, epochs: int):
    client = vertex.genai_client()
    job = client.tunings.tune(
        base_model="gemini-2.5-flash",
        training_dataset=types.TuningDataset(gcs_uri="gs://bucket/train.jsonl"),
        config=types.CreateTuningJobConfig(epoch_count=epochs),
    )
    for _ in range(20):
        job = client.tunings.get(name=job.name)
        if job.state == types.JobState.JOB_STATE_SUCCEEDED:
            return client, job
        time.sleep(0.05)
    raise AssertionError("the fake's job did not finish")


def test_vertex_selection_sets_the_default_checkpoint_and_undeploys_the_others(vertex, tmp_path):
    client, job = _tuned_job(vertex, epochs=3)
    listed = job.tuned_model.checkpoints
    assert [(c.checkpoint_id, c.epoch) for c in listed] == [("1", 1), ("2", 2), ("3", 3)]
    assert listed[-1].endpoint == job.tuned_model.endpoint
    # Epoch 2 is right on every row; epoch 1 on none; the final epoch (the default, on the main endpoint) on half.
    rows = gemini_tickets(8)
    right = {r["contents"][0]["parts"][0]["text"]: r["contents"][1]["parts"][0]["text"] for r in rows}
    vertex.set_responder(lambda text: right[text], listed[1].endpoint)
    vertex.set_responder(lambda text: "no idea", listed[0].endpoint)
    vertex.set_responder(lambda text: right[text] if int(text.split()[1]) < 4 else "no idea", listed[2].endpoint)
    validation = write_rows(tmp_path / "v.jsonl", rows)
    metadata = {
        "backend": "vertex",
        "tuned_model": job.tuned_model.model,
        "endpoint": job.tuned_model.endpoint,
        "job_name": job.name,
    }
    (tmp_path / "model").mkdir(exist_ok=True)
    from tunekit.components.evaluation.supervised.steps import run_evaluate

    result = run_evaluate(
        backend="vertex",
        task="classification",
        base_model="gemini-2.5-flash",
        model_path=str(tmp_path / "model"),
        model_metadata=metadata,
        validation_path=validation,
        predictions_path=str(tmp_path / "p.jsonl"),
        summary_path=str(tmp_path / "s.md"),
        project=vertex.project,
        location=vertex.location,
        select_checkpoint=True,
    )
    assert result.metrics["tuned"]["accuracy"] == 1.0
    assert [result.figures[f"checkpoint_{i}_accuracy"] for i in "123"] == [0.0, 1.0, 0.5]
    selection = result.metadata["checkpoints"]
    assert selection["best"] == "2" and selection["default_changed"]
    # The winner is the default checkpoint now, and the main endpoint answers as it does.
    assert client.models.get(model=job.tuned_model.model).default_checkpoint_id == "2"
    answer = client.models.generate_content(model=job.tuned_model.endpoint, contents="ticket 6")
    assert answer.text == right["ticket 6"]
    # The loser's endpoint is undeployed; the winner's and the main endpoint stay.
    assert selection["undeployed"] == [listed[0].endpoint] and vertex.undeployed == {listed[0].endpoint}
    # The main endpoint answered no evaluation row itself: each checkpoint answered on its own endpoint.
    assert len(vertex.requests_to(rf"{listed[1].endpoint}:generateContent$", "POST")) == 8


def test_a_job_with_only_the_last_checkpoint_has_one_to_choose(vertex):
    client = vertex.genai_client()
    job = client.tunings.tune(
        base_model="gemini-2.5-flash",
        training_dataset=types.TuningDataset(gcs_uri="gs://bucket/train.jsonl"),
        config=types.CreateTuningJobConfig(epoch_count=12, export_last_checkpoint_only=True),
    )
    job = client.tunings.get(name=job.name)
    found = ckpt.vertex_checkpoints(job, client.models.get(model=job.tuned_model.model))
    assert [(c.checkpoint_id, c.is_default, c.endpoint) for c in found] == [("1", True, job.tuned_model.endpoint)]


def test_a_local_run_keeps_its_checkpoints_at_the_eval_interval_and_the_selection_loads_them(tmp_path):
    """The trainer with keep_checkpoints leaves checkpoint-<step> adapters at eval_steps; each one answers."""
    pytest.importorskip("peft")
    from tunekit.components.tuning.lora import LocalTuningConfig
    from tunekit.components.tuning.supervised.local import tune_local
    from tunekit.components.tuning.tiny import make_tiny_model

    sizes = {"d_model": 32, "d_kv": 8, "num_heads": 4, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1}
    base = make_tiny_model(str(tmp_path / "base"), "seq2seq", **sizes)
    train = write_rows(tmp_path / "train.jsonl", tickets(12))
    validation = write_rows(tmp_path / "v.jsonl", tickets(4))
    options = {"max_steps": 6, "eval_steps": 2, "keep_checkpoints": True, "save_total_limit": 10}
    tune_local(base, train, validation, str(tmp_path / "model"), LocalTuningConfig.preset("quick_test", **options))
    assert [c.step for c in ckpt.local_checkpoints(str(tmp_path / "model"))] == [2, 4, 6]

    result = evaluate_locally(tmp_path, "model", base_model=base, select_checkpoint=True, max_output_tokens=4)
    selection = result.metadata["checkpoints"]
    assert [c["checkpoint_id"] for c in selection["checkpoints"]] == ["2", "4", "6"]
    assert all(f"checkpoint_{s}_accuracy_ci_low" in result.figures for s in "246")
    best = selection["best"]
    assert result.metrics["tuned"]["accuracy"] == result.figures[f"checkpoint_{best}_accuracy"]


def test_local_selection_without_kept_checkpoints_fails_when_the_config_is_loaded(tmp_path):
    from tunekit.pipelines.config import load_config
    from tunekit.pipelines.supervised_tuning import SupervisedTuningConfig

    train = write_rows(tmp_path / "train.jsonl", tickets(4))
    config = tmp_path / "run.yaml"
    config.write_text(
        f"train_dataset_uri: {train}\nbackend: local\nbase_model: tiny-random:t5\nselect_checkpoint: true\n"
    )
    with pytest.raises(UserError, match="local_options.keep_checkpoints: true") as caught:
        load_config(SupervisedTuningConfig, str(config))
    assert caught.value.field == "select_checkpoint" and caught.value.line == 4
    config.write_text(config.read_text() + "local_options: {keep_checkpoints: true, eval_steps: 5}\n")
    assert load_config(SupervisedTuningConfig, str(config)).select_checkpoint is True
