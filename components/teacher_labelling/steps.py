"""The labelling step as a plain function of paths and values (the KFP wrapper calls it)."""

from __future__ import annotations

import json
import os
from typing import Any

from tunekit.components.common import uris
from tunekit.components.common.jsonl import dataset_file, read_jsonl, write_jsonl
from tunekit.components.teacher_labelling.label import (
    LabellingConfig,
    label_rows,
    report_metrics,
)

REPORT_FILE = "labelling_report.json"


def run_labelling(
    *,
    input_path: str,
    output_path: str,
    cache_dir: str,
    teacher_backend: str,
    teacher_model: str,
    backend_options: dict | None = None,
    engine_options: dict | None = None,
    price_table: dict | None = None,
    config: LabellingConfig | None,
    seed_dataset_uri: str = "",
    dry_run: bool = False,
    expected_output_tokens: int = 0,
    output_metadata: dict | None = None,
    teacher_script_uri: str = "",
    enabled: bool = True,
) -> dict[str, Any]:
    """Labels ``input_path`` into ``output_path``; answers are cached under ``cache_dir``.

    Args:
        input_path: The rows: a JSON Lines file, or a folder holding ``train.jsonl`` (data validation's output).
        output_path: Where the labelled rows go (JSON Lines), one per input row, in order.
        cache_dir: The response cache ('' for none).
        teacher_backend: A backend of :func:`~tunekit.components.model_clients.teachers.make_teacher`:
            ``vertex``, ``vertex_batch``, ``openai``, ``hf``, ``fake``, or ``scripted`` (answers from the
            ``label`` column of ``teacher_script_uri``; no model is called).
        teacher_model: The teacher model.
        backend_options: Backend options (``project``, ``location``, ``base_url``, ``staging_uri``...).
        engine_options: The engine's options.
        price_table: Prices per model, over the defaults.
        config: What to ask and how to read answers (None only with ``enabled`` False).
        seed_dataset_uri: A labelled seed set to draw exemplars from.
        dry_run: Estimate tokens and cost; send nothing.
        expected_output_tokens: A typical answer's length for the dry run.
        output_metadata: Receives counts for the output artifact's metadata.
        teacher_script_uri: The scripted teacher's script.
        enabled: False copies the rows through unchanged and calls no teacher (a pipeline whose labelling is
            done elsewhere, e.g. by the chain of thought of rationale extraction).

    Returns:
        The report; its flat numbers are under ``"metrics"``.
    """
    from tunekit.components.model_clients.teachers import make_teacher

    rows = read_jsonl(dataset_file(input_path))
    if not enabled or config is None:
        write_jsonl(output_path, rows)
        report: dict[str, Any] = {"rows": len(rows), "asked": 0, "enabled": False}
        report["metrics"] = report_metrics(report)
        if output_metadata is not None:
            output_metadata.update(rows=len(rows), layout="text_pairs", labelled_by_teacher=0, enabled=False)
        return report
    seed_rows: list[dict[str, Any]] = []
    if seed_dataset_uri:
        with uris.local_copy(seed_dataset_uri) as seed_path:
            seed_rows = read_jsonl(seed_path)
    options = dict(backend_options or {})
    engine = make_teacher(
        teacher_backend,
        teacher_model,
        project=options.pop("project", ""),
        location=options.pop("location", ""),
        script_uri=teacher_script_uri,
        options=options,
        engine_options=engine_options,
        cache_dir=cache_dir,
        price_table=price_table,
        script_field="label",
    )
    try:
        result = label_rows(
            rows,
            engine,
            config,
            seed_rows=seed_rows,
            dry_run_only=dry_run,
            expected_output_tokens=expected_output_tokens or None,
        )
    finally:
        engine.close()
    write_jsonl(output_path, result.rows)
    report = dict(result.report)
    report["metrics"] = report_metrics(result.report)
    if cache_dir and not uris.is_gcs(cache_dir):
        with open(os.path.join(cache_dir, REPORT_FILE), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, default=str)
    if output_metadata is not None:
        output_metadata.update(
            rows=report["rows"],
            layout="text_pairs",
            labelled_by_teacher=report.get("labelled_by_teacher", 0),
            statuses=report.get("statuses", {}),
            dry_run=dry_run,
        )
    return report
