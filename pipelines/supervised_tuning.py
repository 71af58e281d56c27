"""The supervised-tuning pipeline: validate → prepare → tune → evaluate → deploy if the gate passes.

One compiled spec, two runtimes: ``backend: vertex`` tunes Gemini with Vertex AI's managed tuning (run it on
Vertex AI Pipelines); ``backend: local`` tunes an open Hugging Face model with LoRA (run it with the local KFP
runner, or on Vertex with the GPU image).

No ``from __future__ import annotations`` here: KFP reads the pipeline's parameter types from real annotations.
"""

from dataclasses import dataclass

from tunekit.components.data_validation.component import validate_data
from tunekit.components.evaluation.supervised.component import evaluate_supervised
from tunekit.components.retraining.component import resolve_start_model
from tunekit.components.tuning.supervised.component import (
    gpu_training_op,
    prepare_supervised_data,
    tune_supervised,
)
from tunekit.pipelines import shared_fields as shared
from tunekit.pipelines.config import checked_by, field, in_range, known_keys, model_folder
from tunekit.pipelines.graphs import deploy_and_report, evaluation_step, gate_and_deploy, retried, validation_step
from tunekit.pipelines.retraining import retrain_on_new_data
from tunekit.pipelines.wiring import DEFAULT, Parameters, wire

PIPELINE_NAME = "supervised-tuning"


@dataclass
class SupervisedTuningConfig:
    """Everything a supervised-tuning run takes; the fields are the pipeline's parameters, one for one."""

    train_dataset_uri: str = shared.required_data(
        "Training data (JSON Lines: text pairs, chat messages or Gemini contents)"
    )
    validation_dataset_uri: str = shared.optional_data(
        "Validation data in any supported format; '' holds out `validation_split` of the training rows."
    )
    validation_split: float = field(
        0.1,
        "Share of training rows held out for evaluation when no validation data is given.",
        checks=[in_range(gt=0, lt=1, when={"validation_dataset_uri": ""})],
    )
    task: str = field(
        "generic",
        "classification, summarization, extractive_qa, chat or generic: picks the recommended defaults and the metrics.",
        choices="tunekit.components.evaluation.metrics:TASKS",
    )
    backend: str = field(
        "vertex",
        "'vertex' (Gemini managed tuning) or 'local' (Hugging Face + LoRA).",
        choices="tunekit.components.tuning.prepare:BACKENDS",
    )
    base_model: str = field(
        "gemini-3.5-flash",
        "Vertex: a tunable Gemini model id, or an open model id ({publisher}/{family}@{version}, e.g. "
        "meta/llama3_1@llama-3.1-8b-instruct: Model Garden managed tuning). Local: a model directory (or "
        "'tiny-random:t5' for the demo's tiny model).",
        checks=[
            shared.vertex_base_model(),
            model_folder(["tunekit.pipelines.local_run:TINY_PREFIX"], when={"backend": "local"}),
        ],
    )
    tuned_model_display_name: str = shared.tuned_model_display_name()
    epoch_count: int = shared.epoch_count()
    learning_rate_multiplier: float = shared.learning_rate_multiplier()
    adapter_size: int = shared.adapter_size("; 2.5 Pro at most 8")
    labels: dict = shared.labels()
    encryption_key: str = shared.encryption_key()
    output_uri: str = shared.output_uri(open_models=True)
    tuning_mode: str = shared.tuning_mode()
    custom_base_model: str = shared.custom_base_model()
    start_from: str = shared.start_from()
    pre_tuned_model_checkpoint_id: str = shared.pre_tuned_model_checkpoint_id()
    train_steps: int = field(
        0, "Local: optimizer steps (0 takes the middle of the SPEC's recommended range for the task).", ge=0
    )
    learning_rate: float = field(
        0.0, "Local, and Vertex open models: learning rate (0 for the trainer's or Vertex's default).", ge=0
    )
    batch_size: int = field(
        0, "Local, and Vertex open models: examples per step (0 for the trainer's or Vertex's default).", ge=0
    )
    lora_rank: int = field(0, "Local: LoRA rank (0 for the trainer's default).", ge=0)
    local_options: dict = field(
        {},
        "Local: further LocalTuningConfig fields (see docs/configuration.md).",
        checks=[known_keys("tunekit.components.tuning.lora:LocalTuningConfig")],
    )
    max_eval_examples: int = field(200, "Held-out rows scored for the base and tuned models (0 for all).", ge=0)
    max_output_tokens: int = shared.max_output_tokens()
    min_improvement: float = shared.min_improvement("the tuned model's primary metric")
    beat_champion: bool = shared.beat_champion()
    require_significant: bool = shared.require_significant()
    model_based_evaluation: bool = field(
        False,
        "Vertex: also ask the Gen AI evaluation service's pairwise autorater whether the tuned model's answers beat "
        "the base's and the champion's (reported as win rates; does not gate; judge calls are billed).",
    )
    select_checkpoint: bool = field(
        False,
        "Score every checkpoint of the tuned model on the held-out rows and make the best the candidate (Vertex: "
        "the default checkpoint, the other checkpoints' endpoints undeployed; local: the trainer keeps its "
        "checkpoints and the best adapter is kept).",
        checks=[
            checked_by(
                "tunekit.components.evaluation.checkpoints:check_config",
                "locally, local_options.keep_checkpoints: true",
                with_config=True,
            )
        ],
    )
    purpose: str = shared.purpose(PIPELINE_NAME)
    local_registry: str = shared.local_registry()
    strict_validation: bool = shared.strict_validation()
    force: bool = shared.force()
    project: str = shared.project()
    location: str = shared.location(" for tuning and prediction")


