"""The supervised-tuning pipeline: validate → prepare → tune → evaluate → deploy if the gate passes.

One compiled spec, two runtimes: ``backend: vertex`` tunes Gemini with Vertex AI's managed tuning (run it on
Vertex AI Pipelines); ``backend: local`` tunes an open Hugging Face model with LoRA (run it with the local KFP
runner, or on Vertex with the GPU image).

No ``from __future__ import annotations`` here: KFP reads the pipeline's parameter types from real annotations.
"""

from dataclasses import dataclass

from kfp import dsl

from tunekit.components.data_validation.component import validate_data
from tunekit.components.evaluation.supervised.component import evaluate_supervised
from tunekit.components.reporting.component import make_run_report
from tunekit.components.tuning.supervised.component import prepare_supervised_data, tune_supervised
from tunekit.pipelines.config import LOCATION_PLACEHOLDER, PROJECT_PLACEHOLDER, field
from tunekit.pipelines.graphs import gate_and_deploy
from tunekit.pipelines.retraining import retrain_on_new_data

PIPELINE_NAME = "supervised-tuning"


@dataclass
class SupervisedTuningConfig:
    """Everything a supervised-tuning run takes; the fields are the pipeline's parameters, one for one."""

    train_dataset_uri: str = field(
        "",
        "Training data (JSON Lines: text pairs, chat messages or Gemini contents); a local path or gs:// URI. Required.",
    )
    validation_dataset_uri: str = field(
        "", "Validation data in any supported format; '' holds out `validation_split` of the training rows."
    )
    validation_split: float = field(
        0.1, "Share of training rows held out for evaluation when no validation data is given."
    )
    task: str = field(
        "generic",
        "classification, summarization, extractive_qa, chat or generic: picks the recommended defaults and the metrics.",
    )
    backend: str = field("vertex", "'vertex' (Gemini managed tuning) or 'local' (Hugging Face + LoRA).")
    base_model: str = field(
        "gemini-2.5-flash",
        "Vertex: a tunable Gemini model id. Local: a model directory (or 'tiny-random:t5' for the demo's tiny model).",
    )
    tuned_model_display_name: str = field("", "Vertex: display name of the tuned model ('' lets Vertex name it).")
    epoch_count: int = field(0, "Vertex: epochs (0 lets Vertex choose).")
    learning_rate_multiplier: float = field(0.0, "Vertex: learning-rate multiplier (0 lets Vertex choose).")
    adapter_size: int = field(
        0, "Vertex: LoRA adapter size 1, 2, 4, 8 or 16 (0 lets Vertex choose; 2.5 Pro at most 8)."
    )
    labels: dict = field({}, "Labels for the tuning job and the deployed model (lineage labels are added).")
    encryption_key: str = field("", "Vertex: Cloud KMS key name for CMEK ('' for Google-managed keys).")
    output_uri: str = field("", "Vertex: gs:// folder for the tuning job's outputs ('' for the default).")
    train_steps: int = field(
        0, "Local: optimizer steps (0 takes the middle of the SPEC's recommended range for the task)."
    )
    learning_rate: float = field(0.0, "Local: learning rate (0 for the trainer's default).")
    batch_size: int = field(0, "Local: examples per step (0 for the trainer's default).")
    lora_rank: int = field(0, "Local: LoRA rank (0 for the trainer's default).")
    local_options: dict = field({}, "Local: further LocalTuningConfig fields (see docs/configuration.md).")
    max_eval_examples: int = field(200, "Held-out rows scored for the base and tuned models (0 for all).")
    max_output_tokens: int = field(64, "Tokens generated per evaluation answer.")
    min_improvement: float = field(
        0.0, "Gate: the tuned model's primary metric must beat the base by more than this."
    )
    beat_champion: bool = field(
        True, "Gate: the tuned model must also beat the model now deployed for `purpose` on the same rows."
    )
    require_significant: bool = field(
        False, "Gate: each required improvement's 95% paired bootstrap interval must lie above 0."
    )
    model_based_evaluation: bool = field(
        False,
        "Vertex: also ask the Gen AI evaluation service's pairwise autorater whether the tuned model's answers beat "
        "the base's and the champion's (reported as win rates; does not gate; judge calls are billed).",
    )
    purpose: str = field(
        PIPELINE_NAME, "What the model serves; the deployed model becomes this purpose's champion."
    )
    local_registry: str = field("", "Local: registry JSON file (the CLI sets one under the output root).")
    strict_validation: bool = field(False, "Fail validation on warnings too, not only on errors.")
    force: bool = field(
        False, "Train even when the data's fingerprint equals the one the champion was trained on."
    )
    project: str = field(PROJECT_PLACEHOLDER, "Google Cloud project; by default the pipeline job's own.")
    location: str = field(
        LOCATION_PLACEHOLDER, "Google Cloud region for tuning and prediction; by default the pipeline job's own."
    )


