"""The run report in a real browser: headless Chromium (Debian's package) opens a report from a real local run.

The session fixture drives the real steps on tiny real data (validation of the support-ticket sample, a few LoRA
steps of the tiny T5, the base and tuned models scored on held-out rows, the gate), then runs the
``make_run_report`` component under the KFP local runner on those outputs, leaving the teacher inputs unset (the
optional inputs a supervised run does not have). Chromium then opens the page, and the test checks that nothing is
logged to the console and that the metric table is shown.

Without Chromium the browser tests skip, except under CI (``CI=true``), where they fail: CI installs it (.ci/run).

Regenerate the docs' screenshot from a real demo run (a few minutes; config overrides may follow), or from a
finished local supervised-tuning run's folder::

    .venv/bin/python tests/reporting/test_report_browser.py --docs [train_steps=120 ...]
    .venv/bin/python tests/reporting/test_report_browser.py --docs-from runs/demo/pipeline_root/supervised-tuning-...
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Flags for a browser that talks to nothing but the page it is given.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def require_chromium():
    """Skips the test without Chromium and chromedriver, or fails it under CI, where they must be installed."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(path)]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI must run the browser tests; .ci/run installs Chromium)")
    pytest.skip(message)


@contextmanager
def chromium(width: int = 1280, height: int = 900):
    """A headless Chromium driven through Debian's chromedriver (Selenium Manager never downloads a browser)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="tunekit-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    # Console messages, uncaught exceptions and failed loads, readable with get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, path: str) -> list[dict]:
    """Loads ``path`` and returns what the page logged as errors (console.error, exceptions, failed loads)."""
    driver.get("file://" + os.path.abspath(path))
    # A script that runs after the page's own ones: by then every synchronous error has been logged.
    driver.execute_script("return document.readyState")
    return [entry for entry in driver.get_log("browser") if entry.get("level") in ("SEVERE", "ERROR")]


def screenshot_full_page(driver, path: str) -> None:
    """Writes a PNG of the whole page (the window is grown to the page's height first)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 40, 12000))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    driver.save_screenshot(path)


def report_copy(path: str, target_dir: str) -> str:
    """A copy of an HTML artifact with an ``.html`` name (a KFP artifact file has no extension)."""
    target = os.path.join(target_dir, "report.html")
    shutil.copyfile(path, target)
    return target


# ------------------------------------------------------------------------------------------ a real tiny run


def _tiny_outputs(root: str) -> dict:
    """Runs the real steps on tiny data; returns the paths and metadata a pipeline would pass to the report."""
    import torch

    from tunekit.components.data_validation.steps import run_validation
    from tunekit.components.evaluation.gate import GatePolicy, decide
    from tunekit.components.evaluation.scoring import evaluate_models, load_eval_rows
    from tunekit.components.model_clients.base import GenerationConfig
    from tunekit.components.model_clients.hf import HFLocalClient
    from tunekit.components.tuning.lora import LocalTuningConfig
    from tunekit.components.tuning.supervised.local import tune_local
    from tunekit.components.tuning.tiny import make_tiny_model

    torch.set_num_threads(1)
    data = os.path.join(ROOT, "examples", "data")
    train, validation = os.path.join(root, "train.jsonl"), os.path.join(root, "validation.jsonl")
    for source, target, rows in (
        ("support_tickets_train", train, 40),
        ("support_tickets_validation", validation, 12),
    ):
        with open(os.path.join(data, source + ".jsonl"), encoding="utf-8") as handle:
            lines = handle.readlines()[:rows]
        with open(target, "w", encoding="utf-8") as handle:
            handle.writelines(lines)
    validation_metrics: dict = {}
    run_validation(
        {"train": train, "validation": validation},
        method="supervised",
        task="classification",
        base_model="",
        strict=False,
        report_path=os.path.join(root, "validation_report.json"),
        html_path=os.path.join(root, "validation.html"),
        log_metric=validation_metrics.__setitem__,
        normalised_dir=os.path.join(root, "normalised"),
    )
    base = os.path.join(root, "base")
    make_tiny_model(base, kind="seq2seq")
    tuned = os.path.join(root, "tuned")
    config = LocalTuningConfig(
        max_steps=8, batch_size=8, learning_rate=3e-3, logging_steps=1, eval_steps=4, max_input_length=96,
        max_target_length=8, device="cpu",
    )  # fmt: skip
    tune_local(base, train, validation, tuned, config)
    rows = load_eval_rows(os.path.join(root, "normalised", "validation.jsonl"), limit=8)
    clients = {"base": HFLocalClient(base), "tuned": HFLocalClient(base, adapter_dir=tuned)}
    try:
        scores = evaluate_models(
            rows, clients, task="classification", config=GenerationConfig(max_output_tokens=8)
        )
    finally:
        for client in clients.values():
            getattr(client, "close", lambda: None)()
    decision = decide(**scores.gate_inputs(), policy=GatePolicy(min_improvement=0.1))
    metrics = {f"{m}_{k}": float(v) for m, values in scores.metrics.items() for k, v in values.items()}
    metrics.update(gate_passed=decision.passed, gate_reason=decision.reason)
    confusion = getattr(scores, "classification", {}).get("tuned")
    classification = (
        {
            "confusionMatrix": {
                "annotationSpecs": [{"displayName": label} for label in confusion.labels],
                "rows": [{"row": [float(c) for c in row]} for row in confusion.matrix],
            }
        }
        if confusion is not None
        else {}
    )
    return {
        "validation_report": os.path.join(root, "validation_report.json"),
        "tuned_model": tuned,
        "evaluation_metrics": metrics,
        "classification_metrics": classification,
    }


def run_report_component(
    outputs: dict, output_root: str, run_name: str = "tiny-real-run", parameters: dict | None = None
) -> str:
    """Runs ``make_run_report`` under the KFP local runner on ``outputs``; returns the HTML artifact's path."""
    from kfp import dsl, local

    from tunekit.components.reporting.component import make_run_report

    @dsl.pipeline(name="report-on-real-outputs")
    def report_pipeline():
        validation = dsl.importer(
            artifact_uri=outputs["validation_report"], artifact_class=dsl.Artifact, reimport=False
        )
        tuned = dsl.importer(artifact_uri=outputs["tuned_model"], artifact_class=dsl.Model, reimport=False)
        evaluation = dsl.importer(
            artifact_uri=os.path.join(output_root, "metrics"),
            artifact_class=dsl.Metrics,
            reimport=False,
            metadata=outputs["evaluation_metrics"],
        ).set_display_name("evaluation-metrics")
        kwargs = {}
        if outputs["classification_metrics"]:
            kwargs["classification_metrics"] = dsl.importer(
                artifact_uri=os.path.join(output_root, "classification"),
                artifact_class=dsl.ClassificationMetrics,
                reimport=False,
                metadata=outputs["classification_metrics"],
            ).output
        make_run_report(
            pipeline_name="supervised-tuning",
            pipeline_job_name=run_name,
            parameters=parameters or {"task": "classification", "backend": "local"},
            validation_report=validation.output,
            tuned_model=tuned.output,
            evaluation_metrics=evaluation.output,
            **kwargs,
        )

    pipeline_root = os.path.join(output_root, "pipeline_root")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root, raise_on_error=True)
    report_pipeline()
    [run] = os.listdir(pipeline_root)
    return os.path.join(pipeline_root, run, "make-run-report", "html_report")


