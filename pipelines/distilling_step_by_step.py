"""The distilling step-by-step pipeline: validate, teacher rationales and labels, student, evaluate, deploy.

Steps: validate → teacher labelling (``label_mode: separate`` only; a pass-through otherwise) → teacher rationales
(and labels) → student data → tune → evaluate → deploy if the gate passes.

A large teacher explains each answer (few-shot chain of thought); a small student learns to predict the label and,
as a second task told apart by a prefix, to write the teacher's rationale (Hsieh et al., 2023). Rows without a
label take the answer of the teacher's chain of thought, so one teacher call per row gives both the label and the
rationale (``label_mode: cot``, the default); ``label_mode: separate`` asks a few-shot label prompt first and keeps
the rationales that agree with it. The student runs the label task only at serving time.

Students: an open Hugging Face model trained with the true weighted loss (``student_backend: local``, the local
runner or, compiled with :func:`build_pipeline`'s ``gpu``, a Vertex AI custom training job on GPUs), a Gemini model
tuned on Vertex with SFT on the multi-task data (``vertex``), or Vertex's Gemini distillation service
(``vertex_distillation``, early access).
"""

from dataclasses import dataclass

from tunekit.components.data_validation.component import validate_data
from tunekit.components.evaluation.distillation.component import evaluate_distillation
from tunekit.components.rationale_extraction.component import extract_rationales
from tunekit.components.teacher_labelling.component import label_with_teacher
from tunekit.components.tuning.distillation.component import (
    build_student_dataset,
    gpu_training_op,
    tune_student_model,
)
from tunekit.pipelines import shared_fields as shared
from tunekit.pipelines.config import (
    checked_by,
    field,
    in_range,
    known_keys,
    model_folder,
    one_of,
    required_when,
)
from tunekit.pipelines.graphs import deploy_and_report, evaluation_step, gate_and_deploy, retried, validation_step
from tunekit.pipelines.retraining import retrain_on_new_data
from tunekit.pipelines.wiring import DEFAULT, Parameters, wire

PIPELINE_NAME = "distilling-step-by-step"


