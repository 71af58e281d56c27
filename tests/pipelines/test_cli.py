import os
import subprocess
import sys

import pytest

from tunekit.pipelines.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tunekit.pipelines.cli", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["run", "supervised-tuning", "--local", "--config", "{tmp}/missing.yaml"], "config file not found"),
        (
            "train_dataset_uri: x.jsonl\nbogus: 1\n",
            ["run", "supervised-tuning", "--local", "--config", "{cfg}"],
            "unknown field",
        ),
        (
            "task: classification\n",
            ["run", "supervised-tuning", "--local", "--config", "{cfg}"],
            "train_dataset_uri is required",
        ),
        ("train_dataset_uri: x.jsonl\n", ["run", "magic", "--local", "--config", "{cfg}"], "unknown method"),
        ("train_dataset_uri: x.jsonl\n", ["run", "supervised-tuning", "--config", "{cfg}"], "add --local"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(tmp_path, setup, args, message):
    cfg = tmp_path / "c.yaml"
    if setup:
        cfg.write_text(setup)
    args = [a.format(tmp=tmp_path, cfg=cfg) for a in args]
    result = run_cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_local_run_with_vertex_backend_needs_a_project(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train_dataset_uri: x.jsonl\nbackend: vertex\n")
    # The data exists (load_config checks that): the project is what is missing.
    (tmp_path / "x.jsonl").write_text("")
    assert main(["run", "supervised-tuning", "--local", "--config", str(cfg)]) == 2
    assert "set project and location" in capsys.readouterr().err


def test_compile_writes_every_pipeline(tmp_path, capsys):
    assert main(["compile", "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "supervised_tuning.yaml").exists()
    assert "compiled" in capsys.readouterr().out


def test_submit_rejects_local_paths(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train_dataset_uri: data/train.jsonl\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("")  # it exists here (load_config checks that), not on Vertex
    code = main(
        [
            "submit",
            "supervised-tuning",
            "--config",
            str(cfg),
            "--project",
            "p",
            "--region",
            "us-central1",
            "--pipeline-root",
            "gs://b/root",
        ]
    )
    assert code == 2
    assert "upload it and give the gs:// URI" in capsys.readouterr().err


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("compile", "run", "submit", "validate"):
        assert command in result.stdout


def test_run_summary_prints_bracketed_metric_names_and_reasons_verbatim(tmp_path):
    # Per-class metrics are named like "precision[billing]" and gate reasons carry "[ok]": text, not rich markup.
    from rich.console import Console

    from tunekit.pipelines.cli import _print_run
    from tunekit.pipelines.local_run import LocalRunResult

    metadata = {
        "base_accuracy": 0.0,
        "tuned_accuracy": 0.9,
        "tuned_precision[billing]": 0.75,
        "tuned_precision[outage]": 1.0,
        "gate_reason": "deploy: change +0.9 [ok]; no champion deployed for this purpose yet",
    }
    result = LocalRunResult(
        run_dir=str(tmp_path / "run[1]"),
        succeeded=True,
        task_outputs={"evaluate-supervised": {"artifacts": {"metrics": {"artifacts": [{"metadata": metadata}]}}}},
    )
    console = Console(record=True, width=200)
    _print_run(console, None, result)
    text = console.export_text()
    assert "precision[billing]" in text and "precision[outage]" in text
    assert "0.7500" in text and "1.0000" in text
    assert "change +0.9 [ok]; no champion" in text
    assert "run[1]" in text


# --- a step's user error fails once, and is the CLI's last line ------------------------------------------------

import dataclasses  # noqa: E402
import types  # noqa: E402

from kfp import dsl  # noqa: E402

from tunekit.components.common.image import IMAGE  # noqa: E402
from tunekit.pipelines.graphs import retried  # noqa: E402


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def counted_step(counter: str, kind: str, out: dsl.Output[dsl.Artifact]):
    """Appends a line to ``counter`` per attempt, then fails as ``kind`` says (a user error, or a crash)."""
    from tunekit.components.common.artifacts import call
    from tunekit.components.common.errors import UserError

    def step(counter: str, kind: str, path: str) -> None:
        with open(counter, "a", encoding="utf-8") as handle:
            handle.write("attempt\n")
        if kind == "user":
            raise UserError("unknown task 'clasification'; use classification or generic", field="task")
        if kind == "crash":
            raise RuntimeError("the disk went away")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("ok")

    call(step, locals(), path=out.path)


@dsl.pipeline(name="counted-run")
def counted_pipeline(counter: str, kind: str = "user"):
    # The pipelines' own retry policy, back-off shortened so the crash case stays quick; a display name, as the
    # pipelines set, makes the runner warn that it has no local effect.
    retried(counted_step(counter=counter, kind=kind), retries=2, backoff="0s").set_display_name("counted")


@dataclasses.dataclass
class CountedConfig:
    counter: str = ""
    kind: str = "user"


COUNTED = types.SimpleNamespace(name="counted-run", load=lambda: (counted_pipeline, CountedConfig))


def _attempts(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_user_error_inside_a_step_is_not_retried(tmp_path):
    from tunekit.components.common.artifacts import RECORD_NAME
    from tunekit.pipelines.local_run import run_local

    counter = tmp_path / "attempts.txt"
    result = run_local(COUNTED, CountedConfig(counter=str(counter)), str(tmp_path / "out"))
    assert not result.succeeded
    assert _attempts(counter) == 1  # before: 3 (the retry policy's 2 retries, with back-off)
    assert result.failed_step == "counted-step" and result.steps[0].attempts == 1
    assert result.user_error == "field 'task': unknown task 'clasification'; use classification or generic"
    assert os.path.exists(os.path.join(result.run_dir, "counted-step", RECORD_NAME))
    log = open(result.log_path, encoding="utf-8").read()
    assert "Traceback" not in log and "\x1b" not in log


def test_a_crash_inside_a_step_is_still_retried(tmp_path):
    from tunekit.pipelines.local_run import run_local

    counter = tmp_path / "attempts.txt"
    result = run_local(COUNTED, CountedConfig(counter=str(counter), kind="crash"), str(tmp_path / "out"))
    assert not result.succeeded and _attempts(counter) == 3 and result.steps[0].attempts == 3
    assert result.user_error == "" and result.steps[0].error == "RuntimeError: the disk went away"


def _run_counted(monkeypatch, capsys, tmp_path, *extra, kind="user"):
    from tunekit.pipelines import cli

    counter = tmp_path / "attempts.txt"
    monkeypatch.setattr(cli, "_load", lambda args: (COUNTED, CountedConfig(counter=str(counter), kind=kind)))
    code = main(["run", "supervised-tuning", "--local", "--output-dir", str(tmp_path / "out"), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err, _attempts(counter)


def test_cli_prints_the_steps_one_line_error_last_without_tracebacks(monkeypatch, capsys, tmp_path):
    code, out, err, attempts = _run_counted(monkeypatch, capsys, tmp_path)
    assert code == 2 and attempts == 1
    assert err.strip().splitlines()[-1] == (
        "error: counted-step: field 'task': unknown task 'clasification'; use classification or generic"
    )
    assert "Traceback" not in out + err and "\x1b" not in out + err
    assert "counted-step" in out and "failed" in out  # the steps table
    # The short summary: no KFP log lines (they are in the log file, and behind --verbose).
    assert "Executing task" not in out and "Log: " in out


def test_cli_verbose_shows_the_runner_log_and_debug_the_traceback(monkeypatch, capsys, tmp_path):
    code, out, err, _ = _run_counted(monkeypatch, capsys, tmp_path / "v", "--verbose")
    assert code == 2 and "Executing task" in out and "Traceback" not in out
    assert err.strip().splitlines()[-1].startswith("error: counted-step: field 'task'")
    code, out, err, attempts = _run_counted(monkeypatch, capsys, tmp_path / "d", "--debug")
    assert code == 2 and attempts == 1 and "Traceback" in out and "\x1b" not in out + err
    assert err.strip().splitlines()[-1].startswith("error: counted-step: field 'task'")


def test_cli_last_line_for_a_crash_names_the_step_and_its_attempts(monkeypatch, capsys, tmp_path):
    code, out, err, attempts = _run_counted(monkeypatch, capsys, tmp_path, kind="crash")
    assert code == 1 and attempts == 3
    assert (
        err.strip().splitlines()[-1]
        == "error: counted-step failed after 3 attempts: RuntimeError: the disk went away"
    )
    assert "Traceback" not in out + err


def test_piped_cli_output_ends_with_the_error_and_has_no_ansi_codes(tmp_path):
    # A real process with its output in pipes (not a terminal), as when a user redirects it to a file.
    here = os.path.dirname(os.path.abspath(__file__))
    counter = tmp_path / "attempts.txt"
    script = "\n".join(
        [
            "import sys",
            f"sys.path[:0] = [{here!r}, {os.path.join(os.path.dirname(here), 'fakes')!r}]",
            "import test_cli",
            "from tunekit.pipelines import cli",
            f"cli._load = lambda args: (test_cli.COUNTED, test_cli.CountedConfig(counter={str(counter)!r}))",
            f"sys.exit(cli.main(['run', 'counted-run', '--local', '--output-dir', {str(tmp_path / 'out')!r}]))",
        ]
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    # Nothing else on standard error: the runner's warnings and log lines are in the run's log.
    assert result.stderr.splitlines() == [
        "error: counted-step: field 'task': unknown task 'clasification'; use classification or generic"
    ]
    assert "\x1b" not in result.stdout + result.stderr and "Traceback" not in result.stdout
    assert _attempts(counter) == 1


def test_the_run_lists_only_outputs_that_exist(tmp_path):
    from rich.console import Console

    from tunekit.pipelines.cli import _print_run
    from tunekit.pipelines.local_run import LocalRunResult

    (tmp_path / "validate-data").mkdir()
    (tmp_path / "validate-data" / "report").write_text("{}")
    artifacts = {
        "report": {"artifacts": [{"uri": str(tmp_path / "validate-data" / "report")}]},
        "normalised": {"artifacts": [{"uri": str(tmp_path / "validate-data" / "normalised")}]},  # never written
    }
    result = LocalRunResult(
        run_dir=str(tmp_path), succeeded=True, task_outputs={"validate-data": {"artifacts": artifacts}}
    )
    console = Console(record=True, width=300)
    _print_run(console, None, result, verbose=True)
    text = console.export_text()
    assert "validate-data/report: " in text and "normalised" not in text
    console = Console(record=True, width=300)
    _print_run(console, None, result)  # the short summary lists none
    assert "validate-data/report" not in console.export_text()


def test_building_the_demo_model_prints_no_progress_bar(tmp_path, capfd):
    from tunekit.pipelines.local_run import resolve_base_model

    path = resolve_base_model("tiny-random:t5", str(tmp_path))
    assert os.path.exists(os.path.join(path, "config.json"))
    captured = capfd.readouterr()
    assert "Writing model shards" not in captured.err + captured.out
