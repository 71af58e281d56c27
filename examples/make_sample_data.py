"""Writes the demo dataset: customer-support messages routed to one of four teams.

Everything is generated here, deterministically, from templates and word lists written for tunekit; nothing is
copied from elsewhere. Run from the repository root::

    python examples/make_sample_data.py            # rewrites examples/data/support_tickets_*.jsonl

Output columns (text-pair format): ``input_text`` (the instruction, which lists the classes, then the message)
and ``output_text`` (one class name). Validation rows are drawn from the same templates with other fillers and
never repeat a training row's ``input_text``.
"""

from __future__ import annotations

import argparse
import os
import random

from tunekit.components.common.jsonl import write_jsonl

LABELS = ("billing", "technical", "shipping", "account")

# The same instruction on every row, as the spec asks: a classification prompt lists its classes.
INSTRUCTION = "Route the support message to one team: billing, technical, shipping or account."

TEMPLATES = {
    "billing": [
        "I was charged twice for my {plan} plan this month.",
        "My invoice shows {amount} but I expected {amount2}.",
        "Please refund the {amount} charge from {month}.",
        "My card was declined when I paid the invoice.",
        "Can I get a receipt for my payment of {amount}?",
        "The price of my {plan} plan went up to {amount}.",
        "I want to pay with a new credit card.",
        "There is an unknown charge of {amount} on my statement.",
        "I cancelled but was still billed {amount} in {month}.",
        "How do I change the billing address on my invoices?",
    ],
    "technical": [
        "{product} crashes every time I open it.",
        "I get error {code} when I try to sync.",
        "{product} is very slow since the last update.",
        "The dashboard keeps loading and never shows up.",
        "{product} will not connect to the wifi.",
        "Uploads fail with a timeout error.",
        "The export button does nothing in {product}.",
        "{product} freezes after updating to version {version}.",
        "Notifications stopped working in {product}.",
        "The screen goes black when I start {product}.",
    ],
    "shipping": [
        "My order {order} has not arrived yet.",
        "The tracking number for order {order} does not work.",
        "My package was delivered to the wrong address.",
        "Can you ship order {order} to my office instead?",
        "My parcel arrived damaged, the box was crushed.",
        "The courier says order {order} is lost.",
        "How long does delivery to {city} take?",
        "Order {order} is stuck in customs since {month}.",
        "Half of the items in order {order} were missing from the box.",
        "Can I change the delivery date of order {order}?",
    ],
    "account": [
        "I forgot my password and the reset email never comes.",
        "Please change the email on my account to {email}.",
        "I want to delete my account and all my data.",
        "My account is locked after too many login attempts.",
        "How do I add a second user to my account?",
        "I cannot log in, it says my username does not exist.",
        "Please merge my two accounts into one.",
        "How do I turn on two-factor authentication for my login?",
        "Someone else may have access to my account.",
        "I need to change the name on my profile to {name}.",
    ],
}

FILLERS = {
    "plan": ["basic", "pro", "family", "team", "yearly", "monthly"],
    "amount": ["$12.99", "$49", "$7.50", "$120", "$23.10", "$5", "$99.99", "$64"],
    "amount2": ["$10", "$45", "$6", "$100", "$20", "$59"],
    "month": ["January", "March", "April", "June", "August", "October", "December"],
    "product": ["The app", "The desktop client", "The router", "The printer", "My tablet app", "The web editor"],
    "code": ["E102", "500", "0x80070", "E-17", "403", "SYNC-9"],
    "version": ["2.4", "3.0.1", "5.2", "1.9.8", "4.1"],
    "order": ["#48213", "#10577", "#99120", "#30416", "#72208", "#55031", "#61894", "#23760"],
    "city": ["Lyon", "Osaka", "Denver", "Cork", "Porto", "Leeds", "Quebec"],
    "email": ["ana@example.com", "j.lee@example.org", "sam.k@example.net", "mo@example.com"],
    "name": ["Ana Ruiz", "Jin Lee", "Sam Kowalski", "Mo Farah", "Lea Stein"],
}

GREETINGS = ["", "", "Hi, ", "Hello, ", "Hey there. ", "Good morning. "]
CLOSERS = ["", "", " Thanks.", " Please help.", " This is urgent.", " Thank you!"]


def make_message(rng: random.Random, label: str) -> str:
    """One message of class ``label``: a greeting, a class template with its slots filled, a closer."""
    template = rng.choice(TEMPLATES[label])
    values = {slot: rng.choice(words) for slot, words in FILLERS.items()}
    body = template.format(**values)
    greeting = rng.choice(GREETINGS)
    if greeting and body[0].isupper() and not body.startswith("I "):
        body = body[0].lower() + body[1:]
    return greeting + body + rng.choice(CLOSERS)


def make_prompt(message: str) -> str:
    """The prompt a model sees: the instruction, the message, and a cue for the answer."""
    return f"{INSTRUCTION}\nMessage: {message}\nTeam:"


def make_split(rng: random.Random, per_label: int, seen: set[str]) -> list[dict]:
    """``per_label`` new rows per class, skipping any ``input_text`` already in ``seen`` (which grows)."""
    rows = []
    for label in LABELS:
        count = 0
        while count < per_label:
            prompt = make_prompt(make_message(rng, label))
            if prompt in seen:
                continue
            seen.add(prompt)
            rows.append({"input_text": prompt, "output_text": label})
            count += 1
    rng.shuffle(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Generates and writes the train and validation files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "data"))
    parser.add_argument("--train-per-label", type=int, default=80)
    parser.add_argument("--validation-per-label", type=int, default=12)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    seen: set[str] = set()
    train = make_split(rng, args.train_per_label, seen)
    validation = make_split(rng, args.validation_per_label, seen)
    os.makedirs(args.out_dir, exist_ok=True)
    write_jsonl(os.path.join(args.out_dir, "support_tickets_train.jsonl"), train)
    write_jsonl(os.path.join(args.out_dir, "support_tickets_validation.jsonl"), validation)
    print(f"wrote {len(train)} training and {len(validation)} validation rows to {args.out_dir}")


if __name__ == "__main__":
    main()
