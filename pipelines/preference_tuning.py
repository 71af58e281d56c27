"""The preference-tuning (RLHF) pipeline: validate → SFT warm start → preference tuning → evaluate → gate → deploy.

For outputs that are hard to specify but easy to compare, people say which of two answers they prefer; this
pipeline turns those pairs into a better model. One compiled spec, two runtimes:

- ``backend: vertex``: Gemini. Supervised tuning on the preferred answers, then ``PREFERENCE_TUNING`` continuing
  from that tuned model (``beta``, epochs, adapter size), each job re-attaching on retry. An autorater
  (``judge_model``) compares the tuned endpoint with the base model on held-out prompts.
- ``backend: local``: open causal models with TRL. SFT warm start, then a reward model (``RewardTrainer``) and RL
  with a KL penalty against the warm start (``RLOOTrainer``), or DPO in one stage (``algorithm: dpo``). The reward
  model judges the held-out pairs and the win rate. On Vertex AI Pipelines these steps run in the CPU image, or,
  compiled with :func:`build_pipeline`'s ``gpu``, as Vertex AI custom training jobs on GPUs; either way the tuned
  model is then deployed to a Vertex endpoint (the local runner registers it in the local registry file).

:func:`build_legacy_rlhf_pipeline` builds a variant for the models Vertex's legacy RLHF template still serves
(T5, Llama 2): our validation in front of ``google_cloud_pipeline_components.preview.llm.rlhf_pipeline``.

No ``from __future__ import annotations`` here: KFP reads the pipeline's parameter types from real annotations.
"""

from dataclasses import dataclass

from tunekit.components.data_validation.component import validate_data
from tunekit.components.evaluation.preference.component import evaluate_preference
from tunekit.components.tuning.preference.component import (
    gpu_training_ops,
    prepare_preference_data,
    tune_preference,
    warm_start_supervised,
)
from tunekit.pipelines import shared_fields as shared
from tunekit.pipelines.config import checked_by, field, in_range, known_keys
from tunekit.pipelines.graphs import deploy_and_report, evaluation_step, gate_and_deploy, retried, validation_step
from tunekit.pipelines.retraining import retrain_on_new_data
from tunekit.pipelines.wiring import Parameters, config_pipeline, wire

PIPELINE_NAME = "preference-tuning"
LEGACY_RLHF_NAME = "preference-tuning-legacy-rlhf"


def check_local_trainer(local_options: dict, config) -> None:
    """The local trainer's settings, built as the tuning step builds them (``tuning.preference.steps.local_config``).

    Its own checks run (RLOO's leave-one-out needs ``num_generations`` >= 2, a known ``algorithm``), so a bad
    combination fails when the config is loaded instead of after the warm start.
    """
    from tunekit.components.tuning.preference.steps import local_config

    local_config(
        local_options,
        algorithm=config.algorithm,
        beta=config.beta,
        reward_steps=config.reward_steps,
        rl_steps=config.rl_steps,
        batch_size=config.batch_size,
    )


