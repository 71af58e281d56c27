"""Training throughput of the supervised-tuning step against a plain transformers ``Trainer``, in one run.

Both train the same model (a small Llama-style decoder, or ``--kind seq2seq`` a T5-style one, built from a config:
nothing is downloaded) with the same LoRA adapters on the same tokenised rows (the demo's support tickets),
for the same epochs, batch size, learning rate, seed and checkpoint interval:

- ``ours``: :func:`tunekit.components.tuning.supervised.local.tune_local` (TRL's ``SFTTrainer`` for a causal
  model, ``Seq2SeqTrainer`` for seq2seq, with our callbacks, checkpoint marks and training log);
- ``baseline``: ``transformers.Trainer`` with a padding collator and the model's own loss, nothing else.

Each side runs ``--repeats`` times, alternately (so load on the machine hits both alike); the table shows the
median of each. Tokens are the rows' non-padding tokens (prompt and completion), times the epochs; the time is
the trainer's ``train_runtime`` (the training loop, checkpoints included, model loading excluded). Goal: a ratio
of at least 0.95 on CPU.

On a GPU (``--mfu``, the default when one is visible) it also trains a ~1.1B-parameter decoder (TinyLlama's
shape, random weights) in bf16 with our step on 1024-token rows and prints its model FLOPs utilisation: tokens/s
x FLOPs per token / the GPU's peak dense bf16 FLOPs. With LoRA the base weights get no gradient, so a token costs
``4 N`` (forward ``2 N``, backward through the activations ``2 N``) plus attention's ``12 L T d`` (PaLM's
appendix B counting; full fine-tuning would be ``6 N + 12 L T d``).

Run: ``python bench/training_throughput.py`` (about 2 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "examples", "data", "support_tickets_train.jsonl")

SIZES = {
    "causal": {
        "hidden_size": 256,
        "intermediate_size": 688,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
    },
    "seq2seq": {"d_model": 256, "d_kv": 64, "num_heads": 4, "d_ff": 688, "num_layers": 3, "num_decoder_layers": 3},
}
#: TinyLlama-1.1B's shape (hidden 2048, 22 layers, 32 heads, 4 key-value heads, MLP 5632), with the byte
#: tokenizer's small vocabulary: about 0.97B parameters, all but 0.8M of them in the decoder layers.
BILLION = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
}
#: Dense bf16 peak FLOPs per second by GPU name (NVIDIA's data sheets: H100 SXM and H200 989.4 TFLOPS dense,
#: the 1979 of the sheets being with 2:4 sparsity; A100 312; L4 121; A10G 125 is the A10's 125 dense).
PEAK_BF16 = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L4": 121e12, "A10": 125e12}


def _config(args: argparse.Namespace, **overrides):
    from tunekit.components.tuning.lora import LocalTuningConfig

    values = dict(
        lora_r=16,
        lora_alpha=16,
        lora_dropout=0.0,
        learning_rate=1e-3,
        warmup_ratio=0.05,
        max_steps=0,
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_input_length=256,
        max_target_length=16,
        logging_steps=10,
        device=args.device,
    )
    values.update(overrides)
    return LocalTuningConfig(**values)


def ours(base: str, train: str, work: str, config) -> float:
    """The step's training time in seconds."""
    from tunekit.components.tuning.supervised.local import tune_local

    return tune_local(base, train, None, work, config)["wall_seconds"]


def baseline(base: str, train: str, work: str, config) -> float:
    """A plain ``transformers.Trainer`` on the same model, adapters, rows and settings; its training time."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from tunekit.components.model_clients.hf import resolve_device
    from tunekit.components.tuning.lora import (
        add_lora,
        featurize,
        load_for_training,
        read_prompt_completions,
        resolve_precision,
    )

    device = resolve_device(config.device)
    dtype = resolve_precision(config.precision, device)
    model, tokenizer, _, is_encoder_decoder = load_for_training(base, dtype, config.seed)
    model = add_lora(model, config, is_encoder_decoder)
    features = featurize(
        read_prompt_completions(train), tokenizer, is_encoder_decoder=is_encoder_decoder, config=config
    )
    dataset = Dataset.from_list([{"input_ids": f.input_ids, "labels": f.labels} for f in features])
    import torch

    args = TrainingArguments(
        output_dir=os.path.join(work, "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=config.warmup_ratio,
        num_train_epochs=config.epochs,
        seed=config.seed,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=device == "cpu",
        logging_steps=config.logging_steps,
        save_steps=0.1,  # what the step's default save_steps=0 means: every tenth of the run
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=device.startswith("cuda"),
    )
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    return trainer.train().metrics["train_runtime"]


def tokens_of(base: str, train: str, config) -> int:
    """Non-padding tokens a run trains on: every row's prompt and completion tokens, times the epochs."""
    from transformers import AutoConfig, AutoTokenizer

    from tunekit.components.tuning.lora import featurize, read_prompt_completions

    tokenizer = AutoTokenizer.from_pretrained(base)
    is_encoder_decoder = bool(AutoConfig.from_pretrained(base).is_encoder_decoder)
    features = featurize(
        read_prompt_completions(train), tokenizer, is_encoder_decoder=is_encoder_decoder, config=config
    )
    per_epoch = sum(len(f.input_ids) + (len(f.labels) if is_encoder_decoder else 0) for f in features)
    return int(per_epoch * config.epochs)


