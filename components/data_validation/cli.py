"""``tunekit validate``: validates dataset files and prints a short summary.

Usage::

    tunekit validate TRAIN [VALIDATION] [--method M] [--format F] [--task T] [--model M] [--strict]
                     [--json] [--report PATH] [--html PATH] [--normalised-dir DIR [--dedupe]]
                     [--project P [--location L]]
    tunekit validate --method embedding --corpus C --queries Q --train-labels T
                     [--test-labels T] [--validation-labels V] [--backend vertex|local] [...]

Exit status: 0 valid, 1 invalid, 2 usage error or unreadable file. The output never carries a traceback: an
unexpected failure is reported in one line and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence

from tunekit.components.common.artifacts import call
from tunekit.components.common.errors import UserError
from tunekit.components.common.state import write_text
from tunekit.components.data_validation import checks, limits

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

#: The JSON report's name when no --report is given: in the current folder (where the user ran the command), or
#: next to the normalised files. Written whole (common.state.write_text), so a symlink there is replaced, not
#: followed, and the file gets the user's umask.
DEFAULT_REPORT = "tunekit-validation.json"
NORMALISED_REPORT = "validation_report.json"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """An argument parser that raises instead of exiting, so :func:`main` returns the status."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tunekit validate``."""
    parser = _Parser(
        prog="tunekit validate",
        description="Validate tuning datasets before any paid step. Exit 0 valid, 1 invalid, 2 usage error.",
    )
    parser.add_argument(
        "files", nargs="*", metavar="FILE", help="the training file, then optionally the validation file"
    )
    parser.add_argument("--validation", metavar="FILE", help="the validation file (instead of a second FILE)")
    parser.add_argument(
        "--method",
        choices=limits.METHODS,
        help="tuning method (default: preference when the first row is preference data, else supervised; "
        "embedding when --corpus is given)",
    )
    parser.add_argument("--format", dest="fmt", choices=checks.ALL_FORMATS, help="the format (default: detect)")
    parser.add_argument(
        "--task", choices=limits.TASKS, help="the task, for task-specific checks and recommendations"
    )
    parser.add_argument("--model", help="base model id; Gemini models get Vertex's limits (default: Gemini)")
    parser.add_argument("--strict", action="store_true", help="warnings fail validation too")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON instead of the summary")
    parser.add_argument(
        "--report",
        metavar="PATH",
        help=f"write the JSON report here (default: {DEFAULT_REPORT} in the current folder, or "
        f"{NORMALISED_REPORT} in --normalised-dir when given)",
    )
    parser.add_argument("--html", metavar="PATH", help="also write the HTML report here")
    parser.add_argument("--normalised-dir", metavar="DIR", help="write the normalised valid rows here")
    parser.add_argument("--dedupe", action="store_true", help="leave exact duplicates out of the normalised files")
    parser.add_argument("--project", help="count tokens exactly with Vertex count-tokens for rows near a limit")
    parser.add_argument("--location", default="us-central1", help="Vertex location for --project")
    embedding = parser.add_argument_group("embedding set (--method embedding)")
    embedding.add_argument("--corpus", metavar="FILE", help="corpus JSON Lines: _id, title, text")
    embedding.add_argument("--queries", metavar="FILE", help="queries JSON Lines: _id, text")
    embedding.add_argument("--train-labels", metavar="FILE", help="TSV: query-id, corpus-id, score")
    embedding.add_argument("--test-labels", metavar="FILE")
    embedding.add_argument("--validation-labels", metavar="FILE")
    embedding.add_argument(
        "--backend",
        choices=limits.EMBEDDING_BACKENDS,
        help="where the set is tuned: vertex (default; Google's template: its size requirements are errors) "
        "or local (sentence-transformers: they are notes)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``tunekit validate`` with ``argv`` (without the program and subcommand names); returns the status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(parser.format_usage().rstrip(), file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    try:
        return _run(args)
    except (_UsageError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the promise is: never a traceback
        print(
            f"error: validation failed unexpectedly ({type(exc).__name__}: {exc}); please report this",
            file=sys.stderr,
        )
        return EXIT_USAGE


def _paths(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    embedding = {
        role: getattr(args, role)
        for role in ("corpus", "queries", "train_labels", "test_labels", "validation_labels")
        if getattr(args, role)
    }
    method = args.method or ("embedding" if embedding else None)
    if method == "embedding":
        if args.files or args.validation:
            raise _UsageError("embedding sets are given with --corpus, --queries, --train-labels (not FILE)")
        if not embedding:
            raise _UsageError("give --corpus, --queries and --train-labels")
        return method, embedding
    if embedding:
        raise _UsageError(f"--corpus/--queries/--*-labels are for --method embedding, not {method}")
    if not args.files:
        raise _UsageError("give the training FILE to validate")
    if len(args.files) > 2 or (len(args.files) == 2 and args.validation):
        raise _UsageError("give at most two files: the training file, then the validation file")
    paths = {"train": args.files[0]}
    validation = args.validation or (args.files[1] if len(args.files) == 2 else None)
    if validation:
        paths["validation"] = validation
    return method or _guess_method(args.files[0]), paths


def _guess_method(path: str) -> str:
    """``preference`` when the first row looks like preference data, else ``supervised``."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(1 << 20)
        obj = json.loads(first.decode("utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        return "supervised"
    if isinstance(obj, dict) and ({"completions", "candidate_0", "candidate_1", "choice"} & set(obj)):
        return "preference"
    return "supervised"


_FILE_ARGS = ("validation", "corpus", "queries", "train_labels", "test_labels", "validation_labels")


def _readable_args(args: argparse.Namespace, stack: contextlib.ExitStack) -> dict[str, str]:
    """Replaces pipes among the file arguments by temporary copies; returns copy -> the path given.

    A pipe is read once, so ``<(cat f)`` and ``/dev/stdin`` are seen whole.
    """
    from tunekit.components.data_validation.reader import UnreadableFile, readable_copy

    given_by_copy: dict[str, str] = {}

    def readable(path: str) -> str:
        try:
            copy = stack.enter_context(readable_copy(path))
        except UnreadableFile as exc:
            raise UserError(f"{path}: {exc}") from None
        if copy != path:
            given_by_copy[copy] = path
        return copy

    args.files = [readable(path) for path in args.files]
    for name in _FILE_ARGS:
        if getattr(args, name):
            setattr(args, name, readable(getattr(args, name)))
    return given_by_copy


def _run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        return _run_readable(args, _readable_args(args, stack))


def _run_readable(args: argparse.Namespace, given_by_copy: dict[str, str]) -> int:
    from tunekit.components.data_validation.validate import restore_paths, validate_dataset

    method, paths = _paths(args)
    if method == "embedding" and args.fmt:
        raise _UsageError("--format is for JSON Lines datasets, not the embedding set")
    if method != "embedding" and args.backend:
        raise _UsageError("--backend is for embedding sets (--method embedding)")
    counter = None
    if args.project:
        from tunekit.components.data_validation.tokens import vertex_token_counter

        counter = vertex_token_counter(args.project, args.location, args.model or limits.TUNABLE_GEMINI[1])
    report = call(validate_dataset, vars(args), paths=paths, method=method, token_counter=counter)
    restore_paths(report, given_by_copy)
    report_path = args.report or (
        os.path.join(args.normalised_dir, NORMALISED_REPORT) if args.normalised_dir else DEFAULT_REPORT
    )
    try:
        report.write_json(report_path)
    except OSError as exc:
        print(
            f"error: cannot write the report to {report_path}: {exc.strerror or exc}; give --report PATH",
            file=sys.stderr,
        )
        report_path = None
    if args.html:
        try:
            write_text(args.html, report.render_html())
        except OSError as exc:
            print(f"error: cannot write the HTML report to {args.html}: {exc.strerror or exc}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        print(report.text_summary(report_path=report_path))
    if report.unreadable:
        return EXIT_USAGE
    return EXIT_VALID if report.ok else EXIT_INVALID


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
