"""Writes the reinforcement-tuning example's data: arithmetic word problems whose answer a reward can check.

Each prompt asks for one line ``Answer: N``; its ``references.answer`` is the gold number. The warm start's
supervised rows are other problems with their answers written that way. Run from the repository root:
``python examples/make_reinforcement_data.py`` (deterministic: the committed files are its output).
"""

from __future__ import annotations

import json
import os
import random

NAMES = ["Mia", "Leo", "Ava", "Sam", "Zoe", "Max", "Ivy", "Ben", "Eli", "Kim"]
THINGS = ["apples", "pens", "cards", "books", "coins", "shells", "stamps", "marbles"]
HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "reinforcement")


def problem(rng: random.Random) -> tuple[str, int]:
    """One problem of one or two additions or subtractions, and its answer."""
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    value = rng.randint(2, 9)
    text = f"{name} has {value} {thing}"
    for _ in range(rng.choice((1, 2))):
        if value >= 3 and rng.random() < 0.5:
            n = rng.randint(1, value - 1)
            text += f", gives away {n}"
            value -= n
        else:
            n = rng.randint(1, 9)
            text += f", finds {n}"
            value += n
    return f"{text}. How many {thing} now? Reply as: Answer: N", value


def main() -> None:
    rng = random.Random(17)
    os.makedirs(HERE, exist_ok=True)
    for name, count in (("train", 64), ("eval", 24)):
        with open(os.path.join(HERE, f"{name}.jsonl"), "w", encoding="utf-8") as handle:
            for _ in range(count):
                text, answer = problem(rng)
                handle.write(json.dumps({"prompt": text, "references": {"answer": str(answer)}}) + "\n")
    with open(os.path.join(HERE, "sft.jsonl"), "w", encoding="utf-8") as handle:
        for _ in range(64):
            text, answer = problem(rng)
            handle.write(json.dumps({"input_text": text, "output_text": f"Answer: {answer}"}) + "\n")


if __name__ == "__main__":
    main()