def compare(args: argparse.Namespace, work: str) -> dict:
    from tunekit.components.tuning.tiny import make_tiny_model

    base = make_tiny_model(os.path.join(work, "base"), args.kind, **SIZES[args.kind])
    rows = []
    with open(DATA, encoding="utf-8") as handle:
        for line in handle:
            if len(rows) < args.rows:
                rows.append(line)
    train = os.path.join(work, "train.jsonl")
    with open(train, "w", encoding="utf-8") as handle:
        handle.writelines(rows)
    config = _config(args)
    tokens = tokens_of(base, train, config)
    times: dict[str, list[float]] = {"ours": [], "baseline": []}
    for repeat in range(args.repeats):
        for name, run in (
            (("ours", ours), ("baseline", baseline))
            if repeat % 2 == 0
            else (
                ("baseline", baseline),
                ("ours", ours),
            )
        ):
            seconds = run(base, train, os.path.join(work, f"{name}-{repeat}"), config)
            times[name].append(seconds)
            print(f"  {name:<8} run {repeat + 1}: {seconds:.2f} s, {tokens / seconds:,.0f} tokens/s", flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "kind": args.kind,
        "rows": len(rows),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "tokens": tokens,
        "ours_tokens_per_s": tokens / median["ours"],
        "baseline_tokens_per_s": tokens / median["baseline"],
    }
    result["ratio"] = result["ours_tokens_per_s"] / result["baseline_tokens_per_s"]
    return result


def mfu(args: argparse.Namespace, work: str) -> dict:
    """bf16 model FLOPs utilisation of our step on a ~1.1B decoder (GPU only)."""
    import torch

    from tunekit.components.tuning.tiny import make_tiny_model

    name = torch.cuda.get_device_name()
    peak = next((value for key, value in PEAK_BF16.items() if key in name), None)
    base = make_tiny_model(os.path.join(work, "billion"), "causal", **BILLION)
    # Rows of about 1000 byte tokens (ByT5's tokenizer: one token per byte) and a short completion.
    text = "Customer wrote: my parcel is late again and nobody answers the phone. " * 14
    train = os.path.join(work, "long.jsonl")
    with open(train, "w", encoding="utf-8") as handle:
        for i in range(args.mfu_rows):
            handle.write(
                json.dumps({"prompt": f"{i} {text}"[:1000] + "\nTeam:", "completion": " shipping"}) + "\n"
            )
    config = _config(
        args,
        device="cuda",
        precision="bf16",
        batch_size=args.mfu_batch_size,
        epochs=1,
        max_input_length=1024,
        max_target_length=16,
        logging_steps=10,
        save_steps=10_000,
    )
    seconds = ours(base, train, os.path.join(work, "billion-run"), config)
    tokens = tokens_of(base, train, config)
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(base)
    layers, width = model_config.num_hidden_layers, model_config.hidden_size
    parameters = _parameters(model_config)
    length = tokens / args.mfu_rows
    per_token = 4 * parameters + 12 * layers * length * width
    achieved = tokens / seconds * per_token
    return {
        "gpu": name,
        "parameters": parameters,
        "tokens_per_s": tokens / seconds,
        "tflops": achieved / 1e12,
        "mfu": achieved / peak if peak else None,
    }


def _parameters(config) -> int:
    """Parameters that do matmuls per token: every weight but the input embedding."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(SIZES), default="causal")
    parser.add_argument("--rows", type=int, default=96, help="training rows (of the demo's support tickets)")
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternately")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mfu", choices=("auto", "yes", "no"), default="auto", help="the ~1B bf16 MFU run (GPU)")
    parser.add_argument("--mfu-rows", type=int, default=256)
    parser.add_argument("--mfu-batch-size", type=int, default=8)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("TUNEKIT_PROGRESS", "off")
    import torch

    results = {}
    with tempfile.TemporaryDirectory() as work:
        print(f"Training throughput, {args.kind} model on {args.device} ({torch.get_num_threads()} threads):")
        results["cpu"] = row = compare(args, work)
        print()
        print("| trainer | tokens/s | ratio |")
        print("| --- | --- | --- |")
        print(f"| plain transformers Trainer | {row['baseline_tokens_per_s']:,.0f} | 1.00 |")
        print(
            f"| tunekit step ({'SFTTrainer' if args.kind == 'causal' else 'Seq2SeqTrainer'}) | "
            f"{row['ours_tokens_per_s']:,.0f} | {row['ratio']:.2f} |"
        )
        verdict = "meets" if row["ratio"] >= 0.95 else "misses"
        print(f"\nratio {row['ratio']:.3f} ({verdict} the 0.95 goal); {row['tokens']:,} tokens per run")
        if args.mfu == "yes" or (args.mfu == "auto" and torch.cuda.is_available()):
            results["mfu"] = found = mfu(args, work)
            share = f"{100 * found['mfu']:.1f}%" if found["mfu"] is not None else "unknown (peak not listed)"
            print(
                f"\nbf16 MFU on {found['gpu']}: {share} ({found['tokens_per_s']:,.0f} tokens/s, "
                f"{found['tflops']:.0f} TFLOPS, {found['parameters'] / 1e9:.2f}B parameters, LoRA)"
            )
        else:
            print("\nbf16 MFU: not measured (no GPU visible)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
