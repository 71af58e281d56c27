"""The reinforcement-tuning pipeline: validate prompts and rewards → SFT warm start → RL tuning → evaluate → gate.

For tasks whose answers can be checked (an exact answer, a format, a number within a tolerance, a judge's rubric)
more easily than written out: the model learns to maximise rewards defined once in a reward file
(:mod:`tunekit.components.tuning.rewards`). One compiled spec, two runtimes:

- ``backend: vertex``: Gemini. An optional supervised warm start, then ``REINFORCEMENT_TUNING`` continuing from
  it with the reward file as Vertex's ``reward_config`` / ``composite_reward_config`` (``samples_per_prompt``,
  ``thinking_level``, evaluation and checkpoint intervals), each job re-attaching on retry; the rewards are
  dry-run with ``validate_reward`` before anything is paid for.
- ``backend: local``: open causal models with TRL: SFT warm start, then ``GRPOTrainer`` with the same rewards as
  reward functions; the rewards are dry-run on sample completions first.

The evaluation scores base, warm start, tuned model and champion on held-out prompts with the same rewards (mean
reward, the task reward's accuracy, each reward's mean, with paired bootstrap intervals); the shared gate deploys.

No ``from __future__ import annotations`` here: KFP reads the pipeline's parameter types from real annotations.
"""

from dataclasses import dataclass

from tunekit.components.evaluation.reinforcement.component import evaluate_reinforcement
from tunekit.components.tuning.reinforcement.component import (
    tune_reinforcement,
    validate_reinforcement_data,
    warm_start_reinforcement,
)
from tunekit.pipelines import shared_fields as shared
from tunekit.pipelines.config import checked_by, field, in_range, known_keys, required_when
from tunekit.pipelines.graphs import deploy_and_report, evaluation_step, gate_and_deploy, retried, validation_step
from tunekit.pipelines.retraining import retrain_on_new_data
from tunekit.pipelines.wiring import Parameters, wire

PIPELINE_NAME = "reinforcement-tuning"


def check_local_trainer(local_options: dict, config) -> None:
    """The local trainer's settings as the tuning step builds them (GRPO needs num_generations >= 2)."""
    from tunekit.components.tuning.reinforcement.steps import local_config

    local_config(
        local_options,
        rl_steps=config.rl_steps,
        batch_size=config.batch_size,
        num_generations=config.samples_per_prompt,
        beta=config.beta,
    )


