"""Champion/challenger gating: the candidate against the base model and against the model serving now.

The one deploy gate of every method. The candidate (the model a run just tuned) is scored on the same held-out
rows as the base model it was tuned from and as the champion, the model currently deployed for the same purpose
(found with :func:`tunekit.components.deployment.champion.find_champion`). For each comparison the gate looks at
the difference of the primary metric and at its paired bootstrap interval (:mod:`.bootstrap`), and passes when
every required comparison passes:

- against the base: the candidate must improve on it by more than ``min_improvement`` (by at least
  ``min_improvement`` when it is positive, or with ``margin_inclusive``);
- against the champion (``beat_champion``, on by default): the candidate must beat it, so a worse (or merely
  equal) second run never replaces the first; when the champion cannot be scored the gate fails, because a
  comparison that was asked for could not be made;
- with ``require_significant``: each required difference's interval must lie above 0 (its lower bound > 0).

A tie at a perfect score (both 1.0) counts as passing, as there is nothing left to improve.

The methods differ only in the :class:`GatePolicy` they pass: supervised and embedding tuning use the rules above
(``ndcg_at_10`` for retrieval); distillation adds a floor on the student's own metric (``min_value``) and accepts
a gain over its label-only baseline of exactly ``min_improvement`` (``margin_inclusive``); preference tuning is a
head-to-head (``min_win_rate``): the judge's per-row preference for the candidate over the base must give a win
rate above ``min_win_rate``, and over the champion a win rate above 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from tunekit.components.evaluation.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Interval,
    paired_bootstrap,
)

BASE = "base"
CHAMPION = "champion"
#: The model a run just tuned, the gate's candidate (distillation's is its ``student``).
CANDIDATE = "tuned"
#: An even head-to-head: the win rate the candidate must exceed against the champion.
EVEN = 0.5

T = TypeVar("T")


@dataclass(frozen=True)
class GatePolicy:
    """What the deploy gate requires.

    Attributes:
        min_improvement: The candidate's primary metric must beat the base's by more than this (absolute, 0-1
            scale); a positive value is a margin the change must reach.
        beat_champion: Require beating the champion of the same purpose, when there is one.
        require_significant: Also require each required difference's bootstrap interval to lie above 0.
        confidence: Coverage of the bootstrap intervals.
        resamples: Bootstrap resamples.
        seed: Bootstrap seed.
        min_value: A floor on the candidate's own figure: it must reach at least this (distillation's
            ``min_student_metric``); None for no floor.
        margin_inclusive: The change against the base passes at exactly ``min_improvement`` whatever its sign
            (distillation: "beat the label-only baseline by at least"); otherwise a margin of 0 or less means
            strictly better.
        min_win_rate: A head-to-head gate (preference tuning): the scores given for the base and the champion are
            the judge's preference for the candidate over that model on each row (1 a win, 0.5 a tie, 0 a loss);
            the candidate's win rate must exceed this against the base and 0.5 against the champion. None: the
            scores are each model's own primary metric per row.
    """

    min_improvement: float = 0.0
    beat_champion: bool = True
    require_significant: bool = False
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    min_value: float | None = None
    margin_inclusive: bool = False
    min_win_rate: float | None = None


@dataclass
class Comparison:
    """The candidate against one other model on the primary metric.

    Attributes:
        against: ``base`` or ``champion``.
        label: How the other model is named in reasons (e.g. the champion's registry id).
        metric: The primary metric.
        candidate: The candidate's value (head-to-head: its win rate against the other model).
        other: The other model's value (head-to-head: the other model's win rate, ``1 - candidate``).
        interval: The paired bootstrap interval of ``candidate - other``; None without per-row scores.
        required: Whether the gate requires this comparison to pass.
        passed: Whether it passes its rule.
        rule: The rule in words, e.g. ``required > +0.0000``.
        head_to_head: Whether the figures are the two sides of a judge's preferences (preference tuning).
    """

    against: str
    label: str
    metric: str
    candidate: float
    other: float
    interval: Interval | None
    required: bool
    passed: bool
    rule: str
    head_to_head: bool = False

    @property
    def delta(self) -> float:
        """``candidate - other``."""
        return self.candidate - self.other

    def describe(self, candidate_name: str) -> str:
        """One clause of the gate's reason."""
        change = self.interval.describe() if self.interval else f"{self.delta:+.4f} (no per-row scores: no CI)"
        verdict = "ok" if self.passed else ("FAILED" if self.required else "not required")
        figure = "win rate" if self.head_to_head else self.metric
        return (
            f"{candidate_name} {figure} {self.candidate:.4f} vs {self.label} {self.other:.4f}: change "
            f"{change}, {self.rule} [{verdict}]"
        )

    def as_dict(self) -> dict:
        """JSON-able form, for metrics metadata and reports."""
        record = asdict(self)
        record["delta"] = self.delta
        return record