@pytest.fixture(scope="session")
def real_report(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("report-run"))
    outputs = _tiny_outputs(root)
    path = run_report_component(outputs, root)
    return {"path": path, "outputs": outputs, "html": open(path, encoding="utf-8").read()}


# ------------------------------------------------------------------------------------------ tests


def test_local_runner_writes_the_report_from_real_outputs(real_report):
    html = real_report["html"]
    metrics = real_report["outputs"]["evaluation_metrics"]
    assert 'id="metric-table"' in html
    assert f"{metrics['tuned_accuracy']:.4f}" in html and f"{metrics['base_accuracy']:.4f}" in html
    assert '<section id="validation">' in html and "VALID" in html
    assert "Loss (tuned)" in html  # the training_log.json curves
    assert 'id="teacher"' not in html  # the optional teacher inputs were not given
    assert metrics["gate_reason"].split(":")[0] in html


def test_report_step_runs_with_no_inputs_at_all(tmp_path):
    from kfp import dsl, local

    from tunekit.components.reporting.component import make_run_report

    @dsl.pipeline(name="report-without-inputs")
    def bare():
        make_run_report(pipeline_name="embedding-tuning", pipeline_job_name="bare")

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=True)
    bare()
    [run] = os.listdir(tmp_path)
    html = open(tmp_path / run / "make-run-report" / "html_report", encoding="utf-8").read()
    assert "This run has no validation report" in html and "no evaluation metrics" in html


