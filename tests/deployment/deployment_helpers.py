"""What the deployment tests share: the deploy step run with the tests' defaults.

The fake Vertex these tests talk to is the ``fake`` fixture (``conftest.py``).
"""

from tunekit.components.deployment.steps import run_deploy


def deploy_step(tmp_path, name, accuracy, **overrides):
    """:func:`run_deploy` of the model folder ``tmp_path/name`` for "Support Routing"; ``overrides`` win.

    Defaults: the Vertex backend, ``tuned_accuracy`` = ``accuracy``, gate reason "better", the run ``run-<name>``,
    no local registry, the record at ``tmp_path/name/deployment.json``.
    """
    arguments = {
        "backend": "vertex",
        "model_path": str(tmp_path / name),
        "model_metadata": {},
        "dataset_fingerprint": "",
        "metrics": {"tuned_accuracy": accuracy},
        "gate_reason": "better",
        "purpose": "Support Routing",
        "pipeline_job_name": f"run-{name}",
        "local_registry_path": "",
        "deployment_path": str(tmp_path / name / "deployment.json"),
    }
    return run_deploy(**{**arguments, **overrides})