@dataclass
class PreferenceTuningConfig:
    """Everything a preference-tuning run takes; the fields are the pipeline's parameters, one for one."""

    train_dataset_uri: str = shared.required_data(
        "Preference pairs: human preferences (`input_text` or `messages`, `candidate_0`, `candidate_1`, `choice`) "
        "or the Gemini preference format (`contents`, scored `completions`)"
    )
    eval_dataset_uri: str = shared.optional_data(
        "Held-out preference pairs for evaluation; '' holds out `eval_split` of the training pairs."
    )
    eval_split: float = field(
        0.2,
        "Share of training pairs held out for evaluation when no eval data is given.",
        checks=[in_range(gt=0, lt=1, when={"eval_dataset_uri": ""})],
    )
    prompt_dataset_uri: str = shared.optional_data(
        "Local RLOO: prompts (`input_text` or `messages`) to sample from; '' uses the training pairs' prompts."
    )
    sft_dataset_uri: str = shared.optional_data(
        "Warm-start data in any supervised format; '' tunes on the training pairs' preferred answers."
    )
    warm_start: bool = field(True, "Run supervised tuning before preference tuning (Google's recommendation).")
    backend: str = field(
        "vertex",
        "'vertex' (Gemini SFT + PREFERENCE_TUNING) or 'local' (TRL on an open model).",
        choices="tunekit.components.tuning.preference.steps:BACKENDS",
    )
    base_model: str = shared.gemini_or_causal_base_model()
    algorithm: str = field(
        "rloo",
        "Local: 'rloo' (reward model, then RL with a KL penalty) or 'dpo' (one stage).",
        choices="tunekit.components.tuning.preference.local:ALGORITHMS",
    )
    beta: float = field(
        0.0,
        "KL weight: Vertex preference tuning's beta, RLOO's KL coefficient, DPO's beta (0 for the default).",
        ge=0,
    )
    epoch_count: int = shared.epoch_count(" of the preference job")
    sft_epoch_count: int = shared.epoch_count(" of the SFT warm start")
    adapter_size: int = shared.adapter_size()
    learning_rate_multiplier: float = shared.learning_rate_multiplier()
    pre_tuned_model_checkpoint_id: str = field(
        "", "Vertex: the warm start's checkpoint to continue from ('' for its default checkpoint)."
    )
    tuned_model_display_name: str = shared.tuned_model_display_name()
    labels: dict = shared.labels("the tuning jobs")
    encryption_key: str = shared.encryption_key()
    output_uri: str = shared.output_uri("jobs'")
    sft_steps: int = field(0, "Local: warm-start optimizer steps (0 for the default, 100).", ge=0)
    reward_steps: int = field(0, "Local: reward-model optimizer steps (0 for the default).", ge=0)
    rl_steps: int = field(0, "Local: RLOO or DPO optimizer steps (0 for the default).", ge=0)
    batch_size: int = field(0, "Local: pairs or prompts per step (0 for the default).", ge=0)
    local_options: dict = field(
        {},
        "Local: further PreferenceLocalConfig fields (see docs/preference_tuning.md).",
        checks=[
            known_keys("tunekit.components.tuning.preference.local:PreferenceLocalConfig"),
            checked_by(
                check_local_trainer,
                "the local trainer's own checks (RLOO: num_generations >= 2)",
                with_config=True,
                when={"backend": "local"},
            ),
        ],
    )
    max_eval_examples: int = field(200, "Held-out pairs (and their prompts) scored (0 for all).", ge=0)
    max_output_tokens: int = shared.max_output_tokens()
    min_win_rate: float = field(
        0.5,
        "Gate: the tuned model's win rate against the base on held-out prompts must exceed this.",
        ge=0,
        lt=1,
    )
    beat_champion: bool = field(
        True,
        "Gate: the tuned model must also win more than half of its comparisons with the model now deployed for "
        "`purpose`, judged on the same held-out prompts.",
    )
    judge_model: str = field(
        "gemini-3.5-flash",
        "Vertex: the autorater that compares tuned and base answers.",
        checks=[shared.current_gemini(backend="vertex")],
    )
    purpose: str = shared.purpose(PIPELINE_NAME)
    local_registry: str = shared.local_registry()
    strict_validation: bool = shared.strict_validation()
    force: bool = shared.force()
    project: str = shared.project()
    location: str = shared.location(" for tuning and prediction")


def build_pipeline(gpu: dict | None = None):
    """Builds the pipeline; ``gpu`` (``gpu_training_ops``'s arguments) trains open models on Vertex GPU jobs.

    The choice is made when compiling: the default (CPU) pipeline is what ``compiled/`` holds and the local runner
    runs; ``build_pipeline(gpu={"accelerator_type": "NVIDIA_L4"})`` compiles one whose warm start and preference
    tuning (reward model + RLOO, or DPO) are Vertex AI custom training jobs with the GPU image. Either way the
    tuning step returns the deploy backend: an open model trained on Vertex is deployed to a Vertex endpoint.
    """
    warm_op, tune_op = gpu_training_ops(**gpu) if gpu is not None else (warm_start_supervised, tune_preference)

    @retrain_on_new_data(
        PreferenceTuningConfig,
        name=PIPELINE_NAME,
        data=("train_dataset_uri", "eval_dataset_uri", "prompt_dataset_uri", "sft_dataset_uri"),
        description="Validate preference pairs, SFT warm start, preference tuning (Gemini or TRL RLOO/DPO), "
        "evaluate the win rate against the base model, deploy if it wins.",
    )
    def preference_tuning_pipeline(p: Parameters):
        """Preference tuning, end to end; see :class:`PreferenceTuningConfig` for every parameter."""
        validation = validation_step(
            validate_data,
            p,
            validation_dataset_uri=p.eval_dataset_uri,
            method="preference",
            task="generic",
            strict=p.strict_validation,
        )
        prepared = wire(
            prepare_preference_data, p, validated_dataset=validation.outputs["normalised_dataset"], seed=0
        )
        prepared.set_caching_options(False)
        data = prepared.outputs
        warm = wire(
            warm_op, p, enabled=p.warm_start, sft_dataset=data["sft_dataset"], epoch_count=p.sft_epoch_count
        ).set_display_name("warm-start-supervised")
        # A tuning job is paid work: retrying the step re-attaches to the job it started (state file in its output).
        retried(warm)
        warm_model = warm.outputs["warm_model"]
        tuning = retried(
            wire(
                tune_op,
                p,
                warm_model=warm_model,
                preference_dataset=data["preference_dataset"],
                eval_pairs=data["eval_pairs"],
                prompt_dataset=data["prompt_dataset"],
            )
        )
        outputs = tuning.outputs
        evaluation = evaluation_step(
            evaluate_preference,
            p,
            warm_model=warm_model,
            tuned_model=outputs["tuned_model"],
            reward_model=outputs["reward_model"],
            eval_pairs=data["eval_pairs"],
        )
        deploy_and_report(
            gate_and_deploy,
            p,
            pipeline_name=PIPELINE_NAME,
            summary={"backend": p.backend, "base model": p.base_model, "algorithm": p.algorithm},
            validation=validation,
            evaluation=evaluation,
            tuned_model=outputs["tuned_model"],
            deploy={"backend": outputs["Output"], "train_dataset": data["preference_dataset"]},
        )

    return preference_tuning_pipeline