@dataclass
class DistillingStepByStepConfig:
    """Everything a distilling step-by-step run takes; the fields are the pipeline's parameters, one for one."""

    train_dataset_uri: str = shared.required_data(
        "Training inputs as text pairs (input_text, output_text optional: labelled, unlabelled or mixed)"
    )
    validation_dataset_uri: str = shared.optional_data(
        "Labelled evaluation rows (text pairs); '' holds out `validation_split` of the gold-labelled rows."
    )
    validation_split: float = field(
        0.1,
        "Share of gold-labelled rows held out when no validation data is given.",
        checks=[in_range(gt=0, lt=1, when={"validation_dataset_uri": ""})],
    )
    task: str = field(
        "generic",
        "classification, summarization, extractive_qa or generic: validation checks, default steps, metrics.",
        choices="tunekit.components.evaluation.metrics:TASKS",
    )
    rationale_task_type: str = field(
        "",
        "Chain-of-thought template: multiple_choice, nli, math, classification, extractive_qa or generic ('' "
        "follows `task`).",
        checks=[one_of("tunekit.components.rationale_extraction.parsing:TASK_TYPES", extra=("",))],
    )
    classes: list = field([], "Classification: the allowed classes, listed in every teacher prompt.")
    instruction: str = field("", "Replaces the template's instruction to the teacher ('' keeps it).")
    exemplars_uri: str = shared.optional_data(
        "Few-shot exemplars: JSONL rows with the task's fields, a `rationale` and an `answer`."
    )
    num_exemplars: int = field(
        4, "Exemplars per teacher prompt, drawn once with a fixed seed (0: zero-shot).", ge=0
    )
    teacher_backend: str = field(
        "vertex",
        "vertex, vertex_batch, openai (any OpenAI-compatible server), hf, or scripted (answers read from "
        "`teacher_script_uri`: no model is called; for offline demos and tests).",
        choices=[
            "tunekit.components.model_clients.backends:BACKENDS",
            "tunekit.components.model_clients.teachers:SCRIPTED",
        ],
    )
    teacher_model: str = field(
        "gemini-3.5-flash",
        "The teacher: a Gemini model, a served model name, a model directory (cost key if scripted).",
        checks=[
            shared.current_gemini(teacher_backend=("vertex", "vertex_batch")),
            shared.current_gemini(student_backend="vertex_distillation"),
        ],
    )
    teacher_options: dict = field(
        {}, "Teacher backend options: `base_url` and `api_key_env` for openai; `staging_uri` for vertex_batch."
    )
    teacher_engine_options: dict = field(
        {},
        "Request engine options: concurrency, requests_per_minute, tokens_per_minute, timeout_s, max_attempts.",
        checks=[known_keys("tunekit.components.model_clients.engine:EngineConfig")],
    )
    teacher_script_uri: str = field(
        "",
        "Scripted teacher: JSONL of `input_text` and `completion` (raw CoT text).",
        exists=True,
        # make_teacher (model_clients/teachers.py) refuses a scripted teacher without its script.
        checks=[required_when(teacher_backend="tunekit.components.model_clients.teachers:SCRIPTED")],
    )
    teacher_cache_uri: str = field(
        "",
        "Response cache shared across runs (a folder or gs:// prefix); '' keeps one per step (retries reuse it).",
    )
    n_samples: int = field(
        1, "Teacher samples per row (self-consistency: majority answer); >1 needs temperature > 0.", ge=1
    )
    teacher_temperature: float = field(0.0, "Teacher sampling temperature.", ge=0)
    teacher_max_output_tokens: int = field(512, "The most tokens of one teacher completion.", ge=1)
    keep_disagreeing: bool = field(
        False, "Keep rationales whose answer disagrees with the row's gold label (dropped and counted by default)."
    )
    label_mode: str = field(
        "cot",
        "How rows without a label get one: cot (the answer of the teacher's chain of thought: one call per row) or "
        "separate (a few-shot label prompt first, then rationales checked against those labels: a second call).",
        choices="tunekit.components.teacher_labelling.label:LABEL_MODES",
    )
    mode: str = field(
        "multitask",
        "multitask (distilling step-by-step), standard (label only) or cot (target: rationale, then answer).",
        choices="tunekit.components.tuning.distillation.local:MODES",
    )
    alpha: float = field(
        0.5,
        "Label-task weight: loss = alpha * label + (1 - alpha) * rationale. Gemini students approximate it by the "
        "ratio of label to rationale examples.",
        ge=0,
        le=1,
    )
    label_prefix: str = field("predict: ", "Task prefix of label examples (and of serving prompts).")
    rationale_prefix: str = field("explain: ", "Task prefix of rationale examples.")
    max_input_tokens: int = field(7168, "Student inputs over this many tokens are truncated (counted).", ge=1)
    max_output_tokens: int = field(1024, "Student targets over this many tokens are truncated (counted).", ge=1)
    no_truncate: bool = field(False, "Fail on over-long inputs or targets instead of truncating them.")
    student_backend: str = field(
        "vertex",
        "local (open HF model, true weighted loss), vertex (Gemini SFT on the multi-task data) or "
        "vertex_distillation (Gemini distillation service with `teacher_model` as base teacher; early access).",
        choices="tunekit.components.tuning.distillation.steps:STUDENT_BACKENDS",
    )
    student_model: str = field(
        "gemini-3.1-flash-lite",
        "A tunable Gemini model; with student_backend vertex also an open model id ({publisher}/{family}@{version}: "
        "Vertex AI's managed open-model tuning, `finetuning` its tuning mode, `output_uri` required); or a local "
        "model directory (T5-style seq2seq or causal; 'tiny-random:t5' builds a tiny random one for demos).",
        checks=[
            shared.vertex_base_model("student_backend", "vertex"),
            shared.gemini_base_model("student_backend", "vertex_distillation"),
            model_folder(
                ["tunekit.components.tuning.distillation.steps:TINY_PREFIX"], when={"student_backend": "local"}
            ),
        ],
    )
    train_baseline: bool = field(
        False, "Also train a label-only student on the same rows with the same budget, and compare."
    )
    train_steps: int = field(
        0, "Local: optimizer steps (0: the middle of the SPEC's distillation range for the task).", ge=0
    )
    learning_rate: float = field(
        0.0, "Local, and Vertex open-model students: learning rate (0: the trainer's or Vertex's default).", ge=0
    )
    batch_size: int = field(
        0, "Local, and Vertex open-model students: inputs per step (0: the trainer's or Vertex's default).", ge=0
    )
    lora_rank: int = field(0, "Local: LoRA rank (0: the trainer's default).", ge=0)
    finetuning: str = field(
        "lora",
        "Local: lora, or full (every weight; small students, students from scratch). Vertex open-model students: "
        "the tuning mode (full: its evaluation and deployment load the tuned weights as they are).",
        choices=[
            "tunekit.components.tuning.distillation.local:LORA",
            "tunekit.components.tuning.distillation.local:FULL",
        ],
        checks=[shared.open_student_mode()],
    )
    local_options: dict = field(
        {},
        "Local: further DistillTuningConfig fields (precision, device, seed...).",
        checks=[known_keys("tunekit.components.tuning.distillation.local:DistillTuningConfig")],
    )
    epoch_count: int = shared.epoch_count()
    learning_rate_multiplier: float = shared.learning_rate_multiplier()
    adapter_size: int = shared.adapter_size()
    tuned_model_display_name: str = field("", "Vertex: display name of the tuned student.")
    labels: dict = shared.labels("tuning jobs")
    output_uri: str = shared.output_uri(open_models=True, backend="student_backend")
    evaluate_teacher: bool = field(True, "Score the teacher on the evaluation rows too (teacher calls are paid).")
    max_eval_examples: int = field(200, "Evaluation rows scored (0 for all).", ge=0)
    max_prediction_tokens: int = field(64, "Tokens a student generates per answer (at least 256 for cot).", ge=1)
    min_student_metric: float = field(
        0.0,
        "Gate: the student's accuracy (ROUGE-L / token F1 for summarization / QA) must reach this.",
        ge=0,
        le=1,
    )
    min_improvement_over_baseline: float = field(
        0.0, "Gate, with a baseline: the student must beat it by at least this much.", ge=-1, le=1
    )
    beat_champion: bool = shared.beat_champion("the student")
    require_significant: bool = shared.require_significant()
    price_table: dict = field(
        {},
        "Prices per million tokens by model ({model: {input: $, output: $}}) over the built-in list prices.",
        checks=[
            checked_by(
                "tunekit.components.model_clients.pricing:parse_price_table",
                "{model: {input: USD, output: USD}}, non-negative numbers",
            )
        ],
    )
    student_cost_per_hour: float = field(
        0.75, "Open student: assumed serving machine price (USD/hour) for its cost per 1,000 predictions.", ge=0
    )
    purpose: str = shared.purpose(PIPELINE_NAME, "the deployed student becomes its champion")
    local_registry: str = shared.local_registry()
    strict_validation: bool = shared.strict_validation()
    force: bool = shared.force()
    project: str = shared.project()
    location: str = shared.location()


