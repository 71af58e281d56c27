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
    assert main(["run", "supervised-tuning", "--local", "--config", str(cfg)]) == 2
    assert "set project and location" in capsys.readouterr().err


def test_compile_writes_every_pipeline(tmp_path, capsys):
    assert main(["compile", "--output-dir", str(tmp_path)]) == 0
    assert (tmp_path / "supervised_tuning.yaml").exists()
    assert "compiled" in capsys.readouterr().out


def test_submit_rejects_local_paths(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train_dataset_uri: data/train.jsonl\n")
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
