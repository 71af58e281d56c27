"""Validation of a text-embedding tuning set: corpus, queries and label files, checked together.

Input files (roles of ``paths``):

- ``corpus``: JSON Lines ``{"_id": str, "title"?: str, "text": str}``.
- ``queries``: JSON Lines ``{"_id": str, "text": str}``.
- ``train_labels`` (required), ``test_labels``, ``validation_labels``: TSV with the header
  ``query-id<TAB>corpus-id<TAB>score``; scores are numbers, zero or more.

Checked as a set: ids unique within their file, every label pointing at an existing query and document, scores
numeric and non-negative, the header present, and test/validation queries not also used for training.

Sizes are checked against Google's template (:data:`~.limits.EMBEDDING_TEMPLATE`: 9-10,000 queries, 9-500,000
documents, at least 3 query ids per label file and 9 across them, fewer than 500,000 labels). With the ``vertex``
backend a set outside them is an error, since the template run would fail after the job starts; the ``local``
backend (sentence-transformers) trains on any size, so there the same facts are ``info`` findings, which say
what the template would reject without failing the run, strict or not.
Ids are kept as 64-bit hashes, so memory grows with the number of ids (8 bytes each plus set overhead) but not
with text sizes.
"""

from __future__ import annotations

import math
import os

from tunekit.components.data_validation import limits
from tunekit.components.data_validation.findings import INFO, Findings
from tunekit.components.data_validation.quality import Histogram
from tunekit.components.data_validation.reader import (
    LINE_PROBLEMS,
    UnreadableFile,
    is_gzip,
    json_type,
    open_binary,
    read_jsonl,
    report_gzip,
)
from tunekit.components.data_validation.report import Report

LABEL_ROLES = ("train_labels", "test_labels", "validation_labels")
ROLES = ("corpus", "queries", *LABEL_ROLES)
HEADER = ("query-id", "corpus-id", "score")


def validate_embedding(
    paths: dict[str, str], findings: Findings, report: Report, backend: str = limits.EMBEDDING_VERTEX
) -> None:
    """Validates an embedding set; findings go to ``findings``, statistics to ``report.summary["files"]``.

    Args:
        paths: Role (:data:`ROLES`) -> local file path.
        findings: Where the findings go.
        report: Where the statistics go.
        backend: ``vertex`` (the template's size requirements are errors) or ``local`` (they are infos).
    """
    files: dict = {}
    report.summary["files"] = files
    report.summary["backend"] = backend
    unknown = set(paths) - set(ROLES)
    for role in sorted(unknown):
        findings.add(
            "unknown_field", paths[role], None, role, f"unknown file role '{role}'; use {', '.join(ROLES)}"
        )
    for role in ("corpus", "queries", "train_labels"):
        if role not in paths:
            findings.add("missing_file", "", None, role, f"no {role.replace('_', ' ')} file given")
    corpus_ids = _documents(paths.get("corpus"), "corpus", findings, report, files)
    query_ids = _documents(paths.get("queries"), "queries", findings, report, files)
    train_queries: set[int] = set()
    label_files: dict[str, tuple[int, set[int]]] = {}
    for role in LABEL_ROLES:
        if role in paths:
            label_files[paths[role]] = _labels(
                paths[role], role, corpus_ids, query_ids, train_queries, findings, report, files
            )
    if not report.unreadable:
        _sizes(paths, corpus_ids, query_ids, label_files, backend, findings)


def _sizes(
    paths: dict[str, str],
    corpus_ids: set[int] | None,
    query_ids: set[int] | None,
    label_files: dict[str, tuple[int, set[int]]],
    backend: str,
    findings: Findings,
) -> None:
    """Checks the set's sizes against the template's requirements (see the module docstring)."""
    template = limits.EMBEDDING_TEMPLATE
    vertex = backend == limits.EMBEDDING_VERTEX
    severity = None if vertex else INFO
    # What to do: on Vertex, fix the set; locally, nothing (the note says what Vertex would reject).
    hint = (
        None
        if vertex
        else "nothing to do for backend 'local'; with backend 'vertex', Google's template would reject the set"
    )
    rule = "Google's embedding tuning template takes"

    def add(path: str, message: str) -> None:
        findings.add("embedding_set_size", path, None, None, message, hint, severity)

    for ids, role, what, low, high in (
        (query_ids, "queries", "queries", template.min_queries, template.max_queries),
        (corpus_ids, "corpus", "documents", template.min_documents, template.max_documents),
    ):
        if ids is not None and ids and not low <= len(ids) <= high:
            add(paths[role], f"{len(ids):,} {what}; {rule} {low:,} to {high:,}")
    every_query: set[int] = set()
    rows = 0
    for path, (file_rows, queries) in label_files.items():
        rows += file_rows
        every_query |= queries
        if file_rows and len(queries) < template.min_query_ids_per_label_file:
            add(
                path,
                f"{len(queries)} distinct query id(s); {rule} at least "
                f"{template.min_query_ids_per_label_file} in each label file",
            )
    first = next(iter(label_files), "")
    if rows and len(every_query) < template.min_query_ids_in_all_splits:
        add(
            first,
            f"{len(every_query)} distinct query id(s) across the label files; {rule} at least "
            f"{template.min_query_ids_in_all_splits} across all splits",
        )
    if rows > template.max_labels:
        add(first, f"{rows:,} labels in all; {rule} fewer than {template.max_labels + 1:,}")