def build_pipeline(gpu: dict | None = None):
    """Builds the pipeline; ``gpu`` (``gpu_training_op``'s arguments) trains open students on a Vertex GPU job.

    The choice is made when compiling: the default (CPU) pipeline is what ``compiled/`` holds and the local runner
    runs; ``build_pipeline(gpu={"accelerator_type": "NVIDIA_L4"})`` compiles one whose student (and baseline)
    training is a Vertex AI custom training job with the GPU image (bf16, tokens per second in the record).
    """
    tune_op = gpu_training_op(**gpu) if gpu is not None else tune_student_model

    @retrain_on_new_data(
        DistillingStepByStepConfig,
        name=PIPELINE_NAME,
        data=("train_dataset_uri", "validation_dataset_uri", "exemplars_uri"),
        backend="student_backend",
        description="Teacher rationales and labels, a multi-task student, evaluation beside the teacher, deploy if better.",
    )
    def distilling_step_by_step_pipeline(p: Parameters):
        """Distilling step-by-step, end to end; see :class:`DistillingStepByStepConfig` for every parameter."""
        validation = validation_step(
            validate_data, p, method="distillation", base_model=p.student_model, strict=p.strict_validation
        )
        # Teacher labelling of the rows without a label; with label_mode 'cot' it passes the rows through.
        labelling = wire(
            label_with_teacher,
            p,
            input_dataset=validation.outputs["normalised_dataset"],
            backend_options=p.teacher_options,
            engine_options=p.teacher_engine_options,
            seed_dataset_uri=p.exemplars_uri,
            evaluate_gold=False,
            temperature=p.teacher_temperature,
            cache_uri=p.teacher_cache_uri,
            # The label prompt keeps its own instruction and answer length (these fields are the rationales' and
            # the student's).
            instruction=DEFAULT,
            max_output_tokens=DEFAULT,
        ).set_display_name("label-with-teacher")
        retried(labelling)
        # Paid teacher calls: a retry answers what it can from the step's response cache.
        rationales = retried(
            wire(
                extract_rationales,
                p,
                dataset=labelling.outputs["labelled_dataset"],
                task_type=p.rationale_task_type,
                temperature=p.teacher_temperature,
                max_output_tokens=p.teacher_max_output_tokens,
            )
        )
        student_data = wire(
            build_student_dataset,
            p,
            rationale_dataset=rationales.outputs["rationale_dataset"],
            validation_dataset=validation.outputs["normalised_dataset"],
        )
        student_dataset = student_data.outputs["student_dataset"]
        # A tuning job is paid work: a retried Vertex step re-attaches to the job it started.
        tuning = wire(tune_op, p, student_dataset=student_dataset, baseline=False, enabled=True)
        retried(tuning.set_display_name("tune-student"))
        # Always present so evaluation has one input to read; it trains nothing unless train_baseline is set.
        baseline = wire(tune_op, p, student_dataset=student_dataset, baseline=True, enabled=p.train_baseline)
        retried(baseline.set_display_name("tune-baseline"))
        evaluation = evaluation_step(
            evaluate_distillation,
            p,
            task_type=p.rationale_task_type,
            eval_dataset=student_data.outputs["eval_dataset"],
            student=tuning.outputs["student"],
            baseline=baseline.outputs["student"],
            max_output_tokens=p.max_prediction_tokens,
        )
        deploy_and_report(
            gate_and_deploy,
            p,
            pipeline_name=PIPELINE_NAME,
            summary={
                "task": p.task,
                "teacher": p.teacher_model,
                "student": p.student_model,
                "student backend": p.student_backend,
                "mode": p.mode,
            },
            validation=validation,
            evaluation=evaluation,
            tuned_model=tuning.outputs["student"],
            deploy={"backend": tuning.outputs["Output"], "train_dataset": student_dataset},
            report={
                "labelling_metrics": labelling.outputs["metrics"],
                "teacher_metrics": rationales.outputs["metrics"],
                "baseline_model": baseline.outputs["student"],
            },
        )

    return distilling_step_by_step_pipeline


distilling_step_by_step_pipeline = build_pipeline()
