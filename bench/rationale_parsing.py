"""Benchmark: the rationale parser on real teacher completions, scored against gold labels.

Reads the layout of the distilling step-by-step data (see ../shared/data/dss/README.md):

- ``<name>/<name>_<split>.json``: JSON Lines, one gold example per line;
- ``<name>/llm/<split>_CoT_<i>.json``: JSON arrays of raw completions, aligned by index with the gold file when
  concatenated in order of ``<i>``.

For each dataset and split it parses every completion with
:func:`tunekit.components.rationale_extraction.parsing.parse_completion` (which never sees the gold label), then
compares the parsed answer with the gold one, and prints the teacher's accuracy and the count of each parse status.
The task type is inferred from the gold fields unless ``--task`` names it.

    python bench/rationale_parsing.py                          # every dataset and split under the default dir
    python bench/rationale_parsing.py --dataset cqa --split test
    python bench/rationale_parsing.py --data-dir DIR --dataset NAME --task classification

Exit status 1 when a split with a reference figure falls below it, 2 when the data directory is missing.
"""

# No `from __future__ import annotations`: the tests load this file by path, without registering it as a module,
# and dataclasses with string annotations look their module up in sys.modules.
import argparse
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tunekit.components.rationale_extraction.parsing import (
    CLASSIFICATION,
    EXTRACTIVE_QA,
    GENERIC,
    MATH,
    MULTIPLE_CHOICE,
    NLI,
    OK,
    PARSE_STATUSES,
    TASK_TYPES,
    answers_agree,
    evaluate_arithmetic,
    parse_completion,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "dss"

#: Teacher accuracy (%) as the reference implementation's own parsers compute it (dss README). e-SNLI's figure is
#: for its test split; only its valid split is here, so it is held to the same figure.
REFERENCE_ACCURACY = {
    ("cqa", "test"): 77.2,
    ("svamp", "test"): 74.0,
    ("esnli", "valid"): 73.0,
    ("esnli", "test"): 73.0,
}

# A classification label set is small; more distinct labels than this means free text.
_MAX_CLASSES = 50
_COT_FILE_RE = re.compile(r"^(?P<split>.+)_CoT_(?P<index>\d+)\.json$")


@dataclass
class SplitResult:
    """The parser's figures on one split."""

    dataset: str
    split: str
    task: str
    examples: int
    correct: int
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Teacher accuracy in percent over every example (an unparsed completion counts as wrong)."""
        return 100.0 * self.correct / self.examples if self.examples else 0.0

    @property
    def reference(self) -> float | None:
        """The reference implementation's figure, where there is one."""
        return REFERENCE_ACCURACY.get((self.dataset, self.split))


def discover(data_dir: Path, dataset: str | None = None, split: str | None = None) -> list[tuple[str, str]]:
    """Lists the ``(dataset, split)`` pairs that have completions, sorted."""
    names = [dataset] if dataset else sorted(p.name for p in data_dir.iterdir() if (p / "llm").is_dir())
    pairs = set()
    for name in names:
        for path in (data_dir / name / "llm").glob("*_CoT_*.json"):
            match = _COT_FILE_RE.match(path.name)
            if match and (split is None or match["split"] == split):
                pairs.add((name, match["split"]))
    return sorted(pairs)


def load_split(data_dir: Path, dataset: str, split: str) -> tuple[list[dict], list]:
    """Reads a split's gold rows and its completions, concatenated in order of the files' index."""
    gold_path = data_dir / dataset / f"{dataset}_{split}.json"
    with gold_path.open(encoding="utf-8") as handle:
        gold = [json.loads(line) for line in handle if line.strip()]
    files = []
    for path in (data_dir / dataset / "llm").glob(f"{split}_CoT_*.json"):
        match = _COT_FILE_RE.match(path.name)
        if match and match["split"] == split:
            files.append((int(match["index"]), path))
    completions: list = []
    for _, path in sorted(files):
        with path.open(encoding="utf-8") as handle:
            completions.extend(json.load(handle))
    return gold, completions


def _is_arithmetic(value: object) -> bool:
    try:
        evaluate_arithmetic(str(value))
    except ValueError:
        return False
    return True


def infer_task(rows: list[dict]) -> str:
    """Infers the task type from the gold fields (see :func:`gold_answer` for the fields each task uses)."""
    first = rows[0] if rows else {}
    if "choices" in first:
        return MULTIPLE_CHOICE
    if "premise" in first and "hypothesis" in first:
        return NLI
    if "context" in first and "question" in first:
        return EXTRACTIVE_QA
    labels = [row.get("label", row.get("answer")) for row in rows]
    if labels and all(isinstance(x, str) for x in labels) and all(_is_arithmetic(x) for x in labels[:50]):
        return MATH
    if labels and len({str(x) for x in labels}) <= _MAX_CLASSES < len(labels):
        return CLASSIFICATION
    return GENERIC


def row_choices(row: dict) -> list[str] | None:
    """A multiple-choice row's options: a list, or Hugging Face's ``{"label": [...], "text": [...]}``."""
    choices = row.get("choices")
    if isinstance(choices, dict):
        choices = choices.get("text")
    return list(choices) if choices else None


def gold_answer(row: dict, task: str) -> object:
    """The gold label of a row: ``answer`` (or ``answerKey``) for multiple choice, else ``label`` or ``answer``."""
    if task == MULTIPLE_CHOICE:
        for key in ("answer", "answerKey", "label"):
            if row.get(key) is not None:
                return row[key]
        return None
    for key in ("label", "answer", "output_text", "target"):
        if row.get(key) is not None:
            return row[key]
    return None


def evaluate_split(data_dir: Path, dataset: str, split: str, task: str | None = None) -> SplitResult:
    """Parses every completion of a split and scores it against gold."""
    start = time.perf_counter()
    gold, completions = load_split(data_dir, dataset, split)
    task = task or infer_task(gold)
    result = SplitResult(dataset, split, task, examples=len(gold), correct=0)
    if len(completions) != len(gold):
        result.warnings.append(
            f"{dataset}/{split}: {len(completions)} completions for {len(gold)} gold rows; "
            "rows without a completion count as empty"
        )
    classes = None
    if task == CLASSIFICATION:
        classes = sorted({str(gold_answer(row, task)) for row in gold})
    for index, row in enumerate(gold):
        completion = completions[index] if index < len(completions) else None
        if completion is not None and not isinstance(completion, str):
            completion = json.dumps(completion)
        choices = row_choices(row) if task == MULTIPLE_CHOICE else classes
        parsed = parse_completion(completion, task, choices, context=row.get("context"))
        result.statuses[parsed.status] += 1
        if parsed.status == OK and answers_agree(task, parsed.answer, gold_answer(row, task), choices):
            result.correct += 1
    result.seconds = time.perf_counter() - start
    return result


def print_table(results: list[SplitResult]) -> None:
    """Prints the results as one table."""
    from rich.console import Console
    from rich.table import Table

    statuses = [s for s in PARSE_STATUSES if any(r.statuses[s] for r in results)] or [OK]
    table = Table(title="Rationale parsing on teacher completions (accuracy against gold)")
    for column in ("dataset", "split", "task", "examples", "accuracy %", "reference %", "meets"):
        justify = "right" if column in ("examples", "accuracy %", "reference %") else "left"
        table.add_column(column, justify=justify, no_wrap=True)
    for status in statuses:
        table.add_column(status, justify="right", no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    for r in results:
        reference = r.reference
        meets = "-" if reference is None else ("yes" if r.accuracy >= reference else "NO")
        table.add_row(
            r.dataset,
            r.split,
            r.task,
            str(r.examples),
            f"{r.accuracy:.1f}",
            "-" if reference is None else f"{reference:.1f}",
            meets,
            *(str(r.statuses[s]) for s in statuses),
            f"{r.seconds:.2f}",
        )
    # A pipe or CI log has no terminal width; the table is wide, so it gets room rather than truncated columns.
    console = Console(width=max(170, Console().width))
    console.print(table)
    for r in results:
        for warning in r.warnings:
            console.print(f"[yellow]warning:[/yellow] {warning}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=f"default {DEFAULT_DATA_DIR}")
    parser.add_argument("--dataset", help="a dataset folder name (default: every folder with an llm/ folder)")
    parser.add_argument("--split", help="a split name (default: every split with completions)")
    parser.add_argument(
        "--task", choices=TASK_TYPES, help="the task type (default: inferred from the gold fields)"
    )
    args = parser.parse_args(argv)

    if not args.data_dir.is_dir():
        print(f"error: data directory {args.data_dir} not found; pass --data-dir", file=sys.stderr)
        return 2
    if args.dataset and not (args.data_dir / args.dataset / "llm").is_dir():
        print(f"error: {args.data_dir / args.dataset / 'llm'} not found", file=sys.stderr)
        return 2
    pairs = discover(args.data_dir, args.dataset, args.split)
    if not pairs:
        print(f"error: no <name>/llm/<split>_CoT_<i>.json files under {args.data_dir}", file=sys.stderr)
        return 2
    results = []
    for dataset, split in pairs:
        if not (args.data_dir / dataset / f"{dataset}_{split}.json").is_file():
            print(f"warning: {dataset}/{split} has completions but no gold file; skipped", file=sys.stderr)
            continue
        results.append(evaluate_split(args.data_dir, dataset, split, args.task))
    print_table(results)
    missed = [r for r in results if r.reference is not None and r.accuracy < r.reference]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
