"""The ``tunekit`` command line: compile, run locally, submit to Vertex AI, validate data.

Errors that are the user's to fix print one line (file, line, field, what to do) and exit with code 2; a failed
run exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from tunekit.components.common.errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: The local registry file of ``tunekit run --local``'s default output folder (serve, rollback, promote).
LOCAL_REGISTRY = os.path.join("runs", "registry.json")


def _console():
    from rich.console import Console

    # Bound to this stdout: a local run puts its own sys.stdout in place while the steps run.
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", help="the pipeline: " + ", ".join(_method_names()))
    parser.add_argument("--config", help="YAML file with the method's config fields")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one config field (repeatable); the value is parsed as YAML",
    )


def _method_names() -> list[str]:
    from tunekit.pipelines.registry import METHODS

    return list(METHODS)


def _load(args):
    import inspect

    from tunekit.pipelines.config import load_config
    from tunekit.pipelines.registry import get_method

    method = get_method(args.method)
    pipeline_func, config_cls = method.load()
    config = load_config(config_cls, args.config, args.overrides)
    # The pipeline's parameters without a default are the ones a run cannot do without.
    signature = inspect.signature(pipeline_func.pipeline_func)
    missing = [
        name
        for name, param in signature.parameters.items()
        if param.default is inspect.Parameter.empty and getattr(config, name, "") in ("", None)
    ]
    if missing:
        raise UserError(
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: set it in the config or with --set",
            path=args.config or "config",
        )
    return method, config


def cmd_compile(args) -> int:
    """Compiles every pipeline into the output folder."""
    from tunekit.pipelines.compile import compile_all

    for path in compile_all(args.output_dir, image=args.image or None, gpu_image=args.gpu_image or None):
        print(f"compiled {path}")
    return EXIT_OK


#: Prefixes of evaluation metrics that name a model, in the order their columns are shown.
MODEL_PREFIXES = ("teacher", "base", "baseline", "champion", "student", "tuned")


def _skip_reason(result) -> str:
    """The data-fingerprint check's reason when it ended the run early ('' when the run went on)."""
    from tunekit.pipelines.retraining import CHECK_TASK

    check = result.task_outputs.get(CHECK_TASK, {}).get("parameterValues", {})
    if check.get("Output") is not False:
        return ""
    try:
        with open(os.path.join(result.run_dir, CHECK_TASK, "reason"), encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return "skipped: data unchanged"


def existing_outputs(result) -> list[tuple[str, str, str]]:
    """``(task, output, path)`` of each output artifact of the run that exists on disk."""
    found = []
    for task in sorted(result.task_outputs):
        for name, artifact_list in result.task_outputs[task].get("artifacts", {}).items():
            for artifact in artifact_list.get("artifacts", []):
                uri = artifact.get("uri", "")
                if uri and os.path.exists(uri):
                    found.append((task, name, uri))
    return found


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 60 else f"{int(value // 60)} min {value % 60:.0f} s"


def _print_steps(console, result) -> None:
    """The steps that ran, their attempts and times."""
    from rich.markup import escape
    from rich.table import Table

    if not result.steps:
        return
    from rich import box

    table = Table(title="Steps", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("step")
    table.add_column("time", justify="right")
    table.add_column("")
    for step in result.steps:
        note = "" if step.succeeded else "failed"
        if step.attempts > 1:
            note = f"{note} after {step.attempts} attempts".strip()
        table.add_row(escape(step.name), _seconds(step.seconds), note)
    console.print(table)


class _RunDisplay:
    """What ``tunekit run --local`` shows as it goes (a ``local_run.RunDisplay``).

    On a terminal: a spinner per running step (its time when it ends) and a bar per progress label; elsewhere: the
    steps' progress lines (every ``TUNEKIT_PROGRESS_EVERY`` percent) and retries. With ``verbose``, every line of
    the runner and the steps instead (ANSI codes removed; the run's log file has them all either way).
    """

    def __init__(self, console, *, verbose: bool = False):
        from tunekit.components.common import progress

        self.console = console
        self.verbose = verbose
        self.live = console.is_terminal and not verbose
        self.bars = progress.make_progress(console.file) if self.live else None
        self.board = progress.Board(self.bars) if self.live else None
        self.running: dict[str, object] = {}

    def step_started(self, name: str) -> None:
        if self.live:
            if not self.board.started:
                self.bars.start()
                self.board.started = True
            self.running[name] = self.bars.add_task(name, total=None)

    def step_retrying(self, name: str, attempt: int, attempts: int, delay_s: float) -> None:
        self._print(f"{name} failed (attempt {attempt} of {attempts}); next attempt in {delay_s:.0f} s")

    def step_finished(self, step) -> None:
        if self.live and step.name in self.running:
            mark = "done" if step.succeeded else "failed"
            description = f"{step.name} ({mark}, {_seconds(step.seconds)})"
            self.bars.update(self.running.pop(step.name), description=description, total=1, completed=1)

    def progress(self, name: str, label: str, done: int, total: int) -> None:
        from tunekit.components.common.progress import format_line

        if self.live:
            self.board.update(name, label, done, total)
        elif not self.verbose:
            self._print(f"{name}: {format_line(label, done, total)}")

    def line(self, name: str, text: str) -> None:
        if self.verbose:
            self._print(text)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()

    def _print(self, text: str) -> None:
        console = self.bars.console if self.live else self.console
        console.print(text, markup=False, highlight=False)


def _print_run(console, method, result, *, verbose: bool = False) -> None:
    # Metric names ("precision[billing]"), reasons ("[ok]") and paths are text, not rich markup.
    from rich.markup import escape
    from rich.table import Table

    for task in sorted(t for t in result.task_outputs if t.startswith("evaluate-")):
        metrics_meta = result.metadata(task)
        if not metrics_meta:
            continue
        columns = [p for p in MODEL_PREFIXES if any(k.startswith(p + "_") for k in metrics_meta)]
        names = sorted({k.split("_", 1)[1] for k in metrics_meta for p in columns if k.startswith(p + "_")})
        table = Table(title=f"Evaluation on held-out rows ({task})")
        table.add_column("metric")
        for column in columns:
            table.add_column(column, justify="right")
        for name in names:
            cells = []
            for column in columns:
                value = metrics_meta.get(f"{column}_{name}")
                cells.append(f"{value:.4f}" if isinstance(value, (int, float)) else "")
            table.add_row(escape(name), *cells)
        console.print(table)
        console.print(f"Gate: {escape(str(metrics_meta.get('gate_reason', '?')))}")
    console.print(f"\nRun folder: {escape(result.run_dir)}")
    if verbose:
        # Only what is there: a step that failed or did not run leaves URIs with nothing behind them.
        for task, name, path in existing_outputs(result):
            console.print(escape(f"  {task}/{name}: {path}"))
    deployed = [t for t in result.task_outputs if t.startswith("deploy-")]
    if deployed:
        registry = next(
            (
                a.get("metadata", {}).get("registry")
                for t in deployed
                for group in result.task_outputs[t].get("artifacts", {}).values()
                for a in group.get("artifacts", [])
                if a.get("metadata", {}).get("registry")
            ),
            "",
        )
        console.print(
            "Deployed: the tuned model is now the champion in the local registry"
            + (f" ({escape(registry)})." if registry else ".")
        )
    elif result.succeeded and _skip_reason(result):
        console.print(f"Not trained: {escape(_skip_reason(result))}; set force: true to train anyway.")
    elif result.succeeded:
        console.print("Not deployed: the gate did not pass.")
    from tunekit.components.reporting.report import publish_local_report

    report = publish_local_report(result.run_dir)
    if report:
        console.print(f"Report: {escape(report)}")


def _print_failure(console, result) -> int:
    """The failed step's one-line error as the last line (standard error): exit 2 for a user error, else 1."""
    from tunekit.pipelines.local_run import strip_ansi

    console.file.flush()
    sys.stdout.flush()
    step = result.failed_step or "a step"
    failed = next((s for s in result.steps if s.name == result.failed_step), None)
    if result.user_error:
        print(f"error: {step}: {strip_ansi(result.user_error)}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    detail = strip_ansi(failed.error) if failed is not None and failed.error else strip_ansi(result.failure)
    attempts = f" after {failed.attempts} attempts" if failed is not None and failed.attempts > 1 else ""
    print(f"error: {step} failed{attempts}: {detail}", file=sys.stderr, flush=True)
    return EXIT_FAILED


def cmd_run(args) -> int:
    """Runs a pipeline with the local KFP runner."""
    if not args.local:
        raise UserError(
            "only local runs are started with 'run': add --local, or use 'tunekit submit' for Vertex AI"
        )
    from tunekit.pipelines.local_run import run_local

    method, config = _load(args)
    console = _console()
    from rich.markup import escape

    verbose = args.verbose or args.debug
    console.print(
        f"Running [bold]{method.name}[/bold] locally; outputs under {escape(os.path.abspath(args.output_dir))}"
    )
    result = run_local(
        method, config, args.output_dir, display=_RunDisplay(console, verbose=verbose), debug=args.debug
    )
    _print_steps(console, result)
    _print_run(console, method, result, verbose=verbose)
    if result.log_path:
        console.print(f"Log: {escape(result.log_path)}" + ("" if verbose else " (--verbose shows it as it runs)"))
    if not result.succeeded:
        return _print_failure(console, result)
    if args.json:
        print(json.dumps({"run_dir": result.run_dir, "tasks": result.task_outputs}, indent=2))
    return EXIT_OK


def _submit_options(args):
    """The ``SubmitOptions`` of the submit and schedule commands' arguments."""
    from tunekit.pipelines.submit import SubmitOptions

    labels = {}
    for item in getattr(args, "label", None) or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"'{item}' is not KEY=VALUE", field="--label")
        labels[key] = value
    return SubmitOptions(
        project=args.project,
        region=args.region,
        pipeline_root=getattr(args, "pipeline_root", "") or "",
        template_path=getattr(args, "template", "") or "",
        image=getattr(args, "image", "") or "",
        display_name=getattr(args, "display_name", "") or "",
        labels=labels or None,
        service_account=getattr(args, "service_account", "") or "",
        network=getattr(args, "network", "") or "",
        encryption_key=getattr(args, "encryption_key", "") or "",
        enable_caching=False if getattr(args, "no_cache", False) else None,
        job_id=getattr(args, "job_id", "") or "",
        api_endpoint=args.api_endpoint or "",
        doctor=not getattr(args, "skip_doctor", True),
    )


def cmd_submit(args) -> int:
    """Submits a pipeline to Vertex AI Pipelines; with ``--wait``, follows it to the end (exit 0 only on success)."""
    from tunekit.pipelines.submit import FINAL_STATES, submit, wait_for_job

    method, config = _load(args)
    job = submit(method, config, _submit_options(args))
    print(f"submitted {job.resource_name}")
    print(f"console: {job._dashboard_uri()}", flush=True)
    if not args.wait:
        return EXIT_OK
    state = wait_for_job(
        job,
        poll_seconds=args.poll_seconds,
        timeout_seconds=args.timeout,
        echo=lambda line: print(line, flush=True),
    )
    return FINAL_STATES.get(state, EXIT_FAILED)


def cmd_schedule(args) -> int:
    """Creates, lists, pauses, resumes or deletes a method's retraining schedule on Vertex AI."""
    from tunekit.pipelines import schedule as sched
    from tunekit.pipelines.registry import get_method

    options = _submit_options(args)
    if args.action == "list":
        method = get_method(args.method) if args.method else None
        found = sched.list_schedules(method, options)
        for item in found:
            info = sched.describe(item)
            print(
                f"{info['name']}  {info['state']}  cron '{info['cron']}'  method {info['method']}  "
                f"next {info['next_run'] or '-'}  runs {info['started_runs']}  {info['resource']}"
            )
        if not found:
            print("no tunekit schedules" + (f" for {method.name}" if method else ""))
        return EXIT_OK
    if not args.method:
        raise UserError(f"'schedule {args.action}' needs the METHOD")
    if args.action == "create":
        if not args.cron:
            raise UserError("'schedule create' needs --cron, e.g. --cron '0 3 * * 1'", field="--cron")
        method, config = _load(args)
        created = sched.create_schedule(
            method,
            config,
            options,
            sched.ScheduleOptions(
                cron=args.cron,
                name=args.name or "",
                max_concurrent_runs=args.max_concurrent_runs,
                max_runs=args.max_runs,
                allow_queueing=args.allow_queueing,
                start_time=args.start_time or "",
                end_time=args.end_time or "",
            ),
            replace=args.replace,
        )
        print(
            f"created {created.resource_name} ({sched.schedule_name(method, args.name or '')}, cron '{args.cron}')"
        )
        return EXIT_OK
    method = get_method(args.method)
    action = {"pause": sched.pause_schedule, "resume": sched.resume_schedule, "delete": sched.delete_schedule}
    result = action[args.action](method, options, args.name or "")
    print(f"{args.action}d {result if isinstance(result, str) else result.resource_name}")
    return EXIT_OK


def cmd_doctor(args) -> int:
    """Checks a Google Cloud project before a real run; exit 2 when a check failed."""
    from tunekit.pipelines import doctor

    method, config = _load(args) if args.method else (None, None)
    options = doctor.DoctorOptions(
        project=args.project,
        region=args.region,
        method=method,
        config=config,
        image=args.image or "",
        template=args.template or "",
        pipeline_root=args.pipeline_root or "",
        service_account=args.service_account or "",
    )
    bad = doctor.failed(doctor.doctor(options, echo=lambda line: print(line, flush=True)))
    if bad:
        print(f"doctor: {len(bad)} check(s) failed: {', '.join(c.name for c in bad)}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_serve(args) -> int:
    """Serves a local model with an OpenAI-compatible HTTP API until interrupted."""
    from tunekit.components.deployment.serve import load_model, make_server, resolve_model

    spec = resolve_model(args.model, registry=args.registry, name=args.name or "")
    model = load_model(spec, device=args.device)
    server = make_server(model, args.host, args.port)
    host, port = server.server_address[:2]
    route = "/v1/embeddings" if spec.kind == "embed" else "/v1/chat/completions"
    print(f"serving {spec.name} ({spec.path}) at http://{host}:{port}/v1 ({route}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return EXIT_OK


def cmd_rollback(args) -> int:
    """Gives the champion alias (and, on Vertex, the endpoint traffic) back to the previous champion."""
    if args.project or args.region:
        if not (args.project and args.region):
            raise UserError("a Vertex rollback needs both --project and --region")
        from tunekit.components.deployment.registry import rollback_vertex

        result = rollback_vertex(args.purpose, project=args.project, location=args.region)
        print(f"champion of '{args.purpose}' is {result['restored']} again (rolled back {result['rolled_back']})")
        if result["endpoint"]:
            print(f"endpoint {result['endpoint']} traffic: {json.dumps(result['traffic_split'])}")
        return EXIT_OK
    from tunekit.components.deployment.local_registry import rollback

    restored, rolled = rollback(args.registry, args.purpose)
    print(
        f"champion of '{args.purpose}' is {restored['id']} ({restored.get('model_dir', '')}) again; "
        f"{rolled['id']} is marked rolled-back"
    )
    return EXIT_OK


def cmd_promote(args) -> int:
    """Gives a Vertex canary champion all of its endpoint's traffic and undeploys the champion it replaced."""
    if not (args.project or args.region):
        print(
            f"nothing to do: local deployments take all traffic (the champion of '{args.purpose}' in "
            f"{args.registry} is already the one served)"
        )
        return EXIT_OK
    if not (args.project and args.region):
        raise UserError("a Vertex promote needs both --project and --region")
    from tunekit.components.deployment.registry import promote_vertex

    result = promote_vertex(args.purpose, project=args.project, location=args.region)
    if not result["changed"]:
        print(f"nothing to do: {result['champion']} already takes all traffic of {result['endpoint']}")
        return EXIT_OK
    undeployed = f"; undeployed {result['undeployed']}" if result["undeployed"] else ""
    print(
        f"champion {result['champion']} of '{args.purpose}' now takes all traffic of {result['endpoint']}{undeployed}"
    )
    print(f"endpoint traffic: {json.dumps(result['traffic_split'])}")
    return EXIT_OK


def cmd_validate(argv: list[str]) -> int:
    """Validates datasets (delegates to the data-validation command)."""
    from tunekit.components.data_validation.cli import main as validate_main

    return validate_main(argv)


def _add_vertex_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--api-endpoint", help="Vertex AI API endpoint (default: the region's)")


def _add_job_args(p: argparse.ArgumentParser, *, required_root: bool = True) -> None:
    p.add_argument(
        "--skip-doctor", action="store_true", help="submit/create without running 'tunekit doctor' first"
    )
    p.add_argument("--pipeline-root", required=required_root, help="gs:// folder for the runs' artifacts")
    p.add_argument(
        "--template",
        help="a compiled spec, or an Artifact Registry template URL "
        "(https://REGION-kfp.pkg.dev/PROJECT/REPO/NAME/TAG); default: compile now",
    )
    p.add_argument("--image", help="component image URI to compile with (without --template)")
    p.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="label of the runs (repeatable)"
    )
    p.add_argument("--service-account", help="service account the runs' steps run as")
    p.add_argument("--network", help="VPC network to peer with: projects/NUMBER/global/networks/NAME")
    p.add_argument("--encryption-key", help="Cloud KMS key name (CMEK) for the runs' resources")
    # No "cache on": it would make Vertex reuse the data checks' cached answers (fingerprint, validation) for
    # data that changed under the same URI; the compiled default already caches every other step.
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="no Vertex step caching at all for the runs (default: as compiled; steps that read data never cache)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``tunekit`` command."""
    parser = argparse.ArgumentParser(prog="tunekit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile every pipeline to compiled/<method>.yaml")
    p.add_argument("--output-dir", default="compiled")
    p.add_argument("--image", help="component image URI to compile with (default: the package version's image)")
    p.add_argument("--gpu-image", help="GPU component image URI")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run a pipeline locally (--local) with the KFP local runner")
    _add_config_args(p)
    p.add_argument("--local", action="store_true", help="run on this machine with the local KFP runner")
    p.add_argument("--output-dir", default="runs", help="where the run's outputs, models and registry go")
    p.add_argument("--json", action="store_true", help="also print the outputs as JSON")
    p.add_argument("--verbose", action="store_true", help="print the local runner's full log as the run goes")
    p.add_argument(
        "--debug", action="store_true", help="like --verbose, and a step's user error shows its traceback"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("submit", help="submit a pipeline to Vertex AI Pipelines")
    _add_config_args(p)
    _add_vertex_args(p)
    _add_job_args(p)
    p.add_argument("--display-name")
    p.add_argument("--job-id", help="the pipeline job's id; submitting an existing id re-attaches to that job")
    p.add_argument(
        "--wait", action="store_true", help="follow the run, printing state changes; exit 1 unless it succeeds"
    )
    p.add_argument("--poll-seconds", type=float, default=30.0, help="seconds between polls with --wait")
    p.add_argument("--timeout", type=float, default=0.0, help="stop waiting after this many seconds (0: never)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("schedule", help="scheduled retraining on Vertex AI (PipelineJobSchedule)")
    p.add_argument("action", choices=["create", "list", "pause", "resume", "delete"])
    p.add_argument("method", nargs="?", default="", help="the pipeline: " + ", ".join(_method_names()))
    p.add_argument("--config", help="create: YAML file with the method's config fields")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    _add_vertex_args(p)
    _add_job_args(p, required_root=False)
    p.add_argument("--name", help="the schedule's display name (default tunekit-METHOD) or resource name")
    p.add_argument("--cron", help="create: cron expression, e.g. '0 3 * * 1' or 'TZ=Europe/Paris 0 3 * * *'")
    p.add_argument("--max-concurrent-runs", type=int, default=1, help="create: runs allowed at once")
    p.add_argument("--max-runs", type=int, default=0, help="create: stop after this many runs (0: no limit)")
    p.add_argument(
        "--allow-queueing", action="store_true", help="create: queue a due run while the maximum are running"
    )
    p.add_argument("--start-time", help="create: RFC 3339 time of the first run (default now)")
    p.add_argument("--end-time", help="create: RFC 3339 time after which no run starts")
    p.add_argument("--replace", action="store_true", help="create: replace a schedule of the same name")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("doctor", help="preflight of a Google Cloud project: one line per check, with the fix")
    p.add_argument("method", nargs="?", default="", help="the pipeline (its config's models, image, template)")
    p.add_argument("--config", help="YAML file with the method's config fields")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE")
    _add_vertex_args(p)
    p.add_argument("--pipeline-root", help="gs:// folder for the runs' artifacts")
    p.add_argument("--template", help="a compiled spec or an Artifact Registry template URL")
    p.add_argument("--image", help="component image URI (default: TUNEKIT_IMAGE)")
    p.add_argument("--service-account", help="service account the runs' steps run as")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("serve", help="serve a local model with an OpenAI-compatible API (/v1/chat/completions)")
    p.add_argument("model", help="a local model directory, or registry:PURPOSE for the local champion")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--registry", default=LOCAL_REGISTRY, help="local registry file")
    p.add_argument("--name", help="the model id the server reports (default: the purpose or folder name)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.set_defaults(func=cmd_serve)

    for name, func, help_text, project_help in (
        (
            "rollback",
            cmd_rollback,
            "make the previous champion of a purpose the champion again",
            "Vertex AI: roll back in this project's Model Registry",
        ),
        (
            "promote",
            cmd_promote,
            "Vertex AI: give a canary champion all of its endpoint's traffic",
            "Vertex AI: promote in this project",
        ),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("purpose")
        p.add_argument("--registry", default=LOCAL_REGISTRY, help="local registry file")
        p.add_argument("--project", help=project_help)
        p.add_argument("--region", help="Vertex AI: the region")
        p.set_defaults(func=func)

    p = sub.add_parser("validate", help="validate datasets (see 'tunekit validate --help')", add_help=False)
    p.set_defaults(func=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tunekit`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "validate":
        try:
            return cmd_validate(argv[1:])
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # credentials, permission and quota errors of the Google clients: one line
        from tunekit.components.common.errors import cloud_user_error

        translated = cloud_user_error(exc, project=getattr(args, "project", None) or "")
        if translated is None:
            raise
        print(f"error: {translated}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
