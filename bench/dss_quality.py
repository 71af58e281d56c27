"""Quality benchmark of distilling step-by-step on a synthetic multi-step reasoning task.

The task: arithmetic word problems of two operations (add and subtract by default; ``--operations 2,3`` and
``--kinds +-*`` give the harder two-or-three-step problems with doubling and tripling), generated here. A
programmatic teacher writes a rationale for every problem ("7 + 5 = 12. 12 - 3 = 9.") and, like PaLM on SVAMP,
is wrong on about a quarter of them: it slips on one step and carries the slip to its answer, so its rationale
and its label agree with each other but not with the truth.

Students are tiny T5-style seq2seq models (0.8M parameters) built from a config and trained from scratch on CPU
with full fine-tuning by the project's own trainer (``tunekit.components.tuning.distillation.local.tune_student``). By
default they read words: a word-level tokenizer in which every word and every number is one token
(``--tokenizer byte`` uses ByT5's byte tokenizer, whose five-times longer sequences cost five times the steps).
Four ways to train, each at 100% and at 25% of the training inputs, over several seeds, with the same number of
steps and inputs per step:

- ``label_gold``: label only, gold labels (an upper reference: no teacher noise);
- ``label_teacher``: label only, the teacher's labels (what distillation without rationales gives);
- ``dss``: distilling step-by-step: teacher labels and rationales, multi-task with ``alpha``;
- ``cot``: the target is the teacher's rationale followed by its answer.

Accuracy is measured against gold answers on held-out problems. Run: ``python bench/dss_quality.py --jobs 6``
(one process per seed and data fraction, one thread each; about 35 minutes of CPU in all with the defaults;
``--quick`` for a smoke run). It prints every run, the table, DSS minus label-only with teacher labels, and the
wall and CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time

NAMES = ["Mia", "Leo", "Ava", "Sam", "Zoe", "Max", "Ivy", "Ben", "Eli", "Kim"]
THINGS = ["apples", "pens", "cards", "books", "coins", "shells", "stamps", "marbles"]


def _operation(rng: random.Random, value: int, max_value: int, kinds: str = "+-*") -> tuple[str, str, int]:
    """One step: (phrase, operator, operand), keeping the running value between 0 and ``max_value``."""
    while True:
        kind = rng.choice(kinds)
        if kind == "+" and value + 2 <= max_value:
            n = rng.randint(2, min(9, max_value - value))
            return rng.choice([f"buys {n} more", f"finds {n}", f"gets {n} more"]), "+", n
        if kind == "-" and value >= 2:
            n = rng.randint(1, min(9, value))
            return rng.choice([f"gives away {n}", f"loses {n}", f"sells {n}"]), "-", n
        if kind == "*" and value * 2 <= max_value:
            n = 3 if value * 3 <= max_value and rng.random() < 0.5 else 2
            return {2: "doubles them", 3: "triples them"}[n], "*", n


def apply(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def make_problem(
    rng: random.Random,
    error_rate: float = 0.25,
    max_value: int = 30,
    steps_choices: tuple[int, ...] = (2, 3),
    kinds: str = "+-*",
) -> dict:
    """A problem with its gold answer, the teacher's rationale and the teacher's (sometimes wrong) answer.

    Problems are short on purpose ("Mia has 7 pens, buys 5 more, loses 3, then doubles them. How many pens
    now?"): shorter inputs buy more training steps in the time budget. ``steps_choices`` and ``kinds`` set how
    many operations a problem has and which; ``gold_rationale`` is the rationale without the teacher's slip.
    """
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    start = rng.randint(2, 9)
    steps = rng.choice(list(steps_choices))
    phrases, ops, value = [], [], start
    for _ in range(steps):
        phrase, op, n = _operation(rng, value, max_value, kinds)
        phrases.append(phrase)
        ops.append((op, n))
        value = apply(op, value, n)
    text = (
        f"{name} has {start} {thing}, " + ", ".join(phrases[:-1]) + f", then {phrases[-1]}. How many {thing} now?"
    )
    gold = value
    # The teacher: right on about three quarters; otherwise one step's result is off by 1 or 2, and the slip is
    # carried to the end, as a real teacher's arithmetic slip is.
    wrong_step = rng.randrange(steps) if rng.random() < error_rate else -1
    parts, current = [], start
    for i, (op, n) in enumerate(ops):
        result = apply(op, current, n)
        if i == wrong_step:
            result = max(0, result + rng.choice([-2, -1, 1, 2]))
        parts.append(f"{current} {op} {n} = {result}.")
        current = result
    gold_parts, current_gold = [], start
    for op, n in ops:
        result = apply(op, current_gold, n)
        gold_parts.append(f"{current_gold} {op} {n} = {result}.")
        current_gold = result
    return {
        "input_text": text,
        "gold": str(gold),
        "gold_rationale": " ".join(gold_parts),
        "rationale": " ".join(parts),
        "teacher_label": str(current),
        "teacher_correct": current == gold,
    }


def make_dataset(
    n: int,
    seed: int,
    error_rate: float = 0.25,
    max_value: int = 30,
    steps_choices: tuple[int, ...] = (2, 3),
    kinds: str = "+-*",
) -> list[dict]:
    rng = random.Random(seed)
    seen, rows = set(), []
    while len(rows) < n:
        problem = make_problem(rng, error_rate, max_value, steps_choices, kinds)
        if problem["input_text"] in seen:
            continue
        seen.add(problem["input_text"])
        rows.append(problem)
    return rows


METHODS = ("label_gold", "label_teacher", "dss", "cot")


def student_rows(problems: list[dict], method: str, alpha: float) -> list[dict]:
    from tunekit.components.tuning.distillation.local import COT, MULTITASK, STANDARD, build_student_examples

    if method == "label_gold":
        source = [{"input_text": p["input_text"], "output_text": p["gold"]} for p in problems]
        mode = STANDARD
    else:
        # Unlabelled inputs: the teacher's label and rationale are all the student gets.
        source = [
            {"input_text": p["input_text"], "teacher_label": p["teacher_label"], "rationale": p["rationale"]}
            for p in problems
        ]
        mode = {"label_teacher": STANDARD, "dss": MULTITASK, "cot": COT}[method]
    examples, _ = build_student_examples(source, mode=mode, alpha=alpha)
    return examples


def train_and_score(
    method: str,
    train: list[dict],
    test: list[dict],
    *,
    seed: int,
    work: str,
    args: argparse.Namespace,
) -> dict:
    from tunekit.components.common.jsonl import write_jsonl
    from tunekit.components.model_clients.base import GenerationConfig, Prompt
    from tunekit.components.model_clients.hf import HFLocalClient
    from tunekit.components.rationale_extraction.parsing import answer_from_cot
    from tunekit.components.tuning.distillation.local import (
        COT,
        MULTITASK,
        STANDARD,
        DistillTuningConfig,
        serving_prefix,
        tune_student,
    )
    from tunekit.components.tuning.tiny import make_tiny_model

    model_dir = os.path.join(work, f"init-{seed}")
    if not os.path.isdir(model_dir):
        if args.tokenizer == "word":
            make_word_level_model(model_dir, seed=seed, max_value=args.max_value, **SIZES[args.size])
        else:
            make_tiny_model(model_dir, kind="seq2seq", seed=seed, **SIZES[args.size])
    train_file = os.path.join(work, f"{method}-{seed}-{len(train)}.jsonl")
    write_jsonl(train_file, student_rows(train, method, args.alpha))
    out_dir = os.path.join(work, f"student-{method}-{seed}-{len(train)}")
    config = DistillTuningConfig(
        finetuning="full",
        learning_rate=args.learning_rate,
        max_steps=args.steps,
        batch_size=args.batch_size,
        warmup_ratio=0.05,
        max_input_length=192,
        max_target_length=64,
        logging_steps=max(1, args.steps // 10),
        seed=seed,
        device=args.device,
    )
    summary = tune_student(model_dir, train_file, None, out_dir, config)
    mode = {"dss": MULTITASK, "cot": COT}.get(method, STANDARD)
    client = HFLocalClient(out_dir, batch_size=64, device=args.device)
    prefix = serving_prefix(mode)
    started = time.perf_counter()
    generations = client.generate(
        [Prompt(prefix + p["input_text"]) for p in test],
        GenerationConfig(max_output_tokens=72 if mode == COT else 8),
    )
    predict_s = time.perf_counter() - started
    client.close()
    answers = [answer_from_cot(g.text) if mode == COT else g.text.strip() for g in generations]
    correct = sum(a == p["gold"] for a, p in zip(answers, test, strict=True))
    return {
        "method": method,
        "seed": seed,
        "train_inputs": len(train),
        "accuracy": correct / len(test),
        "train_s": summary["wall_seconds"],
        "predict_s": round(predict_s, 2),
        "final_loss": summary["train_loss"],
        "task_losses": summary["task_losses"],
    }


def vocabulary(max_value: int) -> list[str]:
    """Every word the problems, rationales, answers, task prefixes and CoT targets use (numbers as whole words)."""
    words = set(NAMES) | set(THINGS)
    words |= set("has buys more finds gets gives away loses sells doubles triples them then How many now".split())
    words |= {"predict", "explain", "So", "the", "answer", "is"}
    words |= {",", ".", "?", ":", "+", "-", "*", "="}
    # A slip can take a teacher's value a little past max_value; a multiplication up to three times it.
    words |= {str(n) for n in range(0, 3 * max_value + 10)}
    return sorted(words)


def make_word_level_model(output_dir: str, *, seed: int, max_value: int, **size: int) -> str:
    """A tiny random T5-style model with a word-level tokenizer (each number one token), saved like a real one.

    The tokenizer splits on spaces and punctuation (``tokenizers``' ``Whitespace``) and appends ``</s>`` as T5's
    does; ids 0, 1, 2 are pad, eos and unk, as in T5. It loads with ``AutoTokenizer`` like any model directory.
    """
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    specials = ["<pad>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + vocabulary(max_value))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(vocab),
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        **{**SIZES["tiny"], **size},
    )
    model = T5ForConditionalGeneration(config)
    os.makedirs(output_dir, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def _run_seed(job: tuple) -> list[dict]:
    """Every method for one seed and the given fractions (a worker process's share with ``--jobs``)."""
    seed, fractions, methods, args = job
    import torch

    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as work:
        pool = make_dataset(
            args.train_size + args.test_size,
            1000 + seed,
            args.error_rate,
            args.max_value,
            tuple(int(n) for n in args.operations.split(",")),
            args.kinds,
        )
        train_all, test = pool[: args.train_size], pool[args.train_size :]
        teacher_train_acc = sum(p["teacher_correct"] for p in train_all) / len(train_all)
        for fraction in fractions:
            train = train_all[: max(1, round(fraction * len(train_all)))]
            for method in methods:
                result = train_and_score(method, train, test, seed=seed, work=work, args=args)
                result.update(fraction=fraction, teacher_train_accuracy=teacher_train_acc)
                results.append(result)
                print(
                    f"seed {seed} data {fraction:>4.0%} {method:<13} accuracy {result['accuracy']:.3f} "
                    f"(train {result['train_s']:.0f} s, loss {result['final_loss']:.3f}; "
                    + ", ".join(f"{t} {v:.3f}" for t, v in sorted(result["task_losses"].items()))
                    + ")",
                    flush=True,
                )
    return results


#: Student sizes (T5Config fields).
SIZES = {
    "tiny": {"d_model": 128, "d_kv": 32, "num_heads": 4, "d_ff": 256, "num_layers": 2, "num_decoder_layers": 2},
    "small": {"d_model": 192, "d_kv": 32, "num_heads": 6, "d_ff": 512, "num_layers": 3, "num_decoder_layers": 2},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-size", type=int, default=2000, help="training inputs at 100%%")
    parser.add_argument("--test-size", type=int, default=300)
    parser.add_argument("--fractions", default="1.0,0.25")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--error-rate", type=float, default=0.25, help="share of problems the teacher gets wrong")
    parser.add_argument("--max-value", type=int, default=20, help="the largest number a problem reaches")
    parser.add_argument("--operations", default="2", help="how many operations a problem has (choices: '2,3')")
    parser.add_argument("--kinds", default="+-", help="the operations problems use ('+-*' adds doubling/tripling)")
    parser.add_argument(
        "--tokenizer",
        choices=("word", "byte"),
        default="word",
        help="word: numbers and words are single tokens (short sequences); byte: ByT5's byte tokenizer",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once, one process each")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one seed, few steps, small sets")
    parser.add_argument("--json", help="also write every run's result to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_size, args.test_size, args.seeds, args.steps = 200, 50, "0", 20
    import torch

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    results = []
    started = time.perf_counter()
    jobs = [(seed, [fraction], methods, args) for seed in seeds for fraction in fractions]
    if args.jobs > 1:
        import multiprocessing

        # One process per (seed, fraction), each with its own threads: they share nothing but the CPU.
        with multiprocessing.get_context("spawn").Pool(min(args.jobs, len(jobs))) as workers:
            for job_results in workers.imap_unordered(_run_seed, jobs):
                results.extend(job_results)
            workers.close()
            workers.join()
    else:
        for job in jobs:
            results.extend(_run_seed(job))
    results.sort(key=lambda r: (r["seed"], -r["fraction"], methods.index(r["method"])))
    total = time.perf_counter() - started
    print()
    print(
        f"Distilling step-by-step on synthetic arithmetic word problems ({args.operations.replace(',', ' or ')} "
        f"operations of '{args.kinds}', values up to {args.max_value}; {args.train_size} training inputs at 100%, "
        f"{args.test_size} test, seeds {args.seeds}, {args.steps} steps x {args.batch_size} inputs, learning rate "
        f"{args.learning_rate:g}, student '{args.size}' from scratch with a {args.tokenizer}-level tokenizer, "
        f"alpha {args.alpha}, teacher error rate {args.error_rate:.0%})"
    )
    header = "| method | " + " | ".join(f"{f:.0%} data" for f in fractions) + " |"
    print(header)
    print("| --- |" + " --- |" * len(fractions))
    means: dict[tuple[str, float], float] = {}
    for method in methods:
        cells = []
        for fraction in fractions:
            values = [r["accuracy"] for r in results if r["method"] == method and r["fraction"] == fraction]
            mean = statistics.mean(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            means[(method, fraction)] = mean
            cells.append(f"{100 * mean:.1f} ± {100 * spread:.1f}")
        print(f"| {method} | " + " | ".join(cells) + " |")
    if "dss" in methods and "label_teacher" in methods:
        gaps = [means[("dss", f)] - means[("label_teacher", f)] for f in fractions]
        average = 100 * statistics.mean(gaps)
        verdict = "meets" if average >= 3.0 else "misses"
        print(
            "\nDSS minus label-only with teacher labels: "
            + ", ".join(f"{100 * g:+.1f} points at {f:.0%}" for g, f in zip(gaps, fractions, strict=True))
            + f"; average {average:+.1f} ({verdict} the +3.0 target)"
        )
    import resource

    cpu = sum(
        getattr(resource.getrusage(who), field)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for field in ("ru_utime", "ru_stime")
    )
    print(f"Total time: {total / 60:.1f} min wall, {cpu / 60:.1f} min of CPU")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"args": vars(args), "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