def _documents(path: str | None, role: str, findings: Findings, report: Report, files: dict) -> set[int] | None:
    """Checks a corpus or queries file; returns the hashes of its ids (None when the file is absent)."""
    if not path:
        return None
    summary: dict = {"path": path, "format": role}
    files[role] = summary
    known = {"_id", "text", "title"} if role == "corpus" else {"_id", "text"}
    ids: set[int] = set()
    rows = valid = 0
    lengths = Histogram()
    try:
        for line, obj in read_jsonl(path, findings):
            rows += 1
            ok = True
            for key in obj:
                if key not in known:
                    findings.add("unknown_field", path, line, str(key), f"unknown field '{key}' (ignored)")
            raw_id = obj.get("_id")
            if raw_id is None:
                findings.add("missing_field", path, line, "_id", "missing '_id'")
                ok = False
            elif type(raw_id) not in (str, int) or (type(raw_id) is str and not raw_id.strip()):
                findings.add(
                    "wrong_type", path, line, "_id", f"expected a non-empty string, found a {json_type(raw_id)}"
                )
                ok = False
            else:
                key = hash(str(raw_id))
                if key in ids:
                    findings.add(
                        "duplicate_id", path, line, "_id", f"_id {str(raw_id)[:60]!r} appears earlier in the file"
                    )
                ids.add(key)
            text = obj.get("text")
            if text is None:
                findings.add("missing_field", path, line, "text", "missing 'text'")
                ok = False
            elif type(text) is not str:
                findings.add("wrong_type", path, line, "text", f"expected a string, found a {json_type(text)}")
                ok = False
            elif not text or text.isspace():
                findings.add("empty_text", path, line, "text", "empty or whitespace-only text")
                ok = False
            else:
                lengths.add((len(text) + 3) // 4)
            title = obj.get("title")
            if title is not None and type(title) is not str:
                findings.add("wrong_type", path, line, "title", f"expected a string, found a {json_type(title)}")
                ok = False
            valid += ok
    except UnreadableFile as exc:
        findings.add("file_unreadable", path, None, None, str(exc))
        report.unreadable = True
        return ids
    if rows == 0 and not any(f.path == path and f.kind in LINE_PROBLEMS for f in findings.kept):
        findings.add("empty_file", path, None, None, "the file has no rows")
    summary.update(rows=rows, valid_rows=valid, bytes=_size(path), input_tokens_estimate=lengths.summary())
    report.distributions[role] = {"input_tokens": lengths.nonzero()}
    return ids


def _labels(
    path: str,
    role: str,
    corpus_ids: set[int] | None,
    query_ids: set[int] | None,
    train_queries: set[int],
    findings: Findings,
    report: Report,
    files: dict,
) -> tuple[int, set[int]]:
    """Checks a label TSV; returns its number of rows and the hashes of the query ids it names."""
    summary: dict = {"path": path, "format": "labels_tsv"}
    files[role] = summary
    rows = valid = 0
    queries: set[int] = set()
    try:
        handle = open_binary(path)
    except UnreadableFile as exc:
        findings.add("file_unreadable", path, None, None, str(exc))
        report.unreadable = True
        return 0, queries
    with handle:
        if is_gzip(handle.peek(2)[:2]):
            report_gzip(path, findings)
            summary.update(rows=0, valid_rows=0, bytes=_size(path))
            return 0, queries
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                findings.add("bom", path, 1, None, "the file starts with a UTF-8 byte-order mark")
                raw = raw[3:]
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                findings.add(
                    "invalid_utf8", path, number, None, f"invalid UTF-8 at byte {exc.start + 1} of the line"
                )
                continue
            if number == 1:
                header = tuple(cell.strip().lower() for cell in text.split("\t"))
                if header != HEADER:
                    findings.add(
                        "missing_header",
                        path,
                        1,
                        None,
                        f"the first line is {text[:60]!r}, not the header 'query-id<TAB>corpus-id<TAB>score'",
                    )
                    if len(header) == 3 and not _is_number(header[2]):
                        continue  # a header with other names: do not check it as a row
                else:
                    continue
            if not text.strip():
                findings.add("blank_line", path, number, None, "blank line")
                continue
            rows += 1
            cells = text.split("\t")
            if len(cells) != 3:
                findings.add(
                    "invalid_tsv_row", path, number, None, f"{len(cells)} tab-separated fields, expected 3"
                )
                continue
            query, document, score = (cell.strip() for cell in cells)
            ok = True
            if not _is_number(score):
                findings.add("invalid_score", path, number, "score", f"score {score[:30]!r} is not a number")
                ok = False
            elif float(score) < 0:
                findings.add("invalid_score", path, number, "score", f"score {score} is negative")
                ok = False
            query_key = hash(query)
            queries.add(query_key)
            if query_ids is not None and query_key not in query_ids:
                findings.add(
                    "unknown_query_id",
                    path,
                    number,
                    "query-id",
                    f"query-id {query[:60]!r} is not in the queries file",
                )
                ok = False
            if corpus_ids is not None and hash(document) not in corpus_ids:
                findings.add(
                    "unknown_corpus_id",
                    path,
                    number,
                    "corpus-id",
                    f"corpus-id {document[:60]!r} is not in the corpus",
                )
                ok = False
            if role == "train_labels":
                train_queries.add(query_key)
            elif query_key in train_queries:
                findings.add(
                    "train_validation_overlap",
                    path,
                    number,
                    "query-id",
                    f"query {query[:60]!r} is also in the training labels",
                )
            valid += ok
    if rows == 0:
        findings.add("empty_file", path, None, None, "the label file has no rows")
    summary.update(rows=rows, valid_rows=valid, bytes=_size(path))
    return rows, queries


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
