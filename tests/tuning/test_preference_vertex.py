"""Gemini preference tuning against the fake Vertex API: SFT, then PREFERENCE_TUNING from its checkpoint."""

import json

import pytest
from fake_vertex import serve_fake_vertex
from tuning_helpers import ON_FAKE_VERTEX, created_jobs

from tunekit.components.common.errors import UserError
from tunekit.components.evaluation.preference import steps as evaluation
from tunekit.components.evaluation.preference.steps import evaluate_with_judge, model_judge
from tunekit.components.model_clients.base import FakeClient
from tunekit.components.tuning.gemini import STATE_FILE
from tunekit.components.tuning.preference import steps
from tunekit.components.tuning.preference.vertex import build_preference_config, tune_gemini_preference

PAIRS = [
    {
        "input_text": f"My parcel {i} is late.",
        "candidate_0": "Not our problem.",
        "candidate_1": f"Sorry. Please share order {i} and we will trace it.",
        "choice": 1,
    }
    for i in range(10)
]


@pytest.fixture
def fake(monkeypatch, tmp_path):
    yield from fake_with_datasets(monkeypatch, tmp_path)


def fake_with_datasets(monkeypatch, tmp_path):
    """The fake Vertex API, with the prepared datasets of :func:`warm_start` and :func:`preference` in its Cloud
    Storage stand-in (the steps copy each to a .jsonl name before tuning)."""
    gcs = tmp_path / "gcs"
    (gcs / "bucket" / "root" / "prepare").mkdir(parents=True)
    for name in ("sft_dataset", "preference_dataset", "eval_pairs"):
        (gcs / "bucket" / "root" / "prepare" / name).write_text('{"contents": []}\n')
    yield from serve_fake_vertex(monkeypatch, polls_to_finish=2, gcs_root=str(gcs))


