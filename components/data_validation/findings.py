"""Findings: what the validator reports, their kinds, severities and default advice.

Every finding names the file, line and field concerned, says what is wrong and what to do. Counts are exact for
every kind; only the first :data:`KEEP_PER_KIND` findings of each kind are kept in memory, so a file where every
row is broken still validates in constant memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)

#: Findings of one kind kept with their details; later ones are counted only.
KEEP_PER_KIND = 50

#: kind -> (severity, what to do). The message of each finding says what is wrong in that row.
KINDS: dict[str, tuple[str, str]] = {
    # Files
    "file_unreadable": (ERROR, "check the path and the file's permissions"),
    "empty_file": (ERROR, "the file has no rows; give a JSON Lines file with one example per line"),
    "file_too_large": (ERROR, "split the data or remove rows; Vertex rejects files over the limit"),
    "too_many_examples": (ERROR, "remove rows or sample the dataset down to the limit"),
    "validation_too_large": (ERROR, "sample the validation set down to the limit"),
    "missing_file": (ERROR, "give the file this method requires"),
    # Encoding and JSON Lines structure
    "bom": (ERROR, "re-save the file as UTF-8 without a byte-order mark"),
    "invalid_utf8": (ERROR, "re-save the file as UTF-8"),
    "lone_surrogate": (ERROR, "fix the encoding: a \\uD800-\\uDFFF escape must be half of a surrogate pair"),
    "json_array": (ERROR, "write one JSON object per line (JSON Lines), not one JSON array"),
    "invalid_json": (ERROR, "fix the JSON syntax of this line (one complete object per line)"),
    "not_object": (ERROR, 'each line must be a JSON object such as {"input_text": ...}'),
    "duplicate_key": (ERROR, "keep one value per key: Python keeps the last, other readers the first or fail"),
    "non_finite_number": (ERROR, "write a number, null or a string instead of NaN or Infinity"),
    "compressed_file": (ERROR, "decompress the file and validate the uncompressed one"),
    "blank_line": (WARNING, "remove blank lines; some readers stop or fail at them"),
    # Fields
    "unknown_format": (ERROR, "use one of the documented formats; see docs/validation.md"),
    "mixed_formats": (ERROR, "use one format for every row of a file"),
    "missing_field": (ERROR, "add the field; the format requires it"),
    "wrong_type": (ERROR, "give the field the documented type"),
    "empty_text": (ERROR, "give the text content, or remove the row"),
    "unknown_field": (WARNING, "remove the field or check its spelling; it is ignored"),
    # Conversation shape
    "invalid_role": (ERROR, "use the roles the format documents"),
    "role_order": (ERROR, "turns alternate user and model, starting with user; a system turn only comes first"),
    "last_turn": (ERROR, "end the conversation with the turn the method needs"),
    "file_uri_not_gcs": (ERROR, "copy the file to Cloud Storage and give its gs:// URI"),
    "invalid_file_data": (ERROR, "fileData needs 'mimeType' and 'fileUri'"),
    # Preference
    "invalid_choice": (ERROR, "choice is 0 (candidate_0 preferred) or 1 (candidate_1 preferred)"),
    "identical_candidates": (ERROR, "give two different candidates, or remove the row; it teaches nothing"),
    "invalid_completions": (ERROR, "give two completions, one scored 1 (preferred) and one scored 0"),
    "text_only": (ERROR, "preference data is text only; remove fileData parts"),
    # Limits (token counts are estimates unless an exact counter was used)
    "too_many_tokens": (ERROR, "shorten the example; Vertex rejects examples over the limit"),
    "near_token_limit": (WARNING, "the estimate is close to the limit; count exactly with --project, or shorten"),
    "truncated_input": (WARNING, "the input will be truncated; shorten it or accept the loss"),
    "truncated_output": (WARNING, "the output will be truncated; shorten it or accept the loss"),
    "over_example_limit": (WARNING, "the method's reference setup takes fewer examples; sample down"),
    # Recommendations
    "too_few_examples": (WARNING, "add examples; the SPEC recommends at least the number given"),
    "few_unlabelled": (WARNING, "add unlabelled examples; distillation on unlabelled data wants more than 1,000"),
    "no_validation_set": (INFO, "give a validation set to measure tuning"),
    "unsupported_model": (WARNING, "check the model id; the limits checked are those of the models listed"),
    "unknown_task": (WARNING, "use classification, summarization, extractive_qa, chat or generic"),
    # Quality
    "duplicate": (WARNING, "remove exact duplicates (--dedupe in the component does it)"),
    "conflicting_duplicate": (WARNING, "the same input has different outputs; keep the right one"),
    "train_validation_overlap": (WARNING, "remove validation rows that are also training rows"),
    "instruction_inconsistent": (
        WARNING,
        "give every prompt the same instruction template; prediction-time prompts must match training prompts",
    ),
    "class_not_in_instruction": (WARNING, "the output must be one of the classes the instruction lists"),
    "missing_instruction": (
        WARNING,
        "give every training prompt the instruction (and class list) used at prediction time, e.g. "
        "'Classify the following text into one of the following classes: [a, b] Text: ...'",
    ),
    "rare_class": (WARNING, "add examples of this class, or merge it into another"),
    "too_many_classes": (WARNING, "check the task: a classification output is one of a few classes"),
    "answer_not_in_context": (WARNING, "an extractive-QA answer must be a substring of its context"),
    "missing_context": (WARNING, "give every QA prompt its 'context:' section"),
    "labelled_mix": (INFO, "labelled rows keep their label; unlabelled rows are labelled by the teacher"),
    # Embedding set
    "missing_header": (ERROR, "start the TSV with the header 'query-id<TAB>corpus-id<TAB>score'"),
    "invalid_tsv_row": (ERROR, "each row has three tab-separated fields: query-id, corpus-id, score"),
    "duplicate_id": (ERROR, "give every document and query a unique _id"),
    "unknown_query_id": (ERROR, "every label's query-id must be the _id of a query in the queries file"),
    "unknown_corpus_id": (ERROR, "every label's corpus-id must be the _id of a document in the corpus"),
    "invalid_score": (ERROR, "scores are numbers, zero or more"),
    "embedding_set_size": (
        ERROR,
        "add or remove queries, documents or labels to meet the template's requirements",
    ),
}


@dataclass
class Finding:
    """One problem found in a dataset.

    Attributes:
        severity: ``error`` (fails validation), ``warning`` (fails only when strict) or ``info``.
        kind: A key of :data:`KINDS`.
        path: The file concerned.
        line: The 1-based line, or None for a finding about the whole file.
        field: The field concerned (a JSON path such as ``contents[1].role``), or None.
        message: What is wrong.
        hint: What to do.
    """

    severity: str
    kind: str
    path: str
    line: int | None
    field: str | None
    message: str
    hint: str

    def format(self) -> str:
        """``path:line: field: message (hint)`` with the parts that are known."""
        where = self.path + (f":{self.line}" if self.line else "")
        field = f"{self.field}: " if self.field else ""
        return f"{where}: {self.severity}: {field}{self.message} [{self.kind}] — {self.hint}"

    def to_dict(self) -> dict:
        """The finding as a JSON-ready dict."""
        return asdict(self)


class Findings:
    """Collects findings: exact counts per kind, details of the first :data:`KEEP_PER_KIND` of each.

    Args:
        keep_per_kind: How many findings of each kind to keep with their details.
    """

    def __init__(self, keep_per_kind: int = KEEP_PER_KIND):
        self.keep_per_kind = keep_per_kind
        self.kept: list[Finding] = []
        self.counts: Counter[str] = Counter()
        self.severity_of: dict[str, str] = {}

    def add(
        self,
        kind: str,
        path: str,
        line: int | None,
        field: str | None,
        message: str,
        hint: str | None = None,
        severity: str | None = None,
    ) -> None:
        """Records one finding; the hint and severity default to the kind's."""
        default_severity, default_hint = KINDS[kind]
        self.counts[kind] += 1
        self.severity_of.setdefault(kind, severity or default_severity)
        if self.counts[kind] <= self.keep_per_kind:
            self.kept.append(
                Finding(severity or default_severity, kind, path, line, field, message, hint or default_hint)
            )

    def count(self, severity: str) -> int:
        """How many findings of ``severity`` there are (all of them, kept or not)."""
        return sum(n for kind, n in self.counts.items() if self.severity_of[kind] == severity)
