"""Recommended settings per task, from the SPEC's table of recommendations (SFT columns)."""

from __future__ import annotations

TASKS = ("classification", "summarization", "extractive_qa", "chat", "generic")

#: Recommended number of examples and train steps for supervised tuning: (min examples, (min steps, max steps)).
SFT_RECOMMENDATIONS: dict[str, tuple[int, tuple[int, int]]] = {
    "classification": (100, (100, 500)),
    "summarization": (100, (200, 1000)),
    "extractive_qa": (100, (100, 500)),
    "chat": (200, (1000, 1000)),
    "generic": (100, (100, 500)),
}


def check_task(task: str) -> str:
    """Returns ``task`` if known.

    Raises:
        ValueError: The task is not one of :data:`TASKS`.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; use one of {', '.join(TASKS)}")
    return task


def default_train_steps(task: str) -> int:
    """The middle of the SPEC's recommended step range for ``task``, used when the user sets none."""
    low, high = SFT_RECOMMENDATIONS[check_task(task)][1]
    return (low + high) // 2
