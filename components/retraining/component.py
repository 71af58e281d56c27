"""KFP wrapper of the data-fingerprint check: the first step of every pipeline, deciding whether to retrain.

The body imports the installed package (lightweight components drop anything defined outside the function).
"""

from kfp import dsl

from tunekit.components.common.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def check_data_fingerprint(
    data_uris: list,
    purpose: str,
    backend: str,
    local_registry: str,
    force: bool,
    project: str,
    location: str,
    fingerprint: dsl.OutputPath(str),
    reason: dsl.OutputPath(str),
) -> bool:
    """Fingerprints the run's data and compares it with the one the champion of ``purpose`` was trained on.

    Returns True when the run should go on (data changed, no champion yet, or ``force``); False ends the run
    early as "skipped: data unchanged". Outputs ``fingerprint`` (sha256 hex, passed on to the deploy step) and
    ``reason`` (one line).
    """
    from tunekit.components.retraining.fingerprint import check_data

    decision = check_data(
        [str(uri) for uri in data_uris],
        purpose=purpose,
        backend=backend,
        local_registry=local_registry,
        project=project,
        location=location,
        force=force,
    )
    print(decision.reason, flush=True)
    with open(fingerprint, "w", encoding="utf-8") as handle:
        handle.write(decision.fingerprint)
    with open(reason, "w", encoding="utf-8") as handle:
        handle.write(decision.reason)
    return decision.proceed


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def resolve_start_model(start_from: str, purpose: str, backend: str, project: str, location: str) -> str:
    """``start_from`` with ``champion`` replaced by the purpose's champion when the run starts ('' for none yet)."""
    from tunekit.components.common.artifacts import call
    from tunekit.components.retraining.start_model import resolve_start_from

    return call(resolve_start_from, locals())
