"""What the evaluation tests share: held-out ticket rows, and the supervised evaluation and deploy steps run on them.

The fake Vertex these tests talk to is the ``vertex`` fixture (``conftest.py``).
"""

import json

from tunekit.components.deployment.steps import run_deploy
from tunekit.components.evaluation.supervised.steps import run_evaluate

#: The teams a support ticket is routed to: ``ticket i`` goes to ``TEAMS[i % 2]``.
TEAMS = ("billing", "shipping")


def write_rows(path, rows) -> str:
    """Writes ``rows`` as JSON Lines to ``path`` (a ``pathlib.Path``); returns it as a string."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def tickets(n: int) -> list[dict]:
    """``n`` prompt/completion rows: ``ticket i`` and its team."""
    return [{"prompt": f"ticket {i}", "completion": TEAMS[i % 2]} for i in range(n)]


def truth(rows: list[dict]) -> dict[str, str]:
    """Prompt -> the right answer, for a fake model that is always right."""
    return {r["prompt"]: r["completion"] for r in rows}


def gemini_tickets(n: int, *, answer: str = "", system: str = "") -> list[dict]:
    """The same tickets in the Gemini format; ``answer`` is every row's reference instead of its team."""
    rows = []
    for row in tickets(n):
        contents = [
            {"role": "user", "parts": [{"text": row["prompt"]}]},
            {"role": "model", "parts": [{"text": answer or row["completion"]}]},
        ]
        rows.append(
            {"contents": contents, **({"systemInstruction": {"parts": [{"text": system}]}} if system else {})}
        )
    return rows


def resource(server, name: str) -> str:
    """The full resource name of ``name`` (``endpoints/7``, ``models/55``) in the fake's project and region."""
    return f"projects/{server.project}/locations/{server.location}/{name}"


def evaluate_locally(tmp_path, name: str, clients=None, *, base_model: str = "unused", **kwargs):
    """The supervised evaluation step here, on ``tmp_path/v.jsonl``: the model ``tmp_path/name`` beside its base.

    ``clients`` (``base``, ``tuned``, optionally ``champion``) answer instead of loaded models; the predictions and
    the summary go to ``<name>-pred.jsonl`` and ``<name>-summary.md``; ``kwargs`` go to the step.
    """
    return run_evaluate(
        backend="local",
        task="classification",
        base_model=base_model,
        model_path=str(tmp_path / name),
        model_metadata={},
        validation_path=str(tmp_path / "v.jsonl"),
        predictions_path=str(tmp_path / f"{name}-pred.jsonl"),
        summary_path=str(tmp_path / f"{name}-summary.md"),
        clients=clients,
        **kwargs,
    )


def evaluate_on_vertex(tmp_path, server, endpoint: str, validation: str, **kwargs):
    """The supervised evaluation step on the fake Vertex: ``endpoint`` (the tuned model) against gemini-2.5-flash."""
    (tmp_path / "model").mkdir(exist_ok=True)
    return run_evaluate(
        backend="vertex",
        task="classification",
        base_model="gemini-2.5-flash",
        model_path=str(tmp_path / "model"),
        model_metadata={"endpoint": endpoint},
        validation_path=validation,
        predictions_path=str(tmp_path / "p.jsonl"),
        summary_path=str(tmp_path / "s.md"),
        project=server.project,
        location=server.location,
        **kwargs,
    )


def deploy_locally(
    tmp_path,
    model_path,
    registry: str,
    gate_reason: str,
    *,
    purpose: str = "support-routing",
    name: str = "run-1",
    model_metadata: dict | None = None,
    metrics: dict | None = None,
    dataset_fingerprint: str = "",
) -> dict:
    """The deploy step here: registers ``model_path`` for ``purpose`` in the ``registry`` file (run ``name``)."""
    return run_deploy(
        backend="local",
        model_path=str(model_path),
        model_metadata=model_metadata or {},
        dataset_fingerprint=dataset_fingerprint,
        metrics=metrics or {},
        gate_reason=gate_reason,
        purpose=purpose,
        pipeline_job_name=name,
        local_registry_path=registry,
        deployment_path=str(tmp_path / f"{name}-deployment.json"),
    )
