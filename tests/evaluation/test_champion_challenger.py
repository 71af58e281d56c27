"""Champion/challenger gating: paired bootstrap intervals, gate rules, and the champion scored on the same rows."""

import json

import numpy as np
import pytest
from evaluation_helpers import (
    deploy_locally,
    evaluate_locally,
    evaluate_on_vertex,
    gemini_tickets,
    resource,
    tickets,
    truth,
    write_rows,
)

from tunekit.components.deployment import local_registry
from tunekit.components.deployment.champion import Champion
from tunekit.components.evaluation import gate as cc
from tunekit.components.evaluation.bootstrap import paired_bootstrap
from tunekit.components.model_clients.base import FakeClient

# --- bootstrap ---------------------------------------------------------------------------------------------------


def test_identical_models_give_an_interval_around_zero():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 2, size=200).astype(float).tolist()
    interval = paired_bootstrap(scores, scores)
    assert interval.delta == 0.0 and interval.low == 0.0 and interval.high == 0.0
    # Two models of equal quality that err on different rows: the interval straddles 0.
    other = rng.permutation(scores).tolist()
    interval = paired_bootstrap(scores, other)
    assert interval.contains(0.0) and interval.low < 0 < interval.high


def test_a_clearly_better_model_has_a_lower_bound_above_zero():
    rng = np.random.default_rng(2)
    worse = (rng.random(150) < 0.5).astype(float)
    better = np.maximum(worse, (rng.random(150) < 0.6).astype(float))  # right wherever worse is, and more
    interval = paired_bootstrap(better.tolist(), worse.tolist(), resamples=1000, seed=0)
    assert interval.delta == pytest.approx(better.mean() - worse.mean())
    assert interval.delta > 0.2 and interval.low > 0 and interval.low <= interval.delta <= interval.high
    assert interval.rows == 150 and interval.resamples == 1000


def test_bootstrap_is_seeded_and_wider_at_higher_confidence():
    a = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
    b = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    narrow = paired_bootstrap(a, b, confidence=0.8)
    wide = paired_bootstrap(a, b, confidence=0.99)
    assert wide.low <= narrow.low and wide.high >= narrow.high
    # The pairing matters: the same marginal scores, paired differently, give a different interval.
    assert paired_bootstrap(a, b).describe().startswith("+0.3000 (95% CI [")


def test_bootstrap_rejects_unpaired_input_and_handles_no_rows():
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1.0], [1.0, 0.0])
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap([1.0], [1.0], resamples=0)
    empty = paired_bootstrap([], [])
    assert (empty.delta, empty.low, empty.high, empty.rows) == (0.0, 0.0, 0.0, 0)


# --- gate rules ----------------------------------------------------------------------------------------------


GOOD = [1.0] * 16 + [0.0] * 4  # 0.8
FAIR = [1.0] * 12 + [0.0] * 8  # 0.6
POOR = [0.0] * 20


def test_gate_beats_base_and_champion():
    decision = cc.decide(
        metric="accuracy",
        candidate_scores=GOOD,
        base_scores=POOR,
        champion_scores=FAIR,
        champion_label="support-1",
        policy=cc.GatePolicy(),
    )
    assert decision.passed and decision.reason.startswith("deploy: ")
    assert [c.against for c in decision.comparisons] == ["base", "champion"]
    assert "vs champion support-1 0.6000" in decision.reason and "95% CI [" in decision.reason
    metrics = cc.gate_metrics(decision)
    assert metrics["gate_delta_base"] == pytest.approx(0.8) and metrics["gate_delta_champion"] == pytest.approx(
        0.2
    )
    assert metrics["gate_ci_low_base"] > 0


def test_a_worse_candidate_does_not_replace_the_champion_unless_told():
    args = dict(metric="accuracy", candidate_scores=FAIR, base_scores=POOR, champion_scores=GOOD)
    decision = cc.decide(policy=cc.GatePolicy(), **args)
    assert not decision.passed and "[FAILED]" in decision.reason
    assert decision.comparisons[0].passed and not decision.comparisons[1].passed
    relaxed = cc.decide(policy=cc.GatePolicy(beat_champion=False), **args)
    assert relaxed.passed and "[not required]" in relaxed.reason
    # A tie is not a win, except at a perfect score.
    assert not cc.decide(metric="accuracy", candidate_scores=GOOD, base_scores=POOR, champion_scores=GOOD,
                         policy=cc.GatePolicy()).passed  # fmt: skip
    assert cc.decide(metric="accuracy", candidate_scores=[1.0] * 5, base_scores=[0.0] * 5,
                     champion_scores=[1.0] * 5, policy=cc.GatePolicy()).passed  # fmt: skip


