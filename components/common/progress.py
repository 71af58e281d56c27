"""Progress of long loops (training steps, teacher calls, evaluation rows), one call per step of the loop.

A loop calls :func:`report` with how far it is (``report("training steps", step, total)``); a trainer's callback
can call it the same way (Hugging Face's ``TrainerCallback.on_step_end`` has ``state.global_step`` and
``state.max_steps``). What the user sees depends on where the output goes:

- on a terminal, a rich progress bar per label;
- elsewhere (a log file, Vertex AI's logs, the pipe a KFP step's output goes through), a plain line every
  ``TUNEKIT_PROGRESS_EVERY`` percent (10 by default), at the end, and at least every
  :data:`MAX_SILENCE_S` seconds: ``progress: training steps 30/120 (25%)``; readable as it is, and read back by
  :func:`parse_line`.

A step run by the local KFP runner writes into a pipe (the runner prints the step's output line by line:
kfp/local/subprocess_task_handler.py ``run_local_subprocess``), so it writes lines, and ``tunekit run --local``
turns them back into bars on the user's terminal with :class:`Board`. ``TUNEKIT_PROGRESS`` forces a mode:
``bar``, ``lines`` or ``off``.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO, TypeVar

T = TypeVar("T")

#: The start of a progress line.
PREFIX = "progress: "
#: ``bar``, ``lines`` or ``off``; unset: a bar on a terminal, lines elsewhere.
MODE_ENV = "TUNEKIT_PROGRESS"
#: Percent between two progress lines.
EVERY_ENV = "TUNEKIT_PROGRESS_EVERY"
DEFAULT_EVERY = 10
#: The longest a running loop stays silent in lines mode, in seconds.
MAX_SILENCE_S = 60.0

_LINE = re.compile(r"^progress: (?P<label>.+) (?P<done>\d+)/(?P<total>\d+) \(\d+%\)$")


def format_line(label: str, done: int, total: int) -> str:
    """The plain progress line: ``progress: LABEL DONE/TOTAL (PERCENT%)``."""
    percent = math.floor(100 * done / total) if total > 0 else 100
    return f"{PREFIX}{' '.join(label.split())} {done}/{total} ({percent}%)"


def parse_line(line: str) -> tuple[str, int, int] | None:
    """``(label, done, total)`` of a progress line, or None for any other line."""
    found = _LINE.match(line.strip())
    if found is None:
        return None
    return found["label"], int(found["done"]), int(found["total"])


@dataclass
class _State:
    done: int = 0
    bucket: int = 0
    last_line: float = 0.0
    bar: Any = None


class _Reporter:
    """The process's progress: one state per label, a rich bar display when it shows bars."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.states: dict[str, _State] = {}
        self.progress: Any = None

    def mode(self, stream: TextIO) -> str:
        forced = os.environ.get(MODE_ENV, "").strip().lower()
        if forced in ("bar", "lines", "off"):
            return forced
        return "bar" if _isatty(stream) else "lines"

    def report(self, label: str, done: int, total: int, stream: TextIO | None = None) -> None:
        stream = stream or sys.stderr
        mode = self.mode(stream)
        if mode == "off" or total <= 0:
            return
        done = max(0, min(int(done), int(total)))
        with self.lock:
            state = self.states.get(label)
            if state is None or done < state.done:
                if state is not None and state.bar is not None:
                    self._end_bar(state)
                state = self.states[label] = _State(last_line=time.monotonic())
            state.done = done
            if mode == "bar":
                self._bar(label, state, done, total, stream)
            else:
                self._line(label, state, done, total, stream)
            if done >= total:
                if state.bar is not None:
                    self._end_bar(state)
                del self.states[label]

    def _line(self, label: str, state: _State, done: int, total: int, stream: TextIO) -> None:
        bucket = math.floor(100 * done / total / _every())
        now = time.monotonic()
        if bucket > state.bucket or done >= total or now - state.last_line >= MAX_SILENCE_S:
            if done == 0:
                return  # nothing done yet: no line
            state.bucket = max(state.bucket, bucket)
            state.last_line = now
            print(format_line(label, done, total), file=stream, flush=True)

    def _bar(self, label: str, state: _State, done: int, total: int, stream: TextIO) -> None:
        if self.progress is None:
            self.progress = make_progress(stream)
            self.progress.start()
        if state.bar is None:
            state.bar = self.progress.add_task(label, total=total)
        self.progress.update(state.bar, completed=done, total=total)

    def _end_bar(self, state: _State) -> None:
        self.progress.update(state.bar, visible=True)
        state.bar = None
        if all(s.bar is None for s in self.states.values() if s is not state):
            self.progress.stop()
            self.progress = None


_REPORTER = _Reporter()


def report(label: str, done: int, total: int, *, stream: TextIO | None = None) -> None:
    """Says that ``done`` of ``total`` units of ``label`` are done (the one call a loop or a callback makes).

    Args:
        label: What is counted (``training steps``, ``teacher calls``, ``evaluation rows (tuned)``).
        done: Units done so far; a smaller number than the last one starts the label over.
        total: Units in all; 0 or less reports nothing.
        stream: Where it goes (default standard error).
    """
    _REPORTER.report(label, done, total, stream)


def track(items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
    """Yields ``items``, reporting after each one (``total``: ``len(items)`` when not given)."""
    if total is None:
        total = len(items)  # type: ignore[arg-type]
    for index, item in enumerate(items, 1):
        yield item
        report(label, index, total)


def make_progress(stream: TextIO | None = None):
    """A rich progress display (label, bar, count, elapsed and remaining time) writing to ``stream``."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=stream or sys.stderr)
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        # The CLI puts its own sys.stdout in place during a local run (tunekit.pipelines.local_run): leave it.
        redirect_stdout=False,
        redirect_stderr=False,
    )


class Board:
    """Bars for progress lines read from other processes (``tunekit run --local`` reading its steps' output).

    Args:
        progress: A rich ``Progress`` (see :func:`make_progress`), started and stopped by the board.
    """

    def __init__(self, progress: Any):
        self.progress = progress
        self.tasks: dict[tuple[str, str], Any] = {}
        self.started = False

    def update(self, source: str, label: str, done: int, total: int) -> None:
        """Moves the bar of ``label`` from ``source`` (a step's name) to ``done`` of ``total``."""
        if not self.started:
            self.progress.start()
            self.started = True
        key = (source, label)
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{source}: {label}", total=total)
        self.progress.update(self.tasks[key], completed=done, total=total)

    def close(self) -> None:
        """Stops the display (the bars stay on the screen as they were last drawn)."""
        if self.started:
            self.progress.stop()
            self.started = False


def _every() -> float:
    try:
        value = float(os.environ.get(EVERY_ENV, DEFAULT_EVERY))
    except ValueError:
        return DEFAULT_EVERY
    return value if 0 < value <= 100 else DEFAULT_EVERY


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
