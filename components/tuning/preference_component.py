"""KFP wrappers of the preference-tuning steps (prepare, warm start, preference tuning).

Bodies import the installed package: lightweight components drop anything defined outside the function, and the
component image has tunekit installed (no pip at run time).
"""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare_preference_data(
    validated_dataset: dsl.Input[dsl.Dataset],
    prompt_dataset_uri: str,
    sft_dataset_uri: str,
    eval_split: float,
    seed: int,
    preference_dataset: dsl.Output[dsl.Dataset],
    eval_pairs: dsl.Output[dsl.Dataset],
    prompt_dataset: dsl.Output[dsl.Dataset],
    sft_dataset: dsl.Output[dsl.Dataset],
    reports: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
):
    """Turns the validated pairs into the Gemini preference format and holds out evaluation pairs.

    Also validates the optional prompt and SFT datasets (reports in ``reports``) and builds the warm start's data:
    the preferred answers in the Gemini SFT format, or the user's own SFT data.
    """
    from tunekit.components.tuning.preference_steps import run_prepare_preference
    from tunekit.components.tuning.prepare import fingerprint_files

    counts = run_prepare_preference(
        validated_dir=validated_dataset.path,
        prompt_dataset_uri=prompt_dataset_uri,
        sft_dataset_uri=sft_dataset_uri,
        eval_split=eval_split,
        seed=seed,
        preference_path=preference_dataset.path,
        eval_path=eval_pairs.path,
        prompt_path=prompt_dataset.path,
        sft_path=sft_dataset.path,
        reports_dir=reports.path,
    )
    for key, value in counts.items():
        metrics.log_metric(key, float(value))
    preference_dataset.metadata.update(counts)
    preference_dataset.metadata["layout"] = "gemini_preference"
    preference_dataset.metadata["fingerprint"] = fingerprint_files(preference_dataset.path)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def warm_start_supervised(
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
    """Supervised tuning on the preferred answers before preference tuning (or a record of the base model).

    Vertex: a Gemini SFT job that re-attaches on retry; local: TRL SFT of the open model.
    """
    from tunekit.components.tuning.preference_steps import run_warm_start

    run_warm_start(
        backend=backend,
        base_model=base_model,
        enabled=enabled,
        sft_path=sft_dataset.path,
        sft_uri=sft_dataset.uri,
        model_path=warm_model.path,
        model_metadata=warm_model.metadata,
        sft_steps=sft_steps,
        epoch_count=epoch_count,
        adapter_size=adapter_size,
        learning_rate_multiplier=learning_rate_multiplier,
        tuned_model_display_name=tuned_model_display_name,
        labels=labels,
        encryption_key=encryption_key,
        output_uri=output_uri,
        local_options=local_options,
        project=project,
        location=location,
        pipeline_job_name=pipeline_job_name,
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def tune_preference(
    backend: str,
    algorithm: str,
    base_model: str,
    warm_model: dsl.Input[dsl.Model],
    preference_dataset: dsl.Input[dsl.Dataset],
    eval_pairs: dsl.Input[dsl.Dataset],
    prompt_dataset: dsl.Input[dsl.Dataset],
    beta: float,
    epoch_count: int,
    adapter_size: int,
    learning_rate_multiplier: float,
    pre_tuned_model_checkpoint_id: str,
    tuned_model_display_name: str,
    labels: dict,
    encryption_key: str,
    output_uri: str,
    reward_steps: int,
    rl_steps: int,
    batch_size: int,
    local_options: dict,
    project: str,
    location: str,
    pipeline_job_name: str,
    tuned_model: dsl.Output[dsl.Model],
    reward_model: dsl.Output[dsl.Model],
):
    """Preference tuning from the warm start: Vertex ``PREFERENCE_TUNING``, or TRL reward model + RLOO / DPO."""
    from tunekit.components.tuning.preference_steps import run_tune_preference

    run_tune_preference(
        backend=backend,
        algorithm=algorithm,
        base_model=base_model,
        warm_model_path=warm_model.path,
        preference_path=preference_dataset.path,
        preference_uri=preference_dataset.uri,
        eval_uri=eval_pairs.uri,
        prompt_path=prompt_dataset.path,
        model_path=tuned_model.path,
        model_metadata=tuned_model.metadata,
        reward_path=reward_model.path,
        reward_metadata=reward_model.metadata,
        beta=beta,
        epoch_count=epoch_count,
        adapter_size=adapter_size,
        learning_rate_multiplier=learning_rate_multiplier,
        pre_tuned_model_checkpoint_id=pre_tuned_model_checkpoint_id,
        tuned_model_display_name=tuned_model_display_name,
        labels=labels,
        encryption_key=encryption_key,
        output_uri=output_uri,
        reward_steps=reward_steps,
        rl_steps=rl_steps,
        batch_size=batch_size,
        local_options=local_options,
        project=project,
        location=location,
        pipeline_job_name=pipeline_job_name,
    )
