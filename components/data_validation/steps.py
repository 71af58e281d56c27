"""The validation steps as plain functions of URIs and output paths (the KFP wrappers call these).

Outputs: the JSON report at ``report_path``, the HTML report at ``html_path``, KFP metrics through
``log_metric``, and (supervised, distillation, preference) the normalised valid rows under ``normalised_dir``
as ``train.jsonl`` / ``validation.jsonl``. A report that is not ok raises :class:`ValidationFailed` after
everything is written, so the pipeline stops at this step, before any paid step, with the reports kept.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from tunekit.components.common import uris
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import write_text
from tunekit.components.data_validation.report import Report
from tunekit.components.data_validation.validate import validate_dataset


class ValidationFailed(UserError):
    """The data has errors (or warnings, when strict); the message is the findings summary."""


def run_validation(
    uris_by_role: dict[str, str],
    *,
    method: str,
    task: str,
    base_model: str,
    strict: bool,
    report_path: str,
    html_path: str,
    log_metric: Callable[[str, float], None],
    normalised_dir: str | None = None,
    dedupe: bool = False,
    backend: str = "",
) -> Report:
    """Validates the files at ``uris_by_role`` (local paths or ``gs://`` URIs; '' means absent).

    ``backend`` is the embedding method's (``vertex`` or ``local``; '' for the other methods).

    Raises:
        ValidationFailed: The report is not ok; the message lists the first findings of each kind.
    """
    with contextlib.ExitStack() as stack:
        paths = {role: stack.enter_context(uris.local_copy(uri)) for role, uri in uris_by_role.items() if uri}
        report = validate_dataset(
            paths,
            method=method,
            task=task or None,
            model=base_model or None,
            strict=strict,
            dedupe=dedupe,
            normalised_dir=normalised_dir,
            backend=backend or None,
        )
    for directory in {os.path.dirname(report_path), os.path.dirname(html_path)}:
        if directory:
            os.makedirs(directory, exist_ok=True)
    report.write_json(report_path)
    write_text(html_path, report.render_html())
    for name, value in report.metrics().items():
        log_metric(name, value)
    if not report.ok:
        raise ValidationFailed("dataset validation failed:\n" + report.text_summary(per_kind=3))
    return report