@dataclass
class ReinforcementTuningConfig:
    """Everything a reinforcement-tuning run takes; the fields are the pipeline's parameters, one for one."""

    train_dataset_uri: str = shared.required_data(
        "Prompts (`prompt` or Vertex's `contents`) with the `references` their rewards compare with"
    )
    reward_config_uri: str = field(
        "",
        "The reward file (YAML: see docs/reinforcement_tuning.md); a local path or gs:// URI. Required.",
        required=True,
        exists=True,
        checks=[
            checked_by(
                "tunekit.components.tuning.reinforcement.steps:check_reward_file",
                "the reward file parses and the backend can express every reward",
                with_config=True,
            )
        ],
    )
    eval_dataset_uri: str = shared.optional_data(
        "Held-out prompts, same layout; '' holds out `eval_split` of the training prompts."
    )
    eval_split: float = field(
        0.2,
        "Share of training prompts held out for evaluation when no eval data is given.",
        checks=[in_range(gt=0, lt=1, when={"eval_dataset_uri": ""})],
    )
    sft_dataset_uri: str = field(
        "",
        "Warm-start data in any supervised format (needed when `warm_start` is true).",
        exists=True,
        checks=[required_when(warm_start=True)],
    )
    warm_start: bool = field(False, "Run supervised tuning first, then reinforcement tuning from it.")
    backend: str = field(
        "vertex",
        "'vertex' (Gemini REINFORCEMENT_TUNING) or 'local' (TRL GRPO on an open model).",
        choices="tunekit.components.tuning.reinforcement.steps:BACKENDS",
    )
    base_model: str = shared.gemini_or_causal_base_model()
    samples_per_prompt: int = field(
        0, "Responses sampled per prompt (Vertex's samples_per_prompt, GRPO's num_generations; 0: default).", ge=0
    )
    beta: float = field(0.0, "Local: GRPO's KL weight against the start model (0: no KL term).", ge=0)
    epoch_count: int = shared.epoch_count(" of the reinforcement job")
    sft_epoch_count: int = shared.epoch_count(" of the SFT warm start")
    adapter_size: int = shared.adapter_size()
    learning_rate_multiplier: float = shared.learning_rate_multiplier()
    evaluate_interval: int = field(0, "Vertex: steps between the job's evaluations (0: once per epoch).", ge=0)
    checkpoint_interval: int = field(0, "Vertex: steps between checkpoints (0: one per epoch).", ge=0)
    rl_max_output_tokens: int = field(
        0, "Tokens per sampled response while tuning (Vertex's max_output_tokens; 0: default).", ge=0
    )
    thinking_level: str = field(
        "",
        "Vertex: how much Gemini thinks while tuning, MINIMAL or HIGH ('' lets Vertex choose).",
        choices="tunekit.components.tuning.reinforcement.vertex:THINKING_LEVELS",
    )
    pre_tuned_model_checkpoint_id: str = field(
        "", "Vertex: the warm start's checkpoint to continue from ('' for its default checkpoint)."
    )
    tuned_model_display_name: str = shared.tuned_model_display_name()
    labels: dict = shared.labels("the tuning jobs")
    encryption_key: str = shared.encryption_key()
    output_uri: str = shared.output_uri("jobs'")
    sft_steps: int = field(0, "Local: warm-start optimizer steps (0 for the default).", ge=0)
    rl_steps: int = field(0, "Local: GRPO optimizer steps (0 for the default).", ge=0)
    batch_size: int = field(0, "Local: completions per GRPO step (0 for the default).", ge=0)
    local_options: dict = field(
        {},
        "Local: further ReinforcementLocalConfig fields (see docs/reinforcement_tuning.md).",
        checks=[
            known_keys("tunekit.components.tuning.reinforcement.local:ReinforcementLocalConfig"),
            checked_by(
                check_local_trainer,
                "the local trainer's own checks (GRPO: num_generations >= 2)",
                with_config=True,
                when={"backend": "local"},
            ),
        ],
    )
    max_eval_examples: int = field(200, "Held-out prompts scored (0 for all).", ge=0)
    max_output_tokens: int = shared.max_output_tokens()
    gate_metric: str = field(
        "mean_reward",
        "Gate: the metric compared: 'mean_reward' (the weighted rewards) or 'task_accuracy' (the task reward's).",
        choices="tunekit.components.evaluation.reinforcement.steps:GATE_METRICS",
    )
    task_reward: str = field("", "The reward whose best value counts as solving the task ('' for the first one).")
    min_improvement: float = shared.min_improvement("the tuned model's `gate_metric`")
    beat_champion: bool = shared.beat_champion(rows="held-out prompts")
    require_significant: bool = shared.require_significant(" over the prompts")
    purpose: str = shared.purpose(PIPELINE_NAME)
    local_registry: str = shared.local_registry()
    force: bool = shared.force()
    project: str = shared.project()
    location: str = shared.location(" for tuning and prediction")


@retrain_on_new_data(
    ReinforcementTuningConfig,
    name=PIPELINE_NAME,
    data=("train_dataset_uri", "eval_dataset_uri", "sft_dataset_uri", "reward_config_uri"),
    description="Validate prompts and rewards, optional SFT warm start, reinforcement tuning (Gemini or TRL GRPO) "
    "with rewards defined once, evaluate rewards against the base and the champion, deploy if it wins.",
)
def reinforcement_tuning_pipeline(p: Parameters):
    """Reinforcement tuning, end to end; see :class:`ReinforcementTuningConfig` for every parameter."""
    validation = validation_step(validate_reinforcement_data, p, seed=0)
    # On Vertex the dry run calls validate_reward: retried like any call to the service.
    retried(validation)
    data = validation.outputs
    warm = wire(
        warm_start_reinforcement,
        p,
        enabled=p.warm_start,
        sft_dataset=data["sft_dataset"],
        epoch_count=p.sft_epoch_count,
    ).set_display_name("warm-start-supervised")
    # Tuning jobs are paid work: a retried step re-attaches to the job it started (state file in its output).
    retried(warm)
    warm_model = warm.outputs["warm_model"]
    tuning = retried(
        wire(
            tune_reinforcement,
            p,
            warm_model=warm_model,
            train_prompts=data["train_prompts"],
            eval_prompts=data["eval_prompts"],
        )
    )
    tuned_model = tuning.outputs["tuned_model"]
    evaluation = evaluation_step(
        evaluate_reinforcement,
        p,
        warm_model=warm_model,
        tuned_model=tuned_model,
        eval_prompts=data["eval_prompts"],
    )
    deploy_and_report(
        gate_and_deploy,
        p,
        pipeline_name=PIPELINE_NAME,
        summary={"backend": p.backend, "base model": p.base_model, "gate metric": p.gate_metric},
        validation=validation,
        evaluation=evaluation,
        tuned_model=tuned_model,
        deploy={"backend": tuning.outputs["Output"], "train_dataset": data["train_prompts"]},
        report={"baseline_model": warm_model},
    )
