"""KFP wrappers of the reinforcement-tuning steps (validate prompts and rewards, warm start, reinforcement tuning).

Bodies import the installed package: lightweight components drop anything defined outside the function, and the
component image has tunekit installed (no pip at run time).
"""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def validate_reinforcement_data(
    train_dataset_uri: str,
    eval_dataset_uri: str,
    sft_dataset_uri: str,
    reward_config_uri: str,
    backend: str,
    warm_start: bool,
    eval_split: float,
    seed: int,
    project: str,
    location: str,
    train_prompts: dsl.Output[dsl.Dataset],
    eval_prompts: dsl.Output[dsl.Dataset],
    sft_dataset: dsl.Output[dsl.Dataset],
    report: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
):
    """Checks the prompts against the reward file and dry-runs the rewards before anything is paid for.

    Every reference the rewards read must be in every row; the rewards run on sample completions (locally) or
    are sent to Vertex's ``validate_reward`` (backend vertex). Writes the train and held-out prompts in Vertex's
    reinforcement layout, the warm start's validated SFT data, and the report (``report``, JSON).
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.tuning.reinforcement.steps import run_validate_reinforcement

    counts = call(
        run_validate_reinforcement,
        locals(),
        train_path=train_prompts.path,
        eval_path=eval_prompts.path,
        sft_path=sft_dataset.path,
        report_path=report.path,
    )
    for name, value in counts.items():
        metrics.log_metric(name, value)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def warm_start_reinforcement(
    backend: str,
    base_model: str,
    enabled: bool,
    sft_dataset: dsl.Input[dsl.Dataset],
    sft_steps: int,
    epoch_count: int,
    adapter_size: int,
    learning_rate_multiplier: float,
    tuned_model_display_name: str,
    labels: dict,
    encryption_key: str,
    output_uri: str,
    local_options: dict,
    project: str,
    location: str,
    pipeline_job_name: str,
    warm_model: dsl.Output[dsl.Model],
):
    """Supervised tuning before reinforcement tuning (or a record of the base model when disabled).

    Vertex: a Gemini SFT job that re-attaches on retry; local: TRL SFT of the open model.
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.tuning.reinforcement.steps import run_warm_start

    call(
        run_warm_start,
        locals(),
        sft_path=sft_dataset.path,
        sft_uri=sft_dataset.uri,
        model_path=warm_model.path,
        model_metadata=warm_model.metadata,
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_reinforcement(
    backend: str,
    base_model: str,
    reward_config_uri: str,
    warm_model: dsl.Input[dsl.Model],
    train_prompts: dsl.Input[dsl.Dataset],
    eval_prompts: dsl.Input[dsl.Dataset],
    rl_steps: int,
    batch_size: int,
    samples_per_prompt: int,
    beta: float,
    epoch_count: int,
    adapter_size: int,
    learning_rate_multiplier: float,
    evaluate_interval: int,
    checkpoint_interval: int,
    rl_max_output_tokens: int,
    thinking_level: str,
    pre_tuned_model_checkpoint_id: str,
    tuned_model_display_name: str,
    labels: dict,
    encryption_key: str,
    output_uri: str,
    local_options: dict,
    project: str,
    location: str,
    pipeline_job_name: str,
    tuned_model: dsl.Output[dsl.Model],
) -> str:
    """Reinforcement tuning from the warm start: Vertex ``REINFORCEMENT_TUNING``, or TRL GRPO locally.

    Returns the deploy backend (``vertex`` for Gemini, ``local`` for open models trained by the local runner).
    """
    from tunekit.components.common.artifacts import call
    from tunekit.components.common.model_record import deploy_backend
    from tunekit.components.tuning.reinforcement.steps import run_tune_reinforcement

    call(
        run_tune_reinforcement,
        locals(),
        warm_model_path=warm_model.path,
        train_path=train_prompts.path,
        train_uri=train_prompts.uri,
        eval_uri=eval_prompts.uri,
        model_path=tuned_model.path,
        model_metadata=tuned_model.metadata,
    )
    return deploy_backend(backend, tuned_model.uri)