def test_min_improvement_and_significance():
    small = [1.0] * 13 + [0.0] * 7  # 0.65 vs FAIR's 0.6: one row better
    assert cc.decide(metric="accuracy", candidate_scores=small, base_scores=FAIR, policy=cc.GatePolicy()).passed
    assert not cc.decide(
        metric="accuracy", candidate_scores=small, base_scores=FAIR, policy=cc.GatePolicy(min_improvement=0.1)
    ).passed
    significant = cc.GatePolicy(require_significant=True)
    assert not cc.decide(metric="accuracy", candidate_scores=small, base_scores=FAIR, policy=significant).passed
    assert cc.decide(metric="accuracy", candidate_scores=GOOD, base_scores=POOR, policy=significant).passed


def test_a_champion_that_cannot_be_scored_blocks_the_gate():
    decision = cc.decide(
        metric="accuracy",
        candidate_scores=GOOD,
        base_scores=POOR,
        champion_label="support-1",
        champion_error="OSError: no such directory",
        policy=cc.GatePolicy(),
    )
    assert not decision.passed and "could not be scored" in decision.reason
    assert cc.decide(
        metric="accuracy",
        candidate_scores=GOOD,
        base_scores=POOR,
        champion_error="x",
        policy=cc.GatePolicy(beat_champion=False),
    ).passed


def test_method_rules_are_policies_of_the_one_gate():
    # Distillation: a floor on the student's own figure; a gain of exactly the margin over the baseline passes.
    floor = cc.GatePolicy(min_value=0.7, min_improvement=0.2, margin_inclusive=True)
    decision = cc.decide(
        metric="accuracy", candidate_scores=GOOD, base_scores=FAIR, policy=floor, candidate_name="student"
    )
    assert decision.passed
    assert decision.reason.startswith("deploy: student accuracy 0.8000 (required at least 0.7000) [ok]; ")
    assert not cc.decide(metric="accuracy", candidate_scores=FAIR, base_scores=POOR, policy=floor).passed
    # Preference: a head-to-head; the scores are the judge's preference for the candidate over each model.
    head_to_head = cc.GatePolicy(min_win_rate=0.6)
    decision = cc.decide(
        metric="win_rate",
        candidate_scores=None,
        base_scores=[1.0] * 14 + [0.0] * 6,
        champion_scores=[0.5] * 20,
        policy=head_to_head,
    )
    base, champion = decision.comparisons
    assert base.passed and base.candidate == pytest.approx(0.7) and base.other == pytest.approx(0.3)
    assert champion.candidate == 0.5 and not champion.passed  # a tie with the champion is not a win
    assert not decision.passed and "win rate 0.7000 vs base 0.3000" in decision.reason
    assert "required win rate > 0.6000" in decision.reason and "required win rate > 0.5000" in decision.reason
    even = cc.decide(
        metric="win_rate", candidate_scores=None, base_scores=[1.0] * 6 + [0.0] * 4, policy=head_to_head
    )
    assert not even.passed  # 0.6 is not above 0.6


# --- the evaluation step with a registry ---------------------------------------------------------------------


ROWS = tickets(20)
TRUTH = truth(ROWS)


def _evaluate(tmp_path, name, clients, registry, **kwargs):
    return evaluate_locally(tmp_path, name, clients, purpose="support-routing", local_registry=registry, **kwargs)


def test_registry_champion_scored_on_the_same_rows(tmp_path):
    write_rows(tmp_path / "v.jsonl", ROWS)
    registry = str(tmp_path / "registry.json")
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
    good = FakeClient(lambda p: TRUTH[p.text])
    half = FakeClient(lambda p: TRUTH[p.text] if int(p.text.split()[1]) < 10 else "?")
    result = _evaluate(tmp_path, "first", {"base": FakeClient(), "tuned": good}, registry)
    assert result.passed and "no champion deployed" in result.reason
    deploy_locally(tmp_path, tmp_path / "first", registry, result.reason, name="first")
    assert local_registry.champion(registry, "support-routing")["model_dir"] == str(tmp_path / "first")

    champion = FakeClient(lambda p: TRUTH[p.text])
    clients = {"base": FakeClient(), "tuned": half, "champion": champion}
    result = _evaluate(tmp_path, "second", clients, registry)
    assert [p.text for p in champion.calls] == [r["prompt"] for r in ROWS]  # the same rows, in order
    assert result.metrics["champion"]["accuracy"] == 1.0 and result.metrics["tuned"]["accuracy"] == 0.5
    assert not result.passed and "champion support-routing-1" in result.reason
    assert "| vs champion support-routing-1 |" in open(tmp_path / "second-summary.md").read()
    predictions = [json.loads(line) for line in open(tmp_path / "second-pred.jsonl")]
    assert predictions[15]["champion_score"] == 1.0 and predictions[15]["tuned_score"] == 0.0


