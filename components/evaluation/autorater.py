"""Optional model-based evaluation on Vertex AI: a pairwise autorater from the Gen AI evaluation service.

For every held-out row, the service's judge model reads the prompt and two answers, the candidate's
(``response``) and another model's (``baseline_model_response``: the base model's or the champion's), and says
which is better (``CANDIDATE``, ``BASELINE`` or ``TIE``). The per-row scores 1 / 0 / 0.5 average to the
candidate's *win rate*, reported with a bootstrap interval; 0.5 means the judge saw no difference.

The call is ``EvaluationService.EvaluateInstances`` with a ``pairwise_metric_input`` (aiplatform's
``EvaluationServiceClient`` over REST, aimed at the fake when ``TUNEKIT_VERTEX_BASE_URL`` is set). The prompt
template is ours. The result is reported beside the gate; it does not gate: an autorater has position and length
biases, and its verdicts are worth reading, not obeying.

Each verdict is kept in the step's response cache (:class:`~tunekit.components.model_clients.cache.ResponseCache`,
keyed by the SHA-256 of the request's JSON body) the moment it arrives: a retried or re-run step asks the service
only for the rows it has no verdict for yet, and pays nothing twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tunekit.components.evaluation.bootstrap import Interval, paired_bootstrap
from tunekit.components.model_clients.base import Generation
from tunekit.components.model_clients.cache import ResponseCache

#: The judge's instructions (placeholders ``{prompt}``, ``{response}``, ``{baseline_model_response}``).
PAIRWISE_TEMPLATE = """You compare two answers to the same request and decide which one serves the user better.

Judge correctness first, then whether the answer does what the request asks, then clarity. Ignore length unless
it hurts clarity. Do not favour an answer because of its position.

Request:
{prompt}

Answer A:
{baseline_model_response}

Answer B:
{response}

Give a short explanation, then the verdict: "B" if Answer B is better, "A" if Answer A is better, "SAME" if
neither is better.
"""

#: Row scores of the service's verdicts, from the candidate's side.
CHOICE_SCORES = {"CANDIDATE": 1.0, "BASELINE": 0.0, "TIE": 0.5}


@dataclass
class PairwiseResult:
    """The candidate against one other model, row by row, as the judge saw it.

    Attributes:
        against: ``base`` or ``champion``.
        scores: 1 (candidate better), 0 (other better) or 0.5 (tie, or no verdict) per row.
        unjudged: Rows the service gave no verdict for (counted as ties).
        explanations: The judge's explanation per row.
        interval: Bootstrap interval of ``win rate - 0.5``.
    """

    against: str
    scores: list[float]
    unjudged: int
    explanations: list[str]
    interval: Interval

    @property
    def win_rate(self) -> float:
        """Wins plus half the ties, over the rows."""
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    def describe(self) -> str:
        """E.g. ``autorater vs base: win rate 0.7000 (95% CI [0.55, 0.85], 0 unjudged)``."""
        low, high = self.interval.low + 0.5, self.interval.high + 0.5
        return (
            f"autorater vs {self.against}: win rate {self.win_rate:.4f} ({self.interval.confidence:.0%} CI "
            f"[{low:.4f}, {high:.4f}], {self.unjudged} unjudged)"
        )


def make_evaluation_client(location: str):
    """An ``EvaluationServiceClient`` over REST for ``location`` (or for the fake, when its URL is set)."""
    from google.cloud import aiplatform_v1

    from tunekit.components.model_clients.vertex import base_url_override, static_credentials

    base_url = base_url_override()
    return aiplatform_v1.EvaluationServiceClient(
        credentials=static_credentials() if base_url else None,
        transport="rest",
        client_options={"api_endpoint": base_url or f"{location}-aiplatform.googleapis.com"},
    )


def request_key(body: dict) -> str:
    """The cache key of one ``evaluateInstances`` request: SHA-256 over its canonical JSON body."""
    canonical = json.dumps(
        {"api": "evaluateInstances", "body": body}, sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def judge_pairwise(
    against: str,
    prompts: Sequence[str],
    candidate: Sequence[str | None],
    other: Sequence[str | None],
    *,
    project: str,
    location: str,
    client=None,
    template: str = PAIRWISE_TEMPLATE,
    concurrency: int = 4,
    seed: int = 0,
    cache: ResponseCache | None = None,
) -> PairwiseResult:
    """Asks the Gen AI evaluation service, row by row, whether the candidate's answer beats the other's.

    Transient errors (:func:`~tunekit.components.common.vertex_jobs.is_transient`, the project's one definition)
    are retried by the client library's retry policy with backoff; a row that still
    fails raises, failing the step. The service keeps no job to re-attach to, so every verdict goes to ``cache``
    as soon as it arrives: the step's retry asks only for the rows still missing.

    Args:
        against: ``base`` or ``champion`` (for the report).
        prompts: The rows' prompts as text.
        candidate: The candidate's answers (None counts as '').
        other: The other model's answers on the same rows.
        project: The Google Cloud project.
        location: The Vertex AI region.
        client: An ``EvaluationServiceClient`` (tests); by default :func:`make_evaluation_client`.
        template: The judge's prompt template.
        concurrency: Requests in flight at once.
        seed: Seed of the bootstrap interval.
        cache: Where verdicts are kept across tries and runs (the step's response cache); None keeps none.
    """
    from google.api_core import retry
    from google.cloud import aiplatform_v1

    from tunekit.components.common.vertex_jobs import is_transient

    if not len(prompts) == len(candidate) == len(other):
        raise ValueError("prompts and both models' answers must have the same length")
    client = client or make_evaluation_client(location)
    parent = f"projects/{project}/locations/{location}"
    policy = retry.Retry(
        predicate=is_transient,
        initial=1.0,
        maximum=30.0,
        timeout=300.0,
    )
    spec = aiplatform_v1.PairwiseMetricSpec(metric_prompt_template=template)

    def ask(index: int) -> tuple[float, bool, str]:
        instance = {
            "prompt": prompts[index],
            "response": candidate[index] or "",
            "baseline_model_response": other[index] or "",
        }
        request = aiplatform_v1.EvaluateInstancesRequest(
            location=parent,
            pairwise_metric_input=aiplatform_v1.PairwiseMetricInput(
                metric_spec=spec, instance=aiplatform_v1.PairwiseMetricInstance(json_instance=json.dumps(instance))
            ),
        )
        key = request_key(json.loads(aiplatform_v1.EvaluateInstancesRequest.to_json(request)))
        stored = cache.get(key) if cache is not None else None
        if stored is not None:
            verdict = json.loads(stored.text)
            choice, explanation = verdict["choice"], verdict["explanation"]
        else:
            result = client.evaluate_instances(request=request, retry=policy).pairwise_metric_result
            choice = aiplatform_v1.PairwiseChoice(result.pairwise_choice).name
            explanation = result.explanation
            if cache is not None:
                text = json.dumps({"choice": choice, "explanation": explanation}, ensure_ascii=False)
                cache.put(key, Generation(text=text), meta={"api": "evaluateInstances", "against": against})
        return CHOICE_SCORES.get(choice, 0.5), choice not in CHOICE_SCORES, explanation

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(prompts) or 1))) as pool:
        answers = list(pool.map(ask, range(len(prompts))))
    scores = [a[0] for a in answers]
    interval = paired_bootstrap(scores, [0.5] * len(scores), seed=seed)
    return PairwiseResult(against, scores, sum(a[1] for a in answers), [a[2] for a in answers], interval)