@dataclass
class GateDecision:
    """Whether to deploy, why, and the comparisons it rests on."""

    passed: bool
    reason: str
    comparisons: list[Comparison] = field(default_factory=list)


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def compare(
    against: str,
    candidate_scores: Sequence[float] | None,
    other_scores: Sequence[float] | None,
    *,
    metric: str,
    policy: GatePolicy,
    required: bool = True,
    label: str = "",
    candidate_value: float | None = None,
    other_value: float | None = None,
    margin: float = 0.0,
    inclusive: bool = False,
    win_rate_above: float | None = None,
) -> Comparison:
    """Compares the candidate with one model; per-row scores give the interval, values override the means.

    Args:
        against: ``base`` or ``champion``.
        candidate_scores: The candidate's per-row primary metric (None when only a mean is known).
        other_scores: The other model's, on the same rows in the same order.
        metric: The primary metric's name.
        policy: The gate policy (significance, bootstrap settings).
        required: Whether the gate requires this comparison.
        label: The other model's name in the reason (defaults to ``against``).
        candidate_value: The candidate's figure when it is not the mean of ``candidate_scores``.
        other_value: The other model's figure when it is not the mean of ``other_scores``.
        margin: The improvement required: at least ``margin`` when it is positive, more than 0 when it is 0, and
            more than ``margin`` (a tolerated loss) when it is negative.
        inclusive: Pass at exactly ``margin`` whatever its sign.
        win_rate_above: A head-to-head: the candidate's figure is its win rate and must exceed this.
    """
    new = candidate_value if candidate_value is not None else _mean(candidate_scores or [])
    old = other_value if other_value is not None else _mean(other_scores or [])
    interval = None
    if candidate_scores is not None and other_scores is not None and len(candidate_scores) == len(other_scores):
        interval = paired_bootstrap(
            candidate_scores,
            other_scores,
            resamples=policy.resamples,
            confidence=policy.confidence,
            seed=policy.seed,
        )
    delta = new - old
    if math.isnan(new) or math.isnan(old):
        passed, rule = False, "a figure is missing"
    elif win_rate_above is not None:
        passed, rule = new > win_rate_above, f"required win rate > {win_rate_above:.4f}"
    elif margin > 0 or inclusive:
        passed, rule = delta >= margin - 1e-12, f"required at least {margin:+.4f}"
    elif margin < 0:
        # A negative margin tolerates a loss of up to that much (it was read as 0 before: "strictly better").
        passed, rule = delta > margin + 1e-12, f"required > {margin:+.4f}"
    else:
        # A margin of 0 means "strictly better"; a tie at a perfect score cannot be improved on.
        passed = delta > 1e-12 or (abs(delta) <= 1e-12 and new >= 1.0 - 1e-12)
        rule = "required > +0.0000"
    if policy.require_significant:
        rule += f" and {policy.confidence:.0%} CI above 0"
        passed = passed and interval is not None and interval.low > 0
    return Comparison(
        against,
        label or against,
        metric,
        new,
        old,
        interval,
        required,
        bool(passed),
        rule,
        head_to_head=win_rate_above is not None,
    )