def build_pipeline(gpu: dict | None = None):
    """Builds the pipeline; ``gpu`` (``gpu_training_op``'s arguments) trains open models on a Vertex GPU job.

    The choice is made when compiling: the default (CPU) pipeline is what ``compiled/`` holds and the local runner
    runs; ``build_pipeline(gpu={"accelerator_type": "NVIDIA_H100_80GB", "accelerator_count": 8,
    "machine_type": "a3-highgpu-8g", "replica_count": 2})`` compiles one whose tuning step is a Vertex AI custom
    training job with the GPU image, one process per GPU on every replica.
    """
    tune_op = gpu_training_op(**gpu) if gpu is not None else tune_supervised

    @retrain_on_new_data(
        SupervisedTuningConfig,
        name=PIPELINE_NAME,
        data=("train_dataset_uri", "validation_dataset_uri"),
        description="Validate, tune (Gemini on Vertex or LoRA locally), evaluate against the base model, deploy if better.",
    )
    def supervised_tuning_pipeline(p: Parameters):
        """Supervised tuning, end to end; see :class:`SupervisedTuningConfig` for every parameter."""
        validation = validation_step(validate_data, p, method="supervised", strict=p.strict_validation)
        prepared = wire(prepare_supervised_data, p, normalised_dataset=validation.outputs["normalised_dataset"])
        prepared.set_caching_options(False)
        data = prepared.outputs
        # start_from: champion means the version serving `purpose` when this run starts (a schedule's runs keep
        # continuing from the last deploy); any other value passes through.
        start = wire(resolve_start_model, p).set_display_name("resolve-start-model")
        start.set_caching_options(False)  # the champion changes between runs of the same parameters
        start.set_retry(num_retries=2, backoff_duration="30s", backoff_factor=2.0)
        tuning = wire(
            tune_op,
            p,
            train_dataset=data["train_dataset"],
            validation_dataset=data["validation_dataset"],
            start_from=start.output,
        )
        # A tuning job is paid work: retrying the step re-attaches to the job it started (see tuning.steps).
        retried(tuning)
        tuned_model = tuning.outputs["tuned_model"]
        evaluation = evaluation_step(
            evaluate_supervised, p, tuned_model=tuned_model, validation_dataset=data["validation_dataset"]
        )
        deploy_and_report(
            gate_and_deploy,
            p,
            pipeline_name=PIPELINE_NAME,
            summary={"task": p.task, "backend": p.backend, "base model": p.base_model},
            validation=validation,
            evaluation=evaluation,
            tuned_model=tuned_model,
            # Only open models trained on Vertex need a project and region to deploy to; a Gemini model keeps its own.
            # The tuning step says where its model deploys (an open model trained on Vertex: an endpoint there).
            deploy={
                "backend": tuning.outputs["Output"],
                "train_dataset": data["train_dataset"],
                "project": DEFAULT,
                "location": DEFAULT,
            },
            report={"classification_metrics": evaluation.outputs["confusion_matrix"]},
        )

    return supervised_tuning_pipeline


supervised_tuning_pipeline = build_pipeline()