def prepare(tmp_path, rows=PAIRS, **kwargs):
    """Runs the prepare step on validated ``rows``; returns its output paths and counts."""
    validated = tmp_path / "validated"
    validated.mkdir()
    (validated / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = {name: str(tmp_path / name) for name in ("pref", "eval", "prompts", "sft", "reports")}
    options = {"prompt_dataset_uri": "", "sft_dataset_uri": "", "eval_split": 0.2, "seed": 0, **kwargs}
    counts = steps.run_prepare_preference(
        validated_dir=str(validated),
        preference_path=out["pref"],
        eval_path=out["eval"],
        prompt_path=out["prompts"],
        sft_path=out["sft"],
        reports_dir=out["reports"],
        **options,
    )
    return out, counts


@pytest.fixture
def prepared(tmp_path):
    out, counts = prepare(tmp_path)
    assert counts == {"train_pairs": 8, "eval_pairs": 2, "prompts": 8, "sft_rows": 8, "held_out": 1}
    return out


def evaluate_preference(tmp_path, prepared, **kwargs):
    """The preference evaluation on Vertex: the tuned endpoint against gemini-2.5-flash-lite, judged by 2.5 Pro."""
    return evaluation.run_evaluate_preference(
        **{
            "backend": "vertex",
            "base_model": "gemini-2.5-flash-lite",
            "warm_model_path": str(tmp_path / "warm"),
            "tuned_model_path": str(tmp_path / "tuned"),
            "reward_model_path": str(tmp_path / "reward"),
            "eval_path": prepared["eval"],
            "max_eval_examples": 0,
            "max_output_tokens": 32,
            "min_win_rate": 0.5,
            "judge_model": "gemini-2.5-pro",
            "project": "test-project",
            "location": "us-central1",
            "summary_path": str(tmp_path / "summary.md"),
            "predictions_path": str(tmp_path / "predictions.jsonl"),
            **kwargs,
        }
    )


def warm_start(tmp_path, enabled=True, **kwargs):
    meta = {}
    info = steps.run_warm_start(
        backend="vertex",
        base_model="gemini-2.5-flash",
        enabled=enabled,
        sft_path="",
        # Artifacts live under the pipeline root in Cloud Storage, mounted at /gcs on Vertex.
        sft_uri="/gcs/bucket/root/prepare/sft_dataset",
        model_path=str(tmp_path / "warm"),
        model_metadata=meta,
        epoch_count=3,
        labels={"Team": "Support"},
        pipeline_job_name="pref-run-1",
        **ON_FAKE_VERTEX,
        **kwargs,
    )
    return info, meta


def preference(tmp_path, **kwargs):
    meta, reward_meta = {}, {}
    info = steps.run_tune_preference(
        backend="vertex",
        algorithm="rloo",
        base_model="gemini-2.5-flash",
        warm_model_path=str(tmp_path / "warm"),
        preference_path="",
        preference_uri="/gcs/bucket/root/prepare/preference_dataset",
        eval_uri="/gcs/bucket/root/prepare/eval_pairs",
        prompt_path="",
        model_path=str(tmp_path / "tuned"),
        model_metadata=meta,
        reward_path=str(tmp_path / "reward"),
        reward_metadata=reward_meta,
        beta=0.2,
        epoch_count=2,
        adapter_size=4,
        pre_tuned_model_checkpoint_id="3",
        labels={"Team": "Support"},
        pipeline_job_name="pref-run-1",
        **ON_FAKE_VERTEX,
        **kwargs,
    )
    return info, meta


def tuned_endpoint(fake, tmp_path):
    """Warm start and preference tuning on the fake; the base model and the tuned endpoint then answer (the tuned
    one better). Returns the endpoint's id."""
    warm_start(tmp_path)
    info, _ = preference(tmp_path)
    endpoint_id = info["endpoint"].rsplit("/", 1)[1]
    fake.set_responder(lambda text: "Not our problem.", model="gemini-2.5-flash-lite")
    fake.set_responder(lambda text: "Sorry. Please restart it and reply.", model=endpoint_id)
    return endpoint_id


def test_prepared_data_is_in_the_gemini_preference_format(prepared):
    rows = [json.loads(line) for line in open(prepared["pref"])]
    assert rows[0]["contents"][-1]["role"] == "user"
    assert [c["score"] for c in rows[0]["completions"]] == [1, 0]
    assert rows[0]["completions"][0]["completion"]["parts"][0]["text"].startswith("Sorry.")
    sft = [json.loads(line) for line in open(prepared["sft"])]
    assert sft[0]["contents"][-1] == {
        "role": "model",
        "parts": [{"text": rows[0]["completions"][0]["completion"]["parts"][0]["text"]}],
    }


def test_sft_then_preference_tuning_from_the_checkpoint(fake, tmp_path):
    warm, warm_meta = warm_start(tmp_path)
    info, meta = preference(tmp_path)
    sft_body, pref_body = created_jobs(fake)
    # 1. supervised tuning on the preferred answers
    assert sft_body["baseModel"] == "gemini-2.5-flash"
    assert sft_body["supervisedTuningSpec"]["trainingDatasetUri"] == "gs://bucket/root/prepare/sft_dataset.jsonl"
    assert sft_body["supervisedTuningSpec"]["hyperParameters"]["epochCount"] == 3
    assert sft_body["labels"]["tunekit-stage"] == "sft-warm-start"
    # 2. preference tuning continuing from the tuned model the SFT job produced
    assert "baseModel" not in pref_body
    # google-genai 2.34 sends this object with its Python field names (tuned_model_name); Vertex's JSON parser
    # accepts proto field names in either spelling.
    pre_tuned = {key.replace("_", ""): value for key, value in pref_body["preTunedModel"].items()}
    assert {k.lower(): v for k, v in pre_tuned.items()} == {
        "tunedmodelname": warm["tuned_model"],
        "checkpointid": "3",
    }
    spec = pref_body["preferenceOptimizationSpec"]
    assert spec["trainingDatasetUri"] == "gs://bucket/root/prepare/preference_dataset.jsonl"
    assert spec["validationDatasetUri"] == "gs://bucket/root/prepare/eval_pairs.jsonl"
    assert spec["hyperParameters"] == {"beta": 0.2, "epochCount": 2, "adapterSize": "ADAPTER_SIZE_FOUR"}
    assert "supervisedTuningSpec" not in pref_body
    assert pref_body["labels"]["tunekit-method"] == "preference-tuning"
    assert pref_body["labels"]["tunekit-stage"] == "preference"
    assert pref_body["labels"]["team"] == "support"
    assert info["tuned_model"].startswith("projects/test-project/locations/us-central1/models/")
    assert info["reference_model"] == warm["tuned_model"] != info["tuned_model"]
    assert meta["endpoint"] == info["endpoint"]


def test_retried_steps_reattach_instead_of_paying_twice(fake, tmp_path):
    warm_start(tmp_path)
    first, _ = preference(tmp_path)
    assert len(created_jobs(fake)) == 2
    # A retry of each step finds its state file and re-attaches to the finished job.
    again_warm, _ = warm_start(tmp_path)
    again, _ = preference(tmp_path)
    assert len(created_jobs(fake)) == 2
    assert again["job_name"] == first["job_name"] and again["resumed"] and again_warm["resumed"]


def test_retry_after_a_crash_before_the_job_name_was_written(fake, tmp_path):
    warm_start(tmp_path)
    preference(tmp_path)
    state_path = tmp_path / "tuned" / STATE_FILE
    state = json.loads(state_path.read_text())
    # The crash: the create call got through, the job's name never reached the state file.
    state.pop("job_name")
    state_path.write_text(json.dumps(state))
    again, _ = preference(tmp_path)
    assert len(created_jobs(fake)) == 2 and again["resumed"]


def test_without_warm_start_preference_starts_from_the_base_model(fake, tmp_path):
    warm_start(tmp_path, enabled=False)
    preference(tmp_path)
    (body,) = created_jobs(fake)
    assert body["baseModel"] == "gemini-2.5-flash" and "preTunedModel" not in body


def test_failed_preference_job_reports_the_jobs_message(fake, tmp_path):
    from tunekit.components.tuning.gemini import TuningJobFailed

    warm_start(tmp_path)
    fake.fail_next_job("Preference data: completions must differ.")
    with pytest.raises(TuningJobFailed, match="completions must differ"):
        preference(tmp_path)


@pytest.mark.parametrize(
    ("start_model", "training_dataset_uri", "message"),
    [("gemini-2.5-flash", "/local/file.jsonl", "gs://"), ("text-bison@002", "gs://b/t.jsonl", "cannot be tuned")],
)
def test_bad_arguments_fail_before_any_call(fake, tmp_path, start_model, training_dataset_uri, message):
    with pytest.raises(UserError, match=message):
        tune_gemini_preference(
            project="p",
            location="l",
            start_model=start_model,
            base_model=start_model,
            training_dataset_uri=training_dataset_uri,
            state_path=str(tmp_path / "s.json"),
        )
    assert not created_jobs(fake)


def test_bad_adapter_size_fails_in_the_config():
    with pytest.raises(UserError, match="adapter size"):
        build_preference_config(adapter_size=3)


def test_autorater_asks_both_orders_and_cancels_position_bias():
    from tunekit.components.data_validation.preference_convert import parse_pair

    pairs = [parse_pair(row, i + 1) for i, row in enumerate(PAIRS[:4])]
    always_a = FakeClient(lambda prompt: "A")
    report = evaluate_with_judge(
        judge=model_judge(always_a),
        base_client=FakeClient(lambda p: "Not our problem."),
        tuned_client=FakeClient(lambda p: "Sorry. Please share your order number."),
        eval_pairs=pairs,
        eval_prompts=pairs,
    )
    # A judge that always answers "A" has no preference: every comparison is a tie.
    assert report.figures["reward_accuracy"] == 0.5 and report.figures["win_rate"] == 0.5
    assert len(always_a.calls) == 2 * 4 + 2 * 4

    def fair(prompt):
        text = prompt.text
        a = text.split("Answer A:\n")[1].split("\n\nAnswer B:")[0]
        return "A" if a.startswith("Sorry") else "B"

    report = evaluate_with_judge(
        judge=model_judge(FakeClient(fair)),
        base_client=FakeClient(lambda p: "Not our problem."),
        tuned_client=FakeClient(lambda p: "Sorry. Please share your order number."),
        eval_pairs=pairs,
        eval_prompts=pairs,
    )
    assert report.figures["reward_accuracy"] == 1.0 and report.figures["win_rate"] == 1.0


def test_vertex_evaluation_judges_the_tuned_endpoint_against_the_base(fake, tmp_path, prepared):
    """The evaluation step on Vertex: base model and tuned endpoint answer, the Gemini autorater judges both ways."""
    endpoint_id = tuned_endpoint(fake, tmp_path)

    def judge(text):
        answer_a = text.split("Answer A:\n")[1].split("\n\nAnswer B:")[0]
        return "A" if answer_a.startswith("Sorry") else "B"

    fake.set_responder(judge, model="gemini-2.5-pro")
    result = evaluate_preference(tmp_path, prepared)
    assert result.figures["win_rate"] == 1.0 and result.figures["reward_accuracy"] == 1.0
    assert result.metrics["tuned"]["win_rate"] == 1.0 and result.metrics["base"]["win_rate"] == 0.0
    assert result.passed and "win rate 1.0000" in result.reason
    assert "no champion deployed" in result.reason  # no purpose given: nothing to compare with
    # Two prompts: each answered by both models, and each comparison (and each held-out pair) judged both ways.
    assert len(fake.requests_to(rf"endpoints/{endpoint_id}:generateContent")) == 2
    assert len(fake.requests_to(r"gemini-2.5-pro:generateContent")) == 2 * 2 + 2 * 2
    rows = [json.loads(line) for line in open(tmp_path / "predictions.jsonl")]
    assert rows[0]["tuned"].startswith("Sorry") and rows[0]["tuned_wins"] == 1.0


def test_vertex_evaluation_judges_the_tuned_endpoint_against_the_champion(fake, tmp_path, prepared, monkeypatch):
    """The champion's endpoint answers the same prompts and the same autorater judges it: a tuned endpoint that
    beats the base model but loses to the champion is not deployed."""
    from tunekit.components.deployment.champion import Champion

    tuned_endpoint(fake, tmp_path)
    parent = "projects/test-project/locations/us-central1"
    champion = Champion(
        purpose="support-replies",
        model=f"{parent}/models/55@2",
        endpoint=f"{parent}/endpoints/202",
        registry_id=f"{parent}/models/55",
        backend="vertex",
    )
    looked_up = []
    monkeypatch.setattr(evaluation, "locate_champion", lambda purpose, **kw: looked_up.append(purpose) or champion)
    fake.set_responder(
        lambda text: "Very sorry. We have traced it and send a new one today.", model=champion.endpoint
    )

    def judge(text):
        answer_a = text.split("Answer A:\n")[1].split("\n\nAnswer B:")[0]
        answer_b = text.split("Answer B:\n")[1].split("\n\nWhich")[0]
        rank = {"Very": 2, "Sorry.": 1}
        return "A" if rank.get(answer_a.split()[0], 0) > rank.get(answer_b.split()[0], 0) else "B"

    fake.set_responder(judge, model="gemini-2.5-pro")
    result = evaluate_preference(tmp_path, prepared, purpose="support-replies")
    assert looked_up == ["support-replies"]
    assert len(fake.requests_to(r"endpoints/202:generateContent")) == 2  # the same two held-out prompts
    assert result.figures["win_rate"] == 1.0 and result.figures["win_rate_vs_champion"] == 0.0
    assert not result.passed and f"champion {parent}/models/55" in result.reason
    assert [c.against for c in result.comparisons] == ["base", "champion"]
    rows = [json.loads(line) for line in open(tmp_path / "predictions.jsonl")]
    assert rows[0]["champion"].startswith("Very sorry") and rows[0]["tuned_wins_vs_champion"] == 0.0