def decide(
    *,
    metric: str,
    candidate_scores: Sequence[float] | None,
    base_scores: Sequence[float] | None,
    policy: GatePolicy,
    champion_scores: Sequence[float] | None = None,
    champion_label: str = "",
    champion_error: str = "",
    candidate_name: str = CANDIDATE,
    candidate_value: float | None = None,
    base_value: float | None = None,
    champion_value: float | None = None,
    base_label: str = "",
    references: Mapping[str, float] | None = None,
) -> GateDecision:
    """The gate: the candidate against the base and, when there is one, the champion.

    Args:
        metric: The primary metric.
        candidate_scores: The candidate's per-row scores (not used by a head-to-head policy).
        base_scores: The base model's per-row scores (None to skip the base comparison). Head-to-head
            (``policy.min_win_rate``): the judge's per-row preference for the candidate over the base.
        policy: What the gate requires.
        champion_scores: The champion's per-row scores; None when there is no champion (or it has no per-row
            scores but ``champion_value`` is given). Head-to-head: the preference for the candidate over it.
        champion_label: The champion's name in the reason (its registry id or resource name).
        champion_error: Why the champion could not be scored; with ``beat_champion`` the gate then fails.
        candidate_name: The candidate's name in the reason.
        candidate_value: The candidate's figure when it is not the mean of its scores.
        base_value: The base's figure when it is not the mean of its scores (head-to-head: the candidate's win
            rate against the base).
        champion_value: The champion's figure when it is not the mean of its scores (head-to-head: the
            candidate's win rate against the champion).
        base_label: The base model's name in the reason (defaults to ``base``).
        references: Other models' figures quoted at the end of the reason; they do not gate (distillation's
            teacher).

    Returns:
        The decision, with a reason that quotes every comparison's numbers and interval.
    """

    def against(name: str, scores, value, *, required: bool, label: str, margin: float = 0.0) -> Comparison:
        if policy.min_win_rate is None:
            return compare(
                name,
                candidate_scores,
                scores,
                metric=metric,
                policy=policy,
                required=required,
                label=label,
                candidate_value=candidate_value,
                other_value=value,
                margin=margin,
                inclusive=policy.margin_inclusive and name == BASE,
            )
        wins = list(scores) if scores is not None else None
        rate = value if value is not None else _mean(wins or [])
        return compare(
            name,
            wins,
            [1.0 - w for w in wins] if wins is not None else None,
            metric=metric,
            policy=policy,
            required=required,
            label=label,
            candidate_value=rate,
            other_value=1.0 - rate,
            win_rate_above=policy.min_win_rate if name == BASE else EVEN,
        )

    comparisons: list[Comparison] = []
    clauses: list[str] = []
    passed = True
    if policy.min_value is not None:
        value = candidate_value if candidate_value is not None else _mean(candidate_scores or [])
        passed = value >= policy.min_value
        clauses.append(
            f"{candidate_name} {metric} {value:.4f} (required at least {policy.min_value:.4f}) "
            f"[{'ok' if passed else 'FAILED'}]"
        )
    if base_scores is not None or base_value is not None:
        base = against(
            BASE, base_scores, base_value, required=True, label=base_label, margin=policy.min_improvement
        )
        comparisons.append(base)
        clauses.append(base.describe(candidate_name))
        passed = passed and base.passed
    if champion_error:
        if policy.beat_champion:
            passed = False
            clauses.append(
                f"the champion {champion_label} could not be scored ({champion_error}) [FAILED]: fix or roll it "
                "back, or set beat_champion: false"
            )
        else:
            clauses.append(f"the champion {champion_label} could not be scored ({champion_error}) [not required]")
    elif champion_scores is not None or champion_value is not None:
        champion = against(
            CHAMPION,
            champion_scores,
            champion_value,
            required=policy.beat_champion,
            label=f"champion {champion_label}".strip(),
        )
        comparisons.append(champion)
        clauses.append(champion.describe(candidate_name))
        passed = passed and (champion.passed or not champion.required)
    else:
        clauses.append("no champion deployed for this purpose yet")
    clauses += [f"{name} {value:.4f}" for name, value in (references or {}).items()]
    return GateDecision(
        bool(passed), ("deploy: " if passed else "do not deploy: ") + "; ".join(clauses), comparisons
    )


