"""Champion/challenger gating: the candidate against the base model and against the model serving now.

The candidate (the model a run just tuned) is scored on the same held-out rows as the base model it was tuned
from and as the champion, the model currently deployed for the same purpose (found with
:func:`tunekit.components.deployment.champion.find_champion`). For each comparison the gate looks at the
difference of the primary metric and at its paired bootstrap interval (:mod:`.bootstrap`), and passes when every
required comparison passes:

- against the base: the candidate must improve on it by more than ``min_improvement`` (by at least
  ``min_improvement`` when it is positive);
- against the champion (``beat_champion``, on by default): the candidate must beat it, so a worse (or merely
  equal) second run never replaces the first; when the champion cannot be scored the gate fails, because a
  comparison that was asked for could not be made;
- with ``require_significant``: each required difference's interval must lie above 0 (its lower bound > 0).

A tie at a perfect score (both 1.0) counts as passing, as there is nothing left to improve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from tunekit.components.evaluation.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    Interval,
    paired_bootstrap,
)

BASE = "base"
CHAMPION = "champion"


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
    """

    min_improvement: float = 0.0
    beat_champion: bool = True
    require_significant: bool = False
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED


@dataclass
class Comparison:
    """The candidate against one other model on the primary metric.

    Attributes:
        against: ``base`` or ``champion``.
        label: How the other model is named in reasons (e.g. the champion's registry id).
        metric: The primary metric.
        candidate: The candidate's value.
        other: The other model's value.
        interval: The paired bootstrap interval of ``candidate - other``; None without per-row scores.
        required: Whether the gate requires this comparison to pass.
        passed: Whether it passes its rule.
        rule: The rule in words, e.g. ``required > +0.0000``.
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

    @property
    def delta(self) -> float:
        """``candidate - other``."""
        return self.candidate - self.other

    def describe(self, candidate_name: str) -> str:
        """One clause of the gate's reason."""
        change = self.interval.describe() if self.interval else f"{self.delta:+.4f} (no per-row scores: no CI)"
        verdict = "ok" if self.passed else ("FAILED" if self.required else "not required")
        return (
            f"{candidate_name} {self.metric} {self.candidate:.4f} vs {self.label} {self.other:.4f}: change "
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
        margin: The improvement required: more than 0, or at least ``margin`` when it is positive.
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
    elif margin > 0:
        passed, rule = delta >= margin - 1e-12, f"required at least {margin:+.4f}"
    else:
        # A margin of 0 means "strictly better"; a tie at a perfect score cannot be improved on.
        passed = delta > 1e-12 or (abs(delta) <= 1e-12 and new >= 1.0 - 1e-12)
        rule = "required > +0.0000"
    if policy.require_significant:
        rule += f" and {policy.confidence:.0%} CI above 0"
        passed = passed and interval is not None and interval.low > 0
    return Comparison(against, label or against, metric, new, old, interval, required, bool(passed), rule)


def decide(
    *,
    metric: str,
    candidate_scores: Sequence[float] | None,
    base_scores: Sequence[float] | None,
    policy: GatePolicy,
    champion_scores: Sequence[float] | None = None,
    champion_label: str = "",
    champion_error: str = "",
    candidate_name: str = "tuned",
    candidate_value: float | None = None,
    base_value: float | None = None,
    champion_value: float | None = None,
) -> GateDecision:
    """The gate: the candidate against the base and, when there is one, the champion.

    Args:
        metric: The primary metric.
        candidate_scores: The candidate's per-row scores.
        base_scores: The base model's per-row scores (None to skip the base comparison).
        policy: What the gate requires.
        champion_scores: The champion's per-row scores; None when there is no champion (or it has no per-row
            scores but ``champion_value`` is given).
        champion_label: The champion's name in the reason (its registry id or resource name).
        champion_error: Why the champion could not be scored; with ``beat_champion`` the gate then fails.
        candidate_name: The candidate's name in the reason.
        candidate_value: The candidate's figure when it is not the mean of its scores.
        base_value: The base's figure when it is not the mean of its scores.
        champion_value: The champion's figure when it is not the mean of its scores.

    Returns:
        The decision, with a reason that quotes every comparison's numbers and interval.
    """
    comparisons: list[Comparison] = []
    if base_scores is not None or base_value is not None:
        comparisons.append(
            compare(
                BASE,
                candidate_scores,
                base_scores,
                metric=metric,
                policy=policy,
                candidate_value=candidate_value,
                other_value=base_value,
                margin=policy.min_improvement,
            )
        )
    clauses = [c.describe(candidate_name) for c in comparisons]
    passed = all(c.passed for c in comparisons if c.required)
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
        champion = compare(
            CHAMPION,
            candidate_scores,
            champion_scores,
            metric=metric,
            policy=policy,
            required=policy.beat_champion,
            label=f"champion {champion_label}".strip(),
            candidate_value=candidate_value,
            other_value=champion_value,
        )
        comparisons.append(champion)
        clauses.append(champion.describe(candidate_name))
        passed = passed and (champion.passed or not champion.required)
    else:
        clauses.append("no champion deployed for this purpose yet")
    return GateDecision(
        bool(passed), ("deploy: " if passed else "do not deploy: ") + "; ".join(clauses), comparisons
    )


def gate_metrics(decision: GateDecision) -> dict[str, float]:
    """Flat numeric figures of the comparisons, for a KFP Metrics artifact.

    Keys: ``gate_delta_<against>``, ``gate_ci_low_<against>``, ``gate_ci_high_<against>`` and
    ``<against>_gate_value`` for ``base`` and ``champion``.
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
    return str(getattr(champion, "registry_id", "") or getattr(champion, "model", "") or "")


def locate_champion(
    purpose: str, *, backend: str, local_registry: str = "", project: str = "", location: str = ""
):
    """The champion of ``purpose`` (see the deployment component's ``find_champion``), or None.

    Locally a missing registry file means no champion yet.
    """
    from tunekit.components.deployment.champion import find_champion

    if backend == "local" and not local_registry:
        return None
    return find_champion(
        purpose, backend=backend, local_registry=local_registry, project=project, location=location
    )