def test_a_missing_champion_model_blocks_the_gate(tmp_path):
    write_rows(tmp_path / "v.jsonl", ROWS)
    registry = str(tmp_path / "registry.json")
    local_registry.register_model(registry, {"model_dir": str(tmp_path / "deleted")}, purpose="support-routing")
    (tmp_path / "new").mkdir()
    clients = {"base": FakeClient(), "tuned": FakeClient(lambda p: TRUTH[p.text])}
    result = _evaluate(tmp_path, "new", clients, registry)
    assert not result.passed and "could not be scored" in result.reason and "UserError" in result.reason
    result = _evaluate(tmp_path, "new", dict(clients), registry, policy=cc.GatePolicy(beat_champion=False))
    assert result.passed


# --- tiny real models: a worse second run does not replace the first ------------------------------------------

SIZE = {"d_model": 32, "d_kv": 8, "num_heads": 4, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1}


def _train_constant(base, answer, out, tmp_path):
    """A tiny adapter that answers ``answer`` to everything (about 3 s on one CPU thread)."""
    from tunekit.components.tuning.lora import LocalTuningConfig
    from tunekit.components.tuning.supervised.local import tune_local

    train = write_rows(
        tmp_path / f"train-{answer}.jsonl", [{"prompt": f"ticket {i}", "completion": answer} for i in range(8)]
    )
    config = LocalTuningConfig.preset(
        "quick_test",
        max_steps=20,
        learning_rate=3e-2,
        modules_to_save=["lm_head"],
        device="cpu",
        max_target_length=8,
    )
    tune_local(base, train, None, out, config)
    return out


