"""Benchmark of reinforcement tuning: does GRPO on an exact-answer reward raise held-out exact match above SFT?

The task, written here: one-step arithmetic word problems ("Ava has 3 pens, finds 5. Answer:"), the reply
" 8". The model is a tiny Llama-style causal model with a byte tokenizer, built from a config and trained from
scratch on CPU by the project's own trainers (:mod:`tunekit.components.tuning.reinforcement.local`):

1. ``sft``: a supervised warm start on solved problems (TRL ``SFTTrainer``), deliberately short so that the
   policy is right on some problems, not all;
2. ``sft+grpo``: GRPO (TRL ``GRPOTrainer``) from that warm start on other problems, with the reward file's
   rewards: the exact answer (the task) and a small format reward, both run as the pipeline runs them
   (:mod:`tunekit.components.tuning.rewards`).

Exact match is measured on held-out problems (greedy decoding, answers parsed by the same rule as the reward),
for both models of each seed; the table prints each seed, the mean and standard deviation, the mean gain of
GRPO over SFT alone and how many seeds gained, and the wall and CPU time. Run:
``python bench/reinforcement.py`` (3 seeds, about 15 minutes of 2 CPU cores); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

NAMES = ["Mia", "Leo", "Ava", "Sam", "Zoe", "Max", "Ivy", "Ben", "Eli", "Kim"]
THINGS = ["pens", "cards", "books", "coins"]

REWARDS = """
parse: {regex: "(-?[0-9]+)"}
rewards:
  - name: exact_answer
    exact_match: {reference: answer}
    weight: 4
  - name: one_number
    format: {pattern: " ?-?[0-9]+"}
    parse: none
"""


def problem(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    if rng.random() < 0.5:
        return f"{rng.choice(NAMES)} has {a} {rng.choice(THINGS)}, finds {b}. Answer:", str(a + b)
    a, b = max(a, b), min(a, b)
    return f"{rng.choice(NAMES)} has {a} {rng.choice(THINGS)}, loses {b}. Answer:", str(a - b)


def rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        text, answer = problem(rng)
        out.append({"contents": [{"role": "user", "parts": [{"text": text}]}], "references": {"answer": answer}})
    return out


def exact_match(model_dir: str, eval_rows: list[dict], rewards) -> float:
    from tunekit.components.evaluation.reinforcement.steps import row_prompt
    from tunekit.components.model_clients.base import GenerationConfig
    from tunekit.components.model_clients.hf import HFLocalClient

    client = HFLocalClient(model_dir, batch_size=32)
    answers = client.generate(
        [row_prompt(r) for r in eval_rows], GenerationConfig(max_output_tokens=4, temperature=0.0)
    )
    score = rewards.scorers()[0]
    return sum(score(r, g.text) >= 1.0 for r, g in zip(eval_rows, answers, strict=True)) / len(eval_rows)


def run_seed(seed: int, args, work: str) -> dict:
    import torch

    from tunekit.components.tuning.reinforcement.local import ReinforcementLocalConfig, train_grpo, train_sft
    from tunekit.components.tuning.rewards import parse_rewards
    from tunekit.components.tuning.tiny import make_tiny_model

    torch.manual_seed(seed)
    rewards = parse_rewards(REWARDS, source="bench/reinforcement.py")
    base = make_tiny_model(
        os.path.join(work, f"base-{seed}"),
        kind="causal",
        seed=seed,
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
    )
    sft_rows = []
    for row in rows(args.sft_rows, 1000 + seed):
        sft_rows.append(
            {"prompt": row["contents"][0]["parts"][0]["text"], "completion": " " + row["references"]["answer"]}
        )
    rl_rows = rows(args.rl_rows, 2000 + seed)
    eval_rows = rows(args.eval_rows, 3000 + seed)
    config = ReinforcementLocalConfig(
        sft_steps=args.sft_steps,
        rl_steps=args.rl_steps,
        sft_learning_rate=args.sft_lr,
        rl_learning_rate=args.rl_lr,
        batch_size=args.batch_size,
        num_generations=args.generations,
        max_new_tokens=4,
        temperature=1.0,
        seed=seed,
        threads=args.threads,
    )
    started = time.time()
    sft_dir = os.path.join(work, f"sft-{seed}")
    train_sft(base, sft_rows, sft_dir, config)
    sft_time = time.time() - started
    sft_em = exact_match(sft_dir, eval_rows, rewards)
    started = time.time()
    grpo_dir = os.path.join(work, f"grpo-{seed}")
    log = train_grpo(sft_dir, rl_rows, rewards, grpo_dir, config)
    grpo_time = time.time() - started
    grpo_em = exact_match(grpo_dir, eval_rows, rewards)
    curve = [e["task_losses"].get("reward") for e in log["log"] if "task_losses" in e]
    return {
        "seed": seed,
        "sft": sft_em,
        "sft+grpo": grpo_em,
        "sft_s": sft_time,
        "grpo_s": grpo_time,
        "reward_first": curve[0] if curve else float("nan"),
        "reward_last": curve[-1] if curve else float("nan"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sft-steps", type=int, default=60)
    parser.add_argument("--rl-steps", type=int, default=20)
    parser.add_argument("--sft-rows", type=int, default=400)
    parser.add_argument("--rl-rows", type=int, default=400)
    parser.add_argument("--eval-rows", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--sft-lr", type=float, default=3e-3)
    parser.add_argument("--rl-lr", type=float, default=2e-4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a smoke run: one seed, few steps")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.sft_steps, args.rl_steps, args.eval_rows = 1, 20, 4, 40
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    wall, cpu = time.time(), time.process_time()
    results = []
    with tempfile.TemporaryDirectory(prefix="tunekit-bench-rl-") as work:
        for seed in range(args.seeds):
            result = run_seed(seed, args, work)
            results.append(result)
            print(
                f"seed {seed}: exact match sft {result['sft']:.3f} -> sft+grpo {result['sft+grpo']:.3f} "
                f"(train reward {result['reward_first']:.3f} -> {result['reward_last']:.3f}; "
                f"sft {result['sft_s']:.0f} s, grpo {result['grpo_s']:.0f} s)",
                flush=True,
            )
    print()
    print(f"held-out exact match over {len(results)} seed(s), {args.eval_rows} problems each")
    print(f"{'model':<10} {'mean':>7} {'std':>7}  per seed")
    for name in ("sft", "sft+grpo"):
        values = [r[name] for r in results]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{name:<10} {statistics.mean(values):7.3f} {spread:7.3f}  " + " ".join(f"{v:.3f}" for v in values))
    gains = [r["sft+grpo"] - r["sft"] for r in results]
    spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
    print(
        f"gain of GRPO over SFT alone: {statistics.mean(gains):+.3f} (std {spread:.3f}); "
        f"{sum(g > 0 for g in gains)} of {len(gains)} seeds gained"
    )
    print(f"wall {time.time() - wall:.0f} s, CPU {time.process_time() - cpu:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