preference_tuning_pipeline = build_pipeline()


@dataclass
class LegacyRlhfConfig:
    """The parameters of :func:`build_legacy_rlhf_pipeline`: the legacy RLHF template's, plus our validation's."""

    preference_dataset: str = field(
        "",
        "Human-preference pairs in Cloud Storage (`input_text` or `messages`, `candidate_0`, `candidate_1`, "
        "`choice`): the reward model's training data. Required.",
        required=True,
    )
    prompt_dataset: str = field(
        "", "Prompts in Cloud Storage (`input_text` or `messages`) for the RL step. Required.", required=True
    )
    large_model_reference: str = field(
        "llama-2-7b", "The template's base model: t5-small ... t5-xxl, or a llama-2-7b / llama-2-13b reference."
    )
    eval_dataset: str = field("", "Pairs for the reward model's train-time metrics ('' for none).")
    model_display_name: str = field(
        "", "Display name of the tuned model in the Model Registry ('' for a default)."
    )
    # The template's limits: google_cloud_pipeline_components 2.22.0, preview/llm/rlhf/component.py docstring.
    prompt_sequence_length: int = field(512, "The most tokens of an input (at most 8192).", ge=1, le=8192)
    target_sequence_length: int = field(64, "The most tokens of a target (at most 1024).", ge=1, le=1024)
    reward_model_train_steps: int = field(1000, "Training steps of the reward model.", ge=1)
    reinforcement_learning_train_steps: int = field(1000, "Reinforcement-learning steps of the policy.", ge=1)
    reward_model_learning_rate_multiplier: float = field(
        1.0, "Learning-rate multiplier of the reward model.", gt=0
    )
    reinforcement_learning_rate_multiplier: float = field(1.0, "Learning-rate multiplier of the RL step.", gt=0)
    kl_coeff: float = field(0.1, "KL penalty against the initial policy (0: no reference model is loaded).", ge=0)
    instruction: str = field(
        "", "The task's instruction, the default context of every row ('' when inputs carry it)."
    )
    deploy_model: bool = field(True, "Deploy the tuned model to an endpoint.")
    strict_validation: bool = shared.strict_validation()
    project: str = shared.project()
    location: str = shared.location()
    encryption_spec_key_name: str = field("", "Cloud KMS key name for CMEK ('' for Google-managed keys).")


def build_legacy_rlhf_pipeline():
    """Our validation in front of Vertex's legacy RLHF template (``preview.llm.rlhf_pipeline``), nested.

    For the models that template still serves (``t5-small`` ... ``t5-xxl``, ``llama-2-7b``/``13b`` references;
    its PaLM models are retired). It trains a LoRA reward model and then RL with the KL penalty ``kl_coeff``, and
    deploys to an endpoint itself. The data are the human-preference and prompt files in Cloud Storage; the
    pipeline fails at validation, before anything is paid for, when either is not valid.

    Returns:
        The pipeline (compile it with ``kfp.compiler.Compiler().compile(build_legacy_rlhf_pipeline(), path)``).
    """
    from google_cloud_pipeline_components.preview.llm import rlhf_pipeline

    @config_pipeline(
        LegacyRlhfConfig,
        name=LEGACY_RLHF_NAME,
        description="Validate preference and prompt data, then Vertex's legacy RLHF template (T5, Llama 2).",
    )
    def legacy_rlhf(p: Parameters):
        validations = []
        for data, eval_data, display_name in (
            (p.preference_dataset, "", "validate-preference-data"),
            (p.prompt_dataset, p.eval_dataset, "validate-prompt-data"),
        ):
            check = validate_data(
                train_dataset_uri=data,
                validation_dataset_uri=eval_data,
                method="preference",
                task="generic",
                base_model=p.large_model_reference,
                strict=p.strict_validation,
            ).set_display_name(display_name)
            check.set_caching_options(False)
            validations.append(check)
        # The template's inputs are filled by name from the parameters.
        wire(rlhf_pipeline, p).after(*validations).set_display_name("vertex-rlhf")

    return legacy_rlhf