def test_tiny_models_worse_second_run_keeps_the_champion(tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from tunekit.components.tuning.tiny import make_tiny_model

    base = make_tiny_model(str(tmp_path / "base"), "seq2seq", **SIZE)
    good = _train_constant(base, "ok", str(tmp_path / "good"), tmp_path)
    _train_constant(base, "no", str(tmp_path / "worse"), tmp_path)
    # 8 of 10 rows want "ok", 2 want "no": the good model scores 0.8, the worse 0.2, the untuned base 0.
    rows = [{"prompt": f"ticket {i}", "completion": "ok" if i < 8 else "no"} for i in range(10)]
    write_rows(tmp_path / "v.jsonl", rows)
    registry = str(tmp_path / "registry.json")

    def evaluate(name):
        return evaluate_locally(
            tmp_path, name, base_model=base, max_output_tokens=4, purpose="tiny", local_registry=registry
        )

    result = evaluate("good")
    assert result.metrics["tuned"]["accuracy"] == pytest.approx(0.8) and result.metrics["base"]["accuracy"] == 0.0
    assert result.passed and "champion" not in result.metrics
    deploy_locally(
        tmp_path,
        good,
        registry,
        result.reason,
        purpose="tiny",
        name="first",
        model_metadata={"base_model": base},
        metrics={"tuned_accuracy": 0.8},
    )
    before = open(registry).read()

    # The champion is loaded from its registry entry (an adapter directory) and answers the same rows.
    result = evaluate("worse")
    assert result.metrics["tuned"]["accuracy"] == pytest.approx(0.2)
    assert result.metrics["champion"]["accuracy"] == pytest.approx(0.8)
    assert not result.passed
    base_clause, champion_clause = result.comparisons
    assert base_clause.passed and not champion_clause.passed
    # 10 rows: the interval of the -0.6 change reaches 0 at most.
    assert champion_clause.delta == pytest.approx(-0.6) and champion_clause.interval.high <= 0
    # The pipeline deploys only when the gate passed: the registry still names the first model.
    assert open(registry).read() == before
    assert local_registry.champion(registry, "tiny")["model_dir"] == good


# --- Vertex: the champion's endpoint answers ------------------------------------------------------------------


def test_vertex_champion_endpoint_is_called(tmp_path, monkeypatch, vertex):
    from tunekit.components.evaluation.supervised import steps

    right = truth(tickets(6))
    validation = write_rows(tmp_path / "v.jsonl", gemini_tickets(6))
    tuned_endpoint, champion_endpoint = resource(vertex, "endpoints/101"), resource(vertex, "endpoints/202")
    vertex.responders[tuned_endpoint] = lambda text: "billing"  # right on half the rows
    vertex.responders[champion_endpoint] = lambda text: right.get(text, "")  # right on all
    vertex.responders["gemini-2.5-flash"] = lambda text: "no idea"
    champion = Champion(
        purpose="support",
        model=resource(vertex, "models/55@2"),
        endpoint=champion_endpoint,
        registry_id=resource(vertex, "models/55"),
        backend="vertex",
    )
    looked_up = []
    monkeypatch.setattr(
        steps, "locate_champion", lambda purpose, **kw: looked_up.append((purpose, kw)) or champion
    )
    result = evaluate_on_vertex(tmp_path, vertex, tuned_endpoint, validation, purpose="support")
    champion_calls = vertex.requests_to(r"/endpoints/202:generateContent$", "POST")
    assert looked_up == [("support", {"backend": "vertex", "local_registry": "", "project": vertex.project,
                                      "location": vertex.location})]  # fmt: skip
    assert len(champion_calls) == 6
    asked = sorted(call[2]["contents"][-1]["parts"][0]["text"] for call in champion_calls)
    assert asked == sorted(right)
    assert result.metrics["champion"]["accuracy"] == 1.0 and result.metrics["tuned"]["accuracy"] == 0.5
    assert not result.passed and f"champion {resource(vertex, 'models/55')}" in result.reason


# --- distillation and retrieval evaluations use the same gate ---------------------------------------------------


def test_distilled_student_must_beat_the_champion_student(tmp_path):
    from tunekit.components.evaluation.distillation.steps import run_evaluate_distillation

    rows = [
        {"input_text": f"ticket {i}", "reference": ["billing", "shipping"][i % 2], "reference_source": "gold"}
        for i in range(20)
    ]
    truth = {r["input_text"]: r["reference"] for r in rows}
    eval_path = write_rows(tmp_path / "eval.jsonl", rows)
    for name in ("student", "deployed"):
        (tmp_path / name).mkdir()
        info = {"backend": "local", "serving_prefix": "predict: ", "mode": "multitask"}
        (tmp_path / name / "tunekit_model.json").write_text(json.dumps(info))
    registry = str(tmp_path / "registry.json")
    local_registry.register_model(registry, {"model_dir": str(tmp_path / "deployed")}, purpose="dss")

    def answer(right_below):
        return FakeClient(
            lambda p: truth[p.text.removeprefix("predict: ")] if int(p.text.split()[-1]) < right_below else "?"
        )

    def evaluate(student, champion, **kwargs):
        result = run_evaluate_distillation(
            task="classification",
            task_type="classification",
            eval_path=eval_path,
            student_path=str(tmp_path / "student"),
            student_metadata={},
            baseline_path="",
            baseline_metadata={},
            predictions_path=str(tmp_path / "p.jsonl"),
            summary_path=str(tmp_path / "s.md"),
            student_clients={"student": student, "champion": champion},
            purpose="dss",
            local_registry=registry,
            **kwargs,
        )
        return result, champion

    result, champion = evaluate(answer(10), answer(16))
    assert [p.text for p in champion.calls] == [f"predict: ticket {i}" for i in range(20)]  # its serving prefix
    assert result.metrics["champion"]["accuracy"] == 0.8 and result.metrics["student"]["accuracy"] == 0.5
    assert not result.passed and "vs champion dss-1 0.8000" in result.reason and "95% CI" in result.reason
    assert "| champion |" in result.metadata["table"]
    assert [c.against for c in result.comparisons] == ["champion"]  # no baseline was trained
    result, _ = evaluate(answer(20), answer(16))
    assert result.passed and "[ok]" in result.reason
    result, _ = evaluate(answer(10), answer(16), policy=cc.GatePolicy(beat_champion=False))
    assert result.passed and "[not required]" in result.reason


class _Encoder:
    """Embeds a text as a one-hot vector of its first word, or of a fixed word (a model that ranks at random)."""

    def __init__(self, words, constant=None):
        self.words, self.constant = words, constant

    def _encode(self, texts):
        out = np.zeros((len(texts), len(self.words)), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row, self.words.index(self.constant or text.split()[0])] = 1.0
        return out

    encode_queries = encode_documents = _encode


def test_embedding_champion_scored_on_the_same_queries(tmp_path, monkeypatch):
    from tunekit.components.evaluation.embedding import steps as retrieval

    words = ["alpha", "beta", "gamma", "delta"]
    corpus = write_rows(
        tmp_path / "corpus.jsonl", [{"_id": f"d{i}", "text": f"{w} document"} for i, w in enumerate(words)]
    )
    queries = write_rows(
        tmp_path / "queries.jsonl", [{"_id": f"q{i}", "text": f"{w} query"} for i, w in enumerate(words)]
    )
    labels = tmp_path / "test.tsv"
    labels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4)))
    (tmp_path / "tuned").mkdir()
    registry = str(tmp_path / "registry.json")
    local_registry.register_model(registry, {"model_dir": str(tmp_path / "deployed")}, purpose="search")
    perfect, constant = _Encoder(words), _Encoder(words, constant="alpha")
    # The tuned model is loaded from its directory: stand in the perfect encoder.
    monkeypatch.setattr(retrieval, "SentenceTransformerEncoder", lambda path: perfect)

    def evaluate(champion):
        return retrieval.run_evaluate_embedding(
            backend="local",
            base_model="unused",
            tuned_model_path=str(tmp_path / "tuned"),
            tuned_info={},
            corpus_uri=corpus,
            queries_uri=queries,
            test_labels_uri=str(labels),
            summary_path=str(tmp_path / "s.md"),
            progress=False,
            base_encoder=constant,
            purpose="search",
            local_registry=registry,
            champion_encoder=champion,
        )

    result = evaluate(constant)
    assert result.metrics["tuned"]["ndcg_at_10"] == 1.0 and result.metrics["champion"]["ndcg_at_10"] < 1.0
    assert result.passed and [c.against for c in result.comparisons] == ["base", "champion"]
    assert result.comparisons[1].interval.rows == 4
    assert evaluate(perfect).passed  # a perfect champion: a tie at 1.0 passes
    monkeypatch.setattr(retrieval, "SentenceTransformerEncoder", lambda path: constant)
    result = evaluate(perfect)
    assert not result.passed and "champion search-1" in result.reason
    assert "| ndcg_at_10 (gate) |" in open(tmp_path / "s.md").read()