@retrain_on_new_data(
    SupervisedTuningConfig, name=PIPELINE_NAME, data=("train_dataset_uri", "validation_dataset_uri")
)
@dsl.pipeline(
    name=PIPELINE_NAME + "-graph",
    description="Validate, tune (Gemini on Vertex or LoRA locally), evaluate against the base model, deploy if better.",
)
def supervised_tuning_pipeline(
    train_dataset_uri: str,
    validation_dataset_uri: str = "",
    validation_split: float = 0.1,
    task: str = "generic",
    backend: str = "vertex",
    base_model: str = "gemini-2.5-flash",
    tuned_model_display_name: str = "",
    epoch_count: int = 0,
    learning_rate_multiplier: float = 0.0,
    adapter_size: int = 0,
    labels: dict = {},  # noqa: B006 - KFP reads defaults from the signature
    encryption_key: str = "",
    output_uri: str = "",
    train_steps: int = 0,
    learning_rate: float = 0.0,
    batch_size: int = 0,
    lora_rank: int = 0,
    local_options: dict = {},  # noqa: B006
    max_eval_examples: int = 200,
    max_output_tokens: int = 64,
    min_improvement: float = 0.0,
    beat_champion: bool = True,
    require_significant: bool = False,
    model_based_evaluation: bool = False,
    purpose: str = PIPELINE_NAME,
    local_registry: str = "",
    strict_validation: bool = False,
    project: str = PROJECT_PLACEHOLDER,
    location: str = LOCATION_PLACEHOLDER,
    data_fingerprint: str = "",
):
    """Supervised tuning, end to end; see :class:`SupervisedTuningConfig` for every parameter."""
    validation = validate_data(
        train_dataset_uri=train_dataset_uri,
        validation_dataset_uri=validation_dataset_uri,
        method="supervised",
        task=task,
        base_model=base_model,
        strict=strict_validation,
    ).set_display_name("validate-data")
    # The URIs name data that can change under the same name; a cached result would hide the change.
    validation.set_caching_options(False)
    prepared = prepare_supervised_data(
        backend=backend,
        train_dataset_uri=train_dataset_uri,
        validation_dataset_uri=validation_dataset_uri,
        validation_split=validation_split,
    ).after(validation)
    prepared.set_caching_options(False)
    tuning = tune_supervised(
        backend=backend,
        base_model=base_model,
        task=task,
        train_dataset=prepared.outputs["train_dataset"],
        validation_dataset=prepared.outputs["validation_dataset"],
        tuned_model_display_name=tuned_model_display_name,
        epoch_count=epoch_count,
        learning_rate_multiplier=learning_rate_multiplier,
        adapter_size=adapter_size,
        labels=labels,
        encryption_key=encryption_key,
        output_uri=output_uri,
        train_steps=train_steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        lora_rank=lora_rank,
        local_options=local_options,
        project=project,
        location=location,
        pipeline_job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    )
    # A tuning job is paid work: retrying the step re-attaches to the job it started (see tuning.steps).
    tuning.set_retry(num_retries=2, backoff_duration="60s", backoff_factor=2.0)
    evaluation = evaluate_supervised(
        backend=backend,
        task=task,
        base_model=base_model,
        tuned_model=tuning.outputs["tuned_model"],
        validation_dataset=prepared.outputs["validation_dataset"],
        max_eval_examples=max_eval_examples,
        max_output_tokens=max_output_tokens,
        min_improvement=min_improvement,
        project=project,
        location=location,
        purpose=purpose,
        local_registry=local_registry,
        beat_champion=beat_champion,
        require_significant=require_significant,
        model_based_evaluation=model_based_evaluation,
    )
    # The champion's answers can change (a rollback, a new deployment): never reuse a cached evaluation.
    evaluation.set_caching_options(False)
    gate_and_deploy(
        gate_passed=evaluation.outputs["Output"],
        backend=backend,
        tuned_model=tuning.outputs["tuned_model"],
        train_dataset=prepared.outputs["train_dataset"],
        evaluation_metrics=evaluation.outputs["metrics"],
        purpose=purpose,
        local_registry=local_registry,
        data_fingerprint=data_fingerprint,
    )
    # After the evaluation and beside the gate: the report is written whether or not the gate passes.
    make_run_report(
        pipeline_name=PIPELINE_NAME,
        pipeline_job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
        parameters={"task": task, "backend": backend, "base model": base_model, "purpose": purpose},
        validation_report=validation.outputs["report"],
        tuned_model=tuning.outputs["tuned_model"],
        evaluation_metrics=evaluation.outputs["metrics"],
        classification_metrics=evaluation.outputs["confusion_matrix"],
    ).set_display_name("run-report")
