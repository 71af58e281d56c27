"""Progress: a plain line every N percent off a terminal, rich bars on one, lines read back by the CLI."""

from __future__ import annotations

import io

import pytest

from tunekit.components.common import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_every_ten_percent_and_at_the_end(monkeypatch):
    monkeypatch.delenv(progress.MODE_ENV, raising=False)
    monkeypatch.delenv(progress.EVERY_ENV, raising=False)
    out = io.StringIO()
    for step in range(1, 121):
        progress.report("training steps", step, 120, stream=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "progress: training steps 12/120 (10%)"
    assert lines[-1] == "progress: training steps 120/120 (100%)"
    assert [progress.parse_line(line) for line in lines[-1:]] == [("training steps", 120, 120)]
    assert "\x1b" not in out.getvalue()


def test_every_and_a_new_loop_with_the_same_label(monkeypatch):
    monkeypatch.setenv(progress.EVERY_ENV, "50")
    out = io.StringIO()
    for _ in range(2):  # two models scored one after the other
        for row in range(1, 11):
            progress.report("evaluation rows", row, 10, stream=out)
    assert (
        out.getvalue().splitlines()
        == ["progress: evaluation rows 5/10 (50%)", "progress: evaluation rows 10/10 (100%)"] * 2
    )


def test_off_and_nothing_for_an_empty_loop(monkeypatch):
    out = io.StringIO()
    progress.report("rows", 0, 0, stream=out)
    monkeypatch.setenv(progress.MODE_ENV, "off")
    progress.report("rows", 5, 5, stream=out)
    assert out.getvalue() == ""


def test_a_terminal_gets_a_rich_bar(monkeypatch):
    monkeypatch.delenv(progress.MODE_ENV, raising=False)
    out = _Tty()
    for row in range(1, 51):
        progress.report("teacher calls", row, 50, stream=out)
    text = out.getvalue()
    assert "teacher calls" in text and "50/50" in text
    assert "progress: " not in text  # a bar, not lines


def test_parse_line_ignores_other_lines():
    assert progress.parse_line("progress: calls to gemini-2.5-flash 3/40 (7%)") == (
        "calls to gemini-2.5-flash",
        3,
        40,
    )
    assert progress.parse_line("INFO progress was made") is None


@pytest.mark.parametrize("value", ["0", "-5", "x", "500"])
def test_a_bad_every_falls_back_to_ten(monkeypatch, value):
    monkeypatch.setenv(progress.EVERY_ENV, value)
    out = io.StringIO()
    for row in range(1, 11):
        progress.report("rows", row, 10, stream=out)
    assert len(out.getvalue().splitlines()) == 10


def test_board_draws_bars_for_lines_of_other_processes():
    out = _Tty()
    board = progress.Board(progress.make_progress(out))
    board.update("tune-supervised", "training steps", 3, 12)
    board.update("tune-supervised", "training steps", 12, 12)
    board.close()
    assert "tune-supervised: training steps" in out.getvalue() and "12/12" in out.getvalue()


def test_evaluation_rows_are_reported_per_model(capsys, monkeypatch):
    from tunekit.components.evaluation.scoring import EvalRow, evaluate_models
    from tunekit.components.model_clients.base import FakeClient, Prompt

    monkeypatch.setenv(progress.MODE_ENV, "lines")
    rows = [EvalRow(prompt=Prompt(f"q{i}"), reference=f"q{i}", line=i + 1) for i in range(100)]
    report = evaluate_models(
        rows, {"base": FakeClient(lambda p: p.text), "tuned": FakeClient(lambda p: p.text)}, task="generic"
    )
    assert set(report.metrics) == {"base", "tuned"}
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("progress: ")]
    # 100 rows in parts of 32 (the smallest part, for engine concurrency): 4 lines per model.
    assert lines[-1] == "progress: evaluation rows (tuned) 100/100 (100%)"
    assert [progress.parse_line(line)[0] for line in lines].count("evaluation rows (base)") == 4


def test_the_local_trainers_step_callback_reports_training_steps(capsys, monkeypatch):
    pytest.importorskip("transformers")
    from transformers import TrainerControl, TrainerState

    from tunekit.components.tuning import trainers

    monkeypatch.setenv(progress.MODE_ENV, "lines")
    callback, seen = trainers.step_callback(lambda *step: seen.append(step)), []
    for step in range(1, 6):
        state, control = TrainerState(global_step=step, max_steps=5), TrainerControl(should_log=step == 2)
        callback.on_step_end(None, state, control)
        if control.should_log:  # a step that logs is reported with its loss, once it is logged
            callback.on_log(None, state, control, logs={"loss": float(step)})
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("progress: ")]
    assert lines == [f"progress: training steps {n}/5 ({n * 20}%)" for n in range(1, 6)]
    assert [loss for _, _, loss in seen][1:] == [2.0, 2.0, 2.0, 5.0] and seen[0][:2] == (1, 5)