def test_chromium_shows_the_metric_table_without_console_errors(real_report, tmp_path):
    require_chromium()
    page = report_copy(real_report["path"], str(tmp_path))
    with chromium() as driver:
        errors = open_page(driver, page)
        assert errors == [], errors
        from selenium.webdriver.common.by import By

        table = driver.find_element(By.ID, "metric-table")
        assert table.is_displayed()
        header = [cell.text for cell in table.find_elements(By.CSS_SELECTOR, "thead th")]
        assert header == ["metric", "base", "tuned"]
        rows = {
            row.find_element(By.TAG_NAME, "th").text: [td.text for td in row.find_elements(By.TAG_NAME, "td")]
            for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
        }
        metrics = real_report["outputs"]["evaluation_metrics"]
        assert rows["accuracy"][0] == f"{metrics['base_accuracy']:.4f}"
        assert rows["accuracy"][1].startswith(f"{metrics['tuned_accuracy']:.4f}")
        # The charts are drawn (inline SVG has a size), and nothing was fetched from anywhere.
        sizes = driver.execute_script(
            "return [...document.querySelectorAll('svg')].map(s => s.getBoundingClientRect().width)"
        )
        assert len(sizes) >= 3 and min(sizes) > 100
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        screenshot_full_page(driver, str(tmp_path / "report.png"))
    with open(tmp_path / "report.png", "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_console_check_catches_errors(tmp_path):
    require_chromium()
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><table id='metric-table'></table>"
        "<script>console.error('deliberate console error'); notAFunction();</script></body></html>"
    )
    with chromium() as driver:
        errors = open_page(driver, str(page))
    messages = " ".join(e["message"] for e in errors)
    assert "deliberate console error" in messages and "notAFunction" in messages


def test_missing_chromium_skips_locally_but_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser tests"):
        require_chromium()


@pytest.mark.slow
def test_a_local_pipeline_run_writes_a_report_chromium_opens(tmp_path):
    require_chromium()
    report = _demo_run(str(tmp_path), quick=True)
    with chromium() as driver:
        assert open_page(driver, report) == []
        from selenium.webdriver.common.by import By

        assert driver.find_element(By.ID, "metric-table").is_displayed()


# ------------------------------------------------------------------------------------------ the docs' screenshot


def _demo_run(output_dir: str, *, quick: bool = False, overrides: tuple[str, ...] = ()) -> str:
    """Runs the supervised demo with the local runner (``quick``: a few steps); returns its report's path."""
    command = [
        os.path.join(os.path.dirname(sys.executable), "tunekit"),
        "run",
        "supervised-tuning",
        "--local",
        "--config",
        os.path.join(ROOT, "examples", "supervised_tuning.yaml"),
        "--output-dir",
        output_dir,
        "--set",
        "purpose=report-demo-" + os.path.basename(output_dir.rstrip("/")),
    ]
    if quick:
        command += ["--set", "train_steps=6", "--set", "max_eval_examples=8"]
    for override in overrides:
        command += ["--set", override]
    subprocess.run(command, check=True, cwd=ROOT)
    from tunekit.components.reporting.report import publish_local_report

    pipeline_root = os.path.join(output_dir, "pipeline_root")
    runs = [os.path.join(pipeline_root, name) for name in os.listdir(pipeline_root)]
    report = publish_local_report(max(runs, key=os.path.getmtime))
    assert report, f"no run report under {pipeline_root}"
    return report


def _outputs_of_run(run_dir: str) -> dict:
    """What a finished local supervised-tuning run gave its report step (to render it again)."""

    def metadata(task: str, artifact: str) -> dict:
        with open(os.path.join(run_dir, task, "executor_output.json"), encoding="utf-8") as handle:
            return json.load(handle)["artifacts"][artifact]["artifacts"][0].get("metadata", {})

    return {
        "validation_report": os.path.join(run_dir, "validate-data", "report"),
        "tuned_model": os.path.join(run_dir, "tune-supervised", "tuned_model"),
        "evaluation_metrics": metadata("evaluate-supervised", "metrics"),
        "classification_metrics": metadata("evaluate-supervised", "confusion_matrix"),
    }


def main(argv: list[str]) -> int:
    """``--docs [FIELD=VALUE ...]``: a real demo run, then a screenshot of its report to docs/images/report.png.

    ``--docs-from RUN_DIR``: renders a finished local supervised-tuning run's report again (after a change to the
    report), with the report step under the local runner, and takes the screenshot of that.
    """
    if len(argv) == 2 and argv[0] == "--docs-from":
        run_dir = os.path.abspath(argv[1])
        with open(os.path.join(run_dir, "validate-data", "report"), encoding="utf-8") as handle:
            validation = json.load(handle)
        output_dir = tempfile.mkdtemp(prefix="tunekit-report-docs-")
        parameters = {"task": validation.get("task"), "backend": "local", "base model": validation.get("model")}
        artifact = run_report_component(
            _outputs_of_run(run_dir), output_dir, os.path.basename(run_dir), parameters
        )
        report = report_copy(artifact, output_dir)
    elif argv and argv[0] == "--docs":
        output_dir = tempfile.mkdtemp(prefix="tunekit-report-docs-")
        report = _demo_run(output_dir, overrides=tuple(argv[1:]))
    else:
        print(__doc__)
        return 2
    target = os.path.join(ROOT, "docs", "images", "report.png")
    with chromium() as driver:
        errors = open_page(driver, report)
        if errors:
            print(json.dumps(errors, indent=2))
            return 1
        screenshot_full_page(driver, target)
    print(f"wrote {target} from {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
