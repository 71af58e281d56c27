"""Validates the dataset files of one tuning run and returns a :class:`~.report.Report`.

One streaming pass per file checks every row (structure, types, roles, limits) and gathers the dataset-level
signals (lengths, templates, labels, duplicate candidates) in bounded memory; a second pass over the same file
parses only the lines that need a closer look (duplicate candidates, rows near a token limit).

Inputs, by method (``paths`` maps a role to a local file):

- ``supervised``, ``distillation``, ``preference``: ``train`` (required), ``validation`` (optional).
- ``embedding``: ``corpus``, ``queries``, ``train_labels`` (required), ``test_labels``, ``validation_labels``.

Outputs: the report; with ``normalised_dir``, one normalised JSON Lines file per role (``<role>.jsonl``): Gemini
``contents`` for supervised data, text pairs for distillation, the rows as given for preference data; rows with
errors are left out, and exact duplicates too when ``dedupe`` is set.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable

from tunekit.components.common.artifacts import call
from tunekit.components.common.errors import UserError
from tunekit.components.data_validation import checks, formats, limits
from tunekit.components.data_validation.findings import Findings
from tunekit.components.data_validation.quality import (
    MAX_LABELS,
    DuplicateIndex,
    Histogram,
    Templates,
    class_list,
    normalise_label,
    qa_context,
    template_signature,
)
from tunekit.components.data_validation.reader import (
    LINE_PROBLEMS,
    UnreadableFile,
    read_jsonl,
    readable_copy,
    reread,
)
from tunekit.components.data_validation.report import Report

#: Counts the tokens of one row exactly (e.g. through Vertex count-tokens); called only for rows near a limit.
TokenCounter = Callable[[dict], int]

#: A token estimate above this share of the limit is checked exactly (or warned about).
NEAR_LIMIT = 0.8
#: A token estimate above this share of the limit is an error even without an exact count.
OVER_LIMIT = 1.1
#: Rows near a token limit kept for an exact count; duplicate candidates confirmed on the second pass.
MAX_NEAR_LIMIT_ROWS = 1_000
MAX_DUPLICATE_CANDIDATES = 200_000
#: Training rows whose inputs are kept to find the same input in the validation set.
MAX_VALIDATION_KEYS = 200_000
#: A class with fewer examples than this (or under 1% of them) is rare.
RARE_CLASS = 5

ROLE_ORDER = ("train", "validation")


def validate_dataset(
    paths: dict[str, str],
    *,
    method: str,
    fmt: str | None = None,
    task: str | None = None,
    model: str | None = None,
    strict: bool = False,
    dedupe: bool = False,
    normalised_dir: str | None = None,
    token_counter: TokenCounter | None = None,
    backend: str | None = None,
) -> Report:
    """Validates the files of one run.

    Args:
        paths: Role -> local file path (see the module docstring); '' or None means absent.
        method: ``supervised``, ``distillation``, ``preference`` or ``embedding``.
        fmt: The format of the JSON Lines files (one of :data:`checks.ALL_FORMATS`), or None to detect it.
        task: ``classification``, ``summarization``, ``extractive_qa``, ``chat`` or ``generic`` (None).
        model: The base model id; Gemini models get Vertex's limits, other models none (None: Gemini).
        strict: Whether warnings fail the validation too.
        dedupe: Whether the normalised files leave exact duplicates out.
        normalised_dir: A folder to write the normalised files to, or None.
        token_counter: Counts a row's tokens exactly, for the rows whose estimate is near a limit.
        backend: Embedding sets only: ``vertex`` (None: the default; Google's template's size requirements are
            errors) or ``local`` (sentence-transformers; they are infos).

    Returns:
        The report: findings, counts by kind, summary statistics.

    Raises:
        UserError: ``method``, ``fmt`` or the roles in ``paths`` are not ones this function knows.
    """
    paths = {role: path for role, path in paths.items() if path}
    if method not in limits.METHODS:
        raise UserError(f"unknown method '{method}'; use one of {', '.join(limits.METHODS)}")
    if backend is not None and backend not in limits.EMBEDDING_BACKENDS:
        raise UserError(
            f"unknown embedding backend '{backend}'; use one of {', '.join(limits.EMBEDDING_BACKENDS)}",
            field="backend",
        )
    if backend is not None and method != limits.EMBEDDING:
        raise UserError(
            f"a backend is checked for embedding sets only, not for method '{method}'", field="backend"
        )
    task = task or "generic"
    findings = Findings()
    report = Report(method=method, task=task, model=model, strict=strict, findings=findings)
    if task not in limits.TASKS:
        findings.add("unknown_task", "", None, "task", f"unknown task '{task}'; no task-specific checks run")
    with contextlib.ExitStack() as stack:
        copies = readable_paths(paths, stack, findings, report)
        _validate(report, findings, {role: copy for role, (copy, _) in copies.items()}, locals())
        restore_paths(report, {copy: given for copy, given in copies.values() if copy != given})
    return report


def readable_paths(
    paths: dict[str, str], stack: contextlib.ExitStack, findings: Findings, report: Report
) -> dict[str, tuple[str, str]]:
    """Role -> (a path that can be read more than once, the path given).

    Pipes are copied (see :func:`.reader.readable_copy`) until ``stack`` closes; an unreadable pipe is a
    ``file_unreadable`` finding.
    """
    copies = {}
    for role, path in paths.items():
        try:
            copies[role] = (stack.enter_context(readable_copy(path)), path)
        except UnreadableFile as exc:
            findings.add("file_unreadable", path, None, None, str(exc))
            report.summary.setdefault("files", {})[role] = {"path": path, "format": None}
            report.unreadable = True
    return copies


def restore_paths(report: Report, given_by_copy: dict[str, str]) -> None:
    """Names the files given in ``report`` where it names the temporary copies of pipes."""
    if not given_by_copy:
        return
    for finding in report.findings_collector.kept:
        finding.path = given_by_copy.get(finding.path, finding.path)
    for stats in report.summary.get("files", {}).values():
        if stats.get("path") in given_by_copy:
            stats["path"] = given_by_copy[stats["path"]]
    notes = report.summary.get("notes")
    if notes:
        for copy, given in given_by_copy.items():
            notes[:] = [note.replace(copy, given) for note in notes]


def _validate(report: Report, findings: Findings, paths: dict[str, str], given: dict) -> None:
    method, fmt, task, model = given["method"], given["fmt"], given["task"], given["model"]
    strict, dedupe, normalised_dir, token_counter = (
        given["strict"],
        given["dedupe"],
        given["normalised_dir"],
        given["token_counter"],
    )
    if method == "embedding":
        from tunekit.components.data_validation.embedding import validate_embedding

        validate_embedding(paths, findings, report, given["backend"] or limits.EMBEDDING_VERTEX)
        return
    allowed = checks.FORMATS_BY_METHOD[method]
    if fmt is not None and fmt not in allowed:
        raise UserError(f"format '{fmt}' does not fit method '{method}'; use one of {', '.join(allowed)}")
    unknown_roles = set(paths) - set(ROLE_ORDER)
    if unknown_roles:
        raise UserError(
            f"unknown file role(s) {', '.join(sorted(unknown_roles))} for method '{method}'; "
            "give 'train' and optionally 'validation'"
        )
    _check_model(method, model, findings)
    if "train" not in given["paths"]:
        findings.add("missing_file", "", None, "train", "no training file given")
    validator = call(_DatasetValidator, locals())
    # Validation first: its inputs are what the training rows are compared with for overlap.
    try:
        for role in ("validation", "train"):
            if role in paths:
                validator.scan(role, paths[role])
    finally:
        for writer in validator.writers:
            writer.abort()
    report.summary["files"] = {
        role: report.summary["files"][role] for role in ROLE_ORDER if role in report.summary["files"]
    }
    if "train" in paths and "validation" not in paths and method == "supervised":
        findings.add("no_validation_set", paths["train"], None, None, "no validation set given")


def _check_model(method: str, model: str | None, findings: Findings) -> None:
    if not model:
        return
    name = model.split("/")[-1]
    if any(name.startswith(palm) for palm in limits.RETIRED_PALM):
        findings.add(
            "unsupported_model",
            "",
            None,
            "base_model",
            f"'{model}' is a PaLM model, retired on 2025-04-09; its data format is still accepted",
            "pick a Gemini model or an open model",
        )
    elif (
        method == "supervised"
        and limits.is_gemini(model)
        and not any(name == tunable or name.startswith(tunable + "-0") for tunable in limits.TUNABLE_GEMINI)
    ):
        findings.add(
            "unsupported_model",
            "",
            None,
            "base_model",
            f"'{model}' is not among the tunable Gemini models ({', '.join(limits.TUNABLE_GEMINI)})",
        )


def _truncated(findings: Findings, path: str, line: int, side: str, tokens: int, limit: int | None) -> int:
    """1 when a row's ``side`` (``input`` or ``output``) is over the ``limit`` tuning truncates at (a finding), else 0."""
    if limit is None or tokens <= limit:
        return 0
    findings.add(
        f"truncated_{side}",
        path,
        line,
        f"{side}_text",
        f"about {tokens:,} tokens (estimate); {side}s over {limit:,} tokens are truncated",
    )
    return 1


