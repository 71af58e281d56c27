"""The labelling step as a plain function of paths and values (the KFP wrapper calls it)."""

from __future__ import annotations

import json
import os
from typing import Any

from tunekit.components.common import uris
from tunekit.components.model_clients.backends import make_engine
from tunekit.components.teacher_labelling.label import (
    LabellingConfig,
    label_rows,
    read_jsonl,
    report_metrics,
    write_jsonl,
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
    config: LabellingConfig,
    seed_dataset_uri: str = "",
    dry_run: bool = False,
    expected_output_tokens: int = 0,
    output_metadata: dict | None = None,
) -> dict[str, Any]:
    """Labels ``input_path`` into ``output_path``; answers are cached under ``cache_dir``.

    Returns:
        The report; its flat numbers are under ``"metrics"``.
    """
    rows = read_jsonl(input_path)
    seed_rows: list[dict[str, Any]] = []
    if seed_dataset_uri:
        with uris.local_copy(seed_dataset_uri) as seed_path:
            seed_rows = read_jsonl(seed_path)
    engine = make_engine(
        teacher_backend,
        teacher_model,
        options=backend_options,
        engine_options=engine_options,
        cache_dir=cache_dir or None,
        price_table=price_table,
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