def gate_metrics(decision: GateDecision) -> dict[str, float]:
    """Flat numeric figures of the comparisons, for a KFP Metrics artifact.

    Keys: ``gate_delta_<against>``, ``gate_ci_low_<against>`` and ``gate_ci_high_<against>`` for ``base`` and
    ``champion``.
    """
    out: dict[str, float] = {}
    for c in decision.comparisons:
        out[f"gate_delta_{c.against}"] = c.delta
        if c.interval is not None:
            out[f"gate_ci_low_{c.against}"] = c.interval.low
            out[f"gate_ci_high_{c.against}"] = c.interval.high
    return out


def describe_champion(champion) -> str:
    """A short name for a :class:`~tunekit.components.deployment.champion.Champion` in reasons."""
    if champion is None:
        return ""
    return str(getattr(champion, "registry_id", "") or getattr(champion, "model", "") or "")


def locate_champion(
    purpose: str,
    *,
    backend: str,
    local_registry: str = "",
    project: str = "",
    location: str = "",
    model_uri: str = "",
):
    """The champion of ``purpose`` (see the deployment component's ``find_champion``), or None.

    The champion is looked up where the candidate would be deployed: with ``model_uri`` (the candidate's
    artifact, its ``gs://`` URI or ``/gcs`` path on Vertex AI Pipelines), ``backend`` is the tuning backend and
    the registry is :func:`~tunekit.components.common.model_record.deploy_backend`'s, so an open model trained on
    Vertex meets the champion in the Vertex Model Registry, where its deploy step puts it, not in a local registry
    file. Without it, ``backend`` names the registry (``local`` or ``vertex``).

    None when ``purpose`` is '' (the run serves no purpose); locally a missing registry file means no champion
    yet.
    """
    from tunekit.components.common.model_record import deploy_backend
    from tunekit.components.deployment.champion import find_champion

    if model_uri:
        backend = deploy_backend(backend, model_uri)
    if not purpose or (backend == "local" and not local_registry):
        return None
    return find_champion(
        purpose, backend=backend, local_registry=local_registry, project=project, location=location
    )


def load_champion(champion, load: Callable[[Any], T]) -> tuple[T | None, str]:
    """``(load(champion), "")``, or ``(None, why it failed)``; ``(None, "")`` when ``champion`` is None.

    A champion that cannot be loaded is the gate's to report (it fails the gate when beating the champion is
    required), not the step's to crash on.
    """
    if champion is None:
        return None, ""
    try:
        return load(champion), ""
    except Exception as exc:  # noqa: BLE001 - any failure to load the champion is reported by the gate
        return None, error_text(exc)


def require_endpoint(endpoint: str, model: str) -> str:
    """``endpoint``, where the Vertex model ``model`` (a champion, a tuned model) is served.

    Raises:
        ValueError: No endpoint is recorded for ``model`` (``endpoint`` is '').
    """
    if not endpoint:
        raise ValueError(f"no endpoint is recorded for {model}")
    return endpoint


def error_text(exc: BaseException) -> str:
    """How a failure to score the champion is quoted in the gate's reason."""
    return f"{type(exc).__name__}: {exc}"


def all_failed(statuses: Mapping[str, int], failed: str = "failed") -> str:
    """Why a model's answers cannot stand for it (every generation failed), or ''."""
    total = sum(statuses.values())
    if total and statuses.get(failed, 0) == total:
        return f"all {total} requests failed"
    return ""