# --- optional model-based evaluation (Gen AI evaluation service, pairwise) -------------------------------------


def test_model_based_pairwise_autorater_against_the_fake(tmp_path, vertex):
    validation = write_rows(tmp_path / "v.jsonl", gemini_tickets(8, answer="billing", system="Route tickets."))
    endpoint = resource(vertex, "endpoints/7")
    vertex.responders[endpoint] = lambda text: "billing"
    vertex.responders["gemini-2.5-flash"] = lambda text: "shipping" if text.endswith(("0", "1")) else "?"
    # The judge prefers the right team, calls two answers that are both wrong a tie.
    vertex.judge = lambda inst: (
        "CANDIDATE" if inst["response"] == "billing" != inst["baseline_model_response"] else "TIE"
    )
    result = evaluate_on_vertex(tmp_path, vertex, endpoint, validation, model_based=True)
    calls = vertex.requests_to(r":evaluateInstances", "POST")
    autorater = result.extras["autorater"]
    assert result.passed and list(autorater) == ["base"]  # no champion: only the base is judged
    assert result.figures["autorater_win_rate_vs_base"] == 1.0
    assert (
        autorater["base"].win_rate == 1.0
        and autorater["base"].unjudged == 0
        and autorater["base"].interval.low == 0.5
    )
    assert len(calls) == 8
    body = calls[0][2]["pairwiseMetricInput"]
    assert "{baseline_model_response}" in body["metricSpec"]["metricPromptTemplate"]
    instance = json.loads(body["instance"]["jsonInstance"])
    assert instance["prompt"].startswith("system: Route tickets.") and instance["response"] == "billing"
    assert "autorater vs base: win rate 1.0000" in open(tmp_path / "s.md").read()


def test_model_based_evaluation_needs_vertex(tmp_path):
    from tunekit.components.common.errors import UserError

    write_rows(tmp_path / "v.jsonl", ROWS)
    with pytest.raises(UserError, match="model_based_evaluation"):
        _evaluate(tmp_path, "x", {"base": FakeClient(), "tuned": FakeClient()}, "", model_based=True)