class _FileStats:
    """What one pass over one file gathers (bounded memory)."""

    def __init__(self):
        self.lines_with_objects = 0
        self.valid = 0
        self.labelled = 0
        self.multimodal = 0
        self.input_tokens = Histogram()
        self.output_tokens = Histogram()
        self.truncated_inputs = 0
        self.truncated_outputs = 0
        self.near_limit: list[tuple[int, int]] = []
        self.near_limit_count = 0
        self.templates = Templates()
        self.labels: Counter = Counter()
        self.labels_other = 0
        self.classes: tuple[str, ...] | None = None
        self.duplicates = DuplicateIndex()


class _DatasetValidator:
    def __init__(
        self,
        *,
        findings: Findings,
        report: Report,
        method: str,
        fmt: str | None,
        task: str,
        model: str | None,
        dedupe: bool,
        normalised_dir: str | None,
        token_counter: TokenCounter | None,
    ):
        self.findings = findings
        self.report = report
        self.method = method
        self.fmt = fmt
        self.task = task
        self.limits = limits.limits_for(method, model)
        self.dedupe = dedupe
        self.normalised_dir = normalised_dir
        self.token_counter = token_counter
        self.validation_keys: dict[int, int] = {}
        self.writers: list[_AtomicWriter] = []
        self.report.summary.setdefault("files", {})

    def scan(self, role: str, path: str) -> None:
        """Validates one file; its statistics go to ``report.summary["files"][role]``."""
        findings = self.findings
        summary: dict = {"path": path, "format": None}
        self.report.summary["files"][role] = summary
        try:
            rows = read_jsonl(path, findings)
            first = next(rows, None)  # opens the file: an unreadable one is reported here
            size = os.path.getsize(path)
        except (UnreadableFile, OSError) as exc:
            findings.add(
                "file_unreadable",
                path,
                None,
                None,
                str(exc) if isinstance(exc, UnreadableFile) else f"cannot be read: {exc}",
            )
            self.report.unreadable = True
            return
        summary["bytes"] = size
        stats = _FileStats()
        writer = self._open_normalised(role)
        seen_rows: set[int] = set()
        fmt = self.fmt
        checker = checks.RowChecker(findings, path, self.method, fmt) if fmt else None
        check = checker.check if checker else None
        method = self.method
        detect = checks.detect
        limit_total = self.limits.max_tokens_per_example
        near_total = int(limit_total * NEAR_LIMIT) if limit_total else None
        max_in = self.limits.max_input_tokens
        max_out = self.limits.max_output_tokens
        is_train = role == "train"
        validation_keys = self.validation_keys if is_train else None
        keep_validation_keys = role == "validation"
        templates_add = stats.templates.add
        in_add = stats.input_tokens.add
        out_add = stats.output_tokens.add
        dup_add = stats.duplicates.add
        classification = self.task == "classification"
        extractive = self.task == "extractive_qa"

        def iterate():
            if first is not None:
                yield first
                yield from rows

        for line, obj in iterate():
            stats.lines_with_objects += 1
            row_fmt = detect(obj, method)
            if check is None:
                if row_fmt is None:
                    findings.add(
                        "unknown_format",
                        path,
                        line,
                        None,
                        "fits no format for method "
                        f"'{method}' (fields: {', '.join(sorted(map(str, obj))[:8]) or 'none'})",
                        "use " + " or ".join(checks.FORMATS_BY_METHOD[method]) + " (see docs/validation.md)",
                    )
                    continue
                fmt = row_fmt
                checker = checks.RowChecker(findings, path, method, fmt)
                check = checker.check
            elif row_fmt != fmt and row_fmt is not None and not _compatible(fmt, row_fmt):
                findings.add("mixed_formats", path, line, None, f"this row is {row_fmt}, the file is {fmt}")
                continue
            row = check(obj, line)
            if row is None:
                continue
            stats.valid += 1
            prompt, output, tin, tout, files, input_key, output_key = row
            in_add(tin)
            total = tin + tout
            if output is not None:
                stats.labelled += 1
                out_add(tout)
            if files:
                stats.multimodal += 1
            if near_total is not None and total > near_total:
                stats.near_limit_count += 1
                if len(stats.near_limit) < MAX_NEAR_LIMIT_ROWS:
                    stats.near_limit.append((line, total))
            stats.truncated_inputs += _truncated(findings, path, line, "input", tin, max_in)
            stats.truncated_outputs += _truncated(findings, path, line, "output", tout, max_out)
            dup_add(input_key, line)
            if validation_keys:
                other = validation_keys.get(hash(input_key))
                if other is not None:
                    findings.add(
                        "train_validation_overlap",
                        path,
                        line,
                        None,
                        f"the same input is on line {other} of the validation file",
                    )
            elif keep_validation_keys and len(self.validation_keys) < MAX_VALIDATION_KEYS:
                self.validation_keys.setdefault(hash(input_key), line)
            signature = template_signature(prompt)
            templates_add(signature, line)
            if classification and output is not None:
                self._classify(stats, path, line, prompt, output, signature)
            if extractive and output is not None:
                context = qa_context(prompt)
                if context is None:
                    findings.add("missing_context", path, line, None, "the prompt has no 'context:' section")
                elif output.strip() not in context:
                    findings.add(
                        "answer_not_in_context",
                        path,
                        line,
                        None,
                        f"the answer {output.strip()[:60]!r} is not a substring of the context",
                    )
            if writer is not None:
                if self.dedupe:
                    key = hash((input_key, output_key))
                    if key in seen_rows:
                        continue
                    seen_rows.add(key)
                writer.write(json.dumps(self._normalise(obj, fmt), ensure_ascii=False) + "\n")
        if writer is not None:
            writer.commit()

        summary["format"] = fmt
        summary["rows"] = stats.lines_with_objects
        summary["valid_rows"] = stats.valid
        if stats.lines_with_objects == 0 and not any(
            f.path == path and f.kind in LINE_PROBLEMS for f in findings.kept
        ):
            findings.add("empty_file", path, None, None, "the file has no rows")
        self._file_limits(role, path, size, stats)
        self._token_limits(path, stats)
        self._duplicates(path, fmt, stats, summary)
        self._dataset_checks(role, path, stats, summary)
        summary["input_tokens_estimate"] = stats.input_tokens.summary()
        summary["output_tokens_estimate"] = stats.output_tokens.summary()
        summary["labelled_rows"] = stats.labelled
        summary["unlabelled_rows"] = stats.valid - stats.labelled
        summary["multimodal_rows"] = stats.multimodal
        summary["truncated_inputs"] = stats.truncated_inputs
        summary["truncated_outputs"] = stats.truncated_outputs
        summary["rows_near_token_limit"] = stats.near_limit_count
        self.report.distributions.setdefault(role, {}).update(
            input_tokens=stats.input_tokens.nonzero(), output_tokens=stats.output_tokens.nonzero()
        )

    def _classify(
        self, stats: _FileStats, path: str, line: int, prompt: str, output: str, signature: tuple
    ) -> None:
        label = normalise_label(output)
        if label in stats.labels or len(stats.labels) < MAX_LABELS:
            stats.labels[label] += 1
        else:
            stats.labels_other += 1
        classes = class_list(prompt)
        if classes is None:
            if not signature[1]:
                # Bare text (``5 stocks to buy now``): no class list and no ``Text:``-like section.
                self.findings.add(
                    "missing_instruction",
                    path,
                    line,
                    "input",
                    "the prompt is bare text: no instruction listing the classes and no 'Text:' section",
                )
            return
        if stats.classes is None:
            stats.classes = classes
        if label not in classes:
            self.findings.add(
                "class_not_in_instruction",
                path,
                line,
                "output",
                f"output {output.strip()[:60]!r} is not among the classes the instruction lists "
                f"({', '.join(classes[:10])})",
            )

    def _open_normalised(self, role: str):
        if not self.normalised_dir:
            return None
        os.makedirs(self.normalised_dir, exist_ok=True)
        writer = _AtomicWriter(os.path.join(self.normalised_dir, f"{role}.jsonl"))
        self.writers.append(writer)
        return writer

    def _normalise(self, obj: dict, fmt: str) -> dict:
        """The normalised form of a valid row (see the module docstring)."""
        if self.method == "supervised" and fmt in (formats.TEXT_PAIR, formats.CHAT):
            try:
                return formats.to_gemini(formats.to_example(obj, fmt))
            except UserError:  # pragma: no cover - the row checks accept only what to_example reads
                return obj
        if fmt == formats.TEXT_PAIR:
            return {key: obj[key] for key in ("input_text", "output_text") if obj.get(key) is not None}
        return obj

    def _file_limits(self, role: str, path: str, size: int, stats: _FileStats) -> None:
        lim = self.limits
        add = self.findings.add
        if lim.max_file_bytes and size > lim.max_file_bytes:
            add(
                "file_too_large",
                path,
                None,
                None,
                f"{size / limits.GB:.2f} GB; the limit is {lim.max_file_bytes / limits.GB:.0f} GB",
            )
        if role == "train":
            cap = (
                lim.max_multimodal_examples
                if stats.multimodal and lim.max_multimodal_examples
                else lim.max_examples
            )
            if cap and stats.valid > cap:
                what = "multimodal " if stats.multimodal and lim.max_multimodal_examples else ""
                add(
                    "too_many_examples",
                    path,
                    None,
                    None,
                    f"{stats.valid:,} examples; the limit for {what}data is {cap:,}",
                )
            if lim.reference_max_examples and stats.valid > lim.reference_max_examples:
                add(
                    "over_example_limit",
                    path,
                    None,
                    None,
                    f"{stats.valid:,} examples; the PaLM-era distillation template took at most "
                    f"{lim.reference_max_examples:,} (each one also costs a teacher call)",
                )
        elif role == "validation" and lim.max_validation_examples and stats.valid > lim.max_validation_examples:
            add(
                "validation_too_large",
                path,
                None,
                None,
                f"{stats.valid:,} validation examples; the limit is {lim.max_validation_examples:,}",
            )

    def _token_limits(self, path: str, stats: _FileStats) -> None:
        limit = self.limits.max_tokens_per_example
        if not limit or not stats.near_limit:
            return
        exact: dict[int, int] = {}
        if self.token_counter is not None:
            for line, obj in reread(path, [line for line, _ in stats.near_limit]):
                try:
                    exact[line] = int(self.token_counter(obj))
                except Exception as exc:  # noqa: BLE001 - an unavailable counter must not stop validation
                    self.report.summary.setdefault("token_count_errors", []).append(f"{path}:{line}: {exc}")
        for line, estimate in stats.near_limit:
            if line in exact:
                if exact[line] > limit:
                    self.findings.add(
                        "too_many_tokens",
                        path,
                        line,
                        None,
                        f"{exact[line]:,} tokens (counted by the model's tokenizer); the limit is {limit:,}",
                    )
            elif estimate > limit * OVER_LIMIT:
                self.findings.add(
                    "too_many_tokens",
                    path,
                    line,
                    None,
                    f"about {estimate:,} tokens (estimate); the limit is {limit:,} per example",
                )
            else:
                self.findings.add(
                    "near_token_limit",
                    path,
                    line,
                    None,
                    f"about {estimate:,} tokens (estimate); the limit is {limit:,} per example",
                )
        if stats.near_limit_count > len(stats.near_limit):
            self.report.summary.setdefault("notes", []).append(
                f"{path}: {stats.near_limit_count - len(stats.near_limit):,} more rows near the token limit were not "
                "counted exactly"
            )

    def _duplicates(self, path: str, fmt: str | None, stats: _FileStats, summary: dict) -> None:
        candidates = stats.duplicates.candidate_lines(MAX_DUPLICATE_CANDIDATES)
        exact = conflicting = 0
        if candidates and fmt is not None:
            silent = Findings(keep_per_kind=0)
            checker = checks.RowChecker(silent, path, self.method, fmt)
            first_by_input: dict[int, tuple[int, dict[int | None, int]]] = {}
            for line, obj in reread(path, candidates):
                row = checker.check(obj, line)
                if row is None:
                    continue
                input_hash = hash(row[5])
                output_hash = None if row[6] is None else hash(row[6])
                seen = first_by_input.get(input_hash)
                if seen is None:
                    first_by_input[input_hash] = (line, {output_hash: line})
                    continue
                first_line, outputs = seen
                if output_hash in outputs:
                    exact += 1
                    self.findings.add(
                        "duplicate", path, line, None, f"an exact duplicate of line {outputs[output_hash]}"
                    )
                else:
                    conflicting += 1
                    outputs[output_hash] = line
                    self.findings.add(
                        "conflicting_duplicate",
                        path,
                        line,
                        None,
                        f"the same input as line {first_line} with a different output",
                    )
        if len(candidates) >= MAX_DUPLICATE_CANDIDATES:
            self.report.summary.setdefault("notes", []).append(
                f"{path}: duplicate search stopped after {MAX_DUPLICATE_CANDIDATES:,} candidate rows"
            )
        summary["duplicates"] = exact
        summary["conflicting_duplicates"] = conflicting

    def _dataset_checks(self, role: str, path: str, stats: _FileStats, summary: dict) -> None:
        add = self.findings.add
        # Instruction consistency: only when one template dominates; free-form prompts (chat) have none.
        dominant, share = stats.templates.dominant()
        summary["dominant_template"] = (
            {"instruction": dominant[0], "sections": list(dominant[1]), "share": round(share, 4)}
            if dominant
            else None
        )
        if dominant is not None and 0.5 <= share < 1.0 and stats.valid >= 4:
            missing = stats.templates.total - stats.templates.counts[dominant]
            add(
                "instruction_inconsistent",
                path,
                None,
                None,
                f"{missing:,} of {stats.templates.total:,} prompts ({1 - share:.1%}) do not follow the dominant "
                f"template (instruction {dominant[0][:60]!r}, sections {', '.join(dominant[1]) or 'none'})",
            )
            for line, signature in stats.templates.deviating_lines(10):
                add(
                    "instruction_inconsistent",
                    path,
                    line,
                    None,
                    f"instruction {signature[0][:60]!r}, sections {', '.join(signature[1]) or 'none'}",
                )
        if self.task == "classification" and stats.labels:
            total = sum(stats.labels.values()) + stats.labels_other
            summary["labels"] = dict(stats.labels.most_common(50))
            summary["classes_in_instruction"] = list(stats.classes) if stats.classes else None
            self.report.distributions.setdefault(role, {})["labels"] = stats.labels.most_common(50)
            distinct = len(stats.labels) + (1 if stats.labels_other else 0)
            if distinct > 50:
                add(
                    "too_many_classes",
                    path,
                    None,
                    "output",
                    f"{len(stats.labels):,}{'+' if stats.labels_other else ''} distinct outputs for a classification task",
                )
            elif distinct >= 2:
                threshold = max(RARE_CLASS, total * 0.01)
                for label, n in stats.labels.items():
                    if n < threshold:
                        add(
                            "rare_class",
                            path,
                            None,
                            "output",
                            f"class {label!r} has only {n} of {total:,} examples",
                        )
        if role != "train":
            return
        recommended = limits.RECOMMENDED_EXAMPLES.get(self.task)
        if recommended is not None:
            minimum = recommended[1] if self.method == "distillation" else recommended[0]
            if minimum and stats.valid < minimum:
                add(
                    "too_few_examples",
                    path,
                    None,
                    None,
                    f"{stats.valid:,} examples; the SPEC recommends at least {minimum:,} for {self.task}",
                )
        if self.method == "distillation":
            unlabelled = stats.valid - stats.labelled
            if stats.labelled and unlabelled:
                add(
                    "labelled_mix",
                    path,
                    None,
                    "output_text",
                    f"{stats.labelled:,} labelled and {unlabelled:,} unlabelled rows",
                )
            if unlabelled and unlabelled <= limits.MIN_UNLABELLED_DISTILLATION:
                add(
                    "few_unlabelled",
                    path,
                    None,
                    None,
                    f"{unlabelled:,} unlabelled examples; more than {limits.MIN_UNLABELLED_DISTILLATION:,} are recommended",
                )


class _AtomicWriter:
    """Writes a file through a temporary file in its folder; :meth:`commit` renames it into place.

    A step that fails or is killed before the commit leaves no partial file at ``path`` (like
    ``common.jsonl.write_jsonl``, which takes all rows at once; this one takes them as the scan finds them).
    """

    def __init__(self, path: str):
        self.path = path
        self.tmp = f"{path}.tmp{os.getpid()}"
        self.handle = open(self.tmp, "w", encoding="utf-8")
        self.write = self.handle.write

    def commit(self) -> None:
        self.handle.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        """Removes the temporary file unless it was committed."""
        if not self.handle.closed:
            self.handle.close()
            with contextlib.suppress(OSError):
                os.remove(self.tmp)


def _compatible(file_fmt: str, row_fmt: str) -> bool:
    """Whether a row detected as ``row_fmt`` is checked as ``file_fmt`` (its checker then names what is missing)."""
    return file_fmt == checks.HUMAN_PREFERENCE and row_fmt == checks.PROMPT
