"""Writes the preference-tuning example: customer-support replies where people prefer the polite, short answer.

Each prompt is a customer's message to a support desk. Of two candidate replies, the preferred one is **polite,
concise and ends with one clear action** ("Sorry about the dropped connection. Please restart the router and
reply if the light stays red."); the other is rude, rambling, or polite but vague (no action). That preference is
easy to judge and hard to specify as a target, which is what preference tuning is for, and it is learnable by a
tiny byte-level reward model: it shows in the opening words, the length and the closing request.

Output files (under ``--out``, default ``examples/data/preference``):

- ``train.jsonl``: human-preference rows (``input_text`` or ``messages``, ``candidate_0``, ``candidate_1``,
  ``choice``) for the reward model / DPO and, through their preferred answers, the SFT warm start;
- ``eval.jsonl``: held-out preference pairs on products and problems never seen in training (reward-model
  accuracy, and their prompts for the policy's win rate);
- ``prompts.jsonl``: the RLHF prompt dataset (``input_text``), prompts for the RL step;
- ``train_gemini.jsonl``: the first rows of ``train.jsonl`` in the Gemini preference format (``contents``,
  ``completions`` with scores), written by tunekit's own converter, to show the format.

Everything is generated from a seed: ``python examples/make_preference_data.py`` rewrites the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import random

from tunekit.components.common.jsonl import write_jsonl

#: Product -> problems customers report and the one action that helps, in the training split.
TRAIN_TOPICS = {
    "router": [
        ("keeps dropping the connection every evening", "restart the router", "tell us if it drops again"),
        ("shows a red light", "unplug it for ten seconds", "reply with the light colour"),
        ("is very slow upstairs", "move it closer to the stairs", "run a speed test"),
    ],
    "invoice": [
        ("charges me twice this month", "send us both invoice numbers", "we will refund the extra charge"),
        ("has the wrong address", "reply with the correct address", "we will send a new invoice"),
        ("never arrived by email", "check your spam folder", "reply if it is not there"),
    ],
    "parcel": [
        ("is three days late", "share your order number", "we will trace it today"),
        ("arrived damaged", "send a photo of the box", "we will ship a replacement"),
        ("went to the wrong house", "confirm your delivery address", "we will collect it"),
    ],
    "password": [
        ("reset link does not work", "use the new link we just sent", "reply if it fails"),
        ("is locked after three tries", "wait fifteen minutes", "then sign in again"),
    ],
    "printer": [
        ("prints blank pages", "replace the ink cartridge", "print a test page"),
        ("is offline on the laptop", "reconnect it to the wifi", "try printing again"),
    ],
    "subscription": [
        ("renewed without asking", "reply with your account email", "we will cancel it"),
        ("shows the old price", "log out and back in", "tell us the price you see"),
    ],
}

#: Held-out products and problems for evaluation (never in training).
EVAL_TOPICS = {
    "thermostat": [
        ("will not hold the temperature", "update the app", "set the schedule again"),
        ("screen is blank", "replace the batteries", "tell us if it wakes up"),
    ],
    "headphones": [
        ("only play in one ear", "reset them from the app", "reply if the sound is still off"),
        ("do not pair with my phone", "forget the device in settings", "pair it again"),
    ],
    "refund": [
        ("has not reached my card", "allow five working days", "send us the bank statement if not"),
        ("was for the wrong amount", "reply with the order number", "we will fix the amount"),
    ],
    "camera": [
        ("shows a black picture at night", "turn on night mode", "send us a screenshot"),
        ("keeps disconnecting", "move the hub closer", "tell us if it stays online"),
    ],
}

OPENINGS = [
    "Hi, my {product} {problem}.",
    "Hello, the {product} {problem}. Can you help?",
    "My {product} {problem} and I am annoyed.",
    "Please help: the {product} {problem}.",
    "Is there a fix? My {product} {problem}.",
]
APOLOGIES = ["Sorry about that.", "Thanks for telling us.", "Sorry for the trouble.", "Thank you for writing."]
RUDE = [
    "That is not our problem.",
    "Read the manual first.",
    "We cannot do anything, stop writing to us.",
    "Everyone else manages fine with their {product}.",
    "Figure it out yourself.",
]
VAGUE = [
    "Thanks for your message, we hope the {product} works better soon.",
    "We understand, problems like this can happen with any {product}.",
    "Thank you, our team is aware that a {product} can be tricky.",
]
RAMBLING = (
    "Well, a {product} that {problem} can have many causes, maybe the settings or the weather, it is hard to say "
    "really, it depends."
)


def preferred(product: str, problem: str, action: str, follow_up: str, rng: random.Random) -> str:
    """Polite, concise, ends with one clear action."""
    return f"{rng.choice(APOLOGIES)} Please {action} and {follow_up}."


def rejected(product: str, problem: str, rng: random.Random) -> str:
    """Rude, rambling or vague: never a clear action."""
    style = rng.choice(["rude", "rambling", "vague"])
    if style == "rude":
        return " ".join(rng.sample(RUDE, 2)).format(product=product)
    if style == "rambling":
        return RAMBLING.format(product=product, problem=problem)
    return rng.choice(VAGUE).format(product=product)


def make_rows(topics: dict, per_case: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Preference rows and prompt rows for every (product, problem), ``per_case`` phrasings each."""
    pairs, prompts = [], []
    for product, cases in topics.items():
        for problem, action, follow_up in cases:
            for opening in rng.sample(OPENINGS, per_case):
                prompt = opening.format(product=product, problem=problem)
                good = preferred(product, problem, action, follow_up, rng)
                bad = rejected(product, problem, rng)
                choice = rng.randint(0, 1)
                candidates = [bad, good] if choice else [good, bad]
                if rng.random() < 0.15:
                    # A few conversations: an earlier exchange, then the complaint (the `messages` variant).
                    row = {
                        "messages": [
                            {"role": "user", "content": f"Hi, I have a question about my {product}."},
                            {"role": "assistant", "content": "Of course. What happened?"},
                            {"role": "user", "content": prompt},
                        ]
                    }
                else:
                    row = {"input_text": prompt}
                row.update(candidate_0=candidates[0], candidate_1=candidates[1], choice=choice)
                pairs.append(row)
                prompts.append({"input_text": prompt})
    rng.shuffle(pairs)
    return pairs, prompts


def _key(row: dict) -> str:
    prompt = row.get("input_text") or json.dumps(row.get("messages"))
    return json.dumps([prompt, sorted((row["candidate_0"], row["candidate_1"]))])


def main(argv: list[str] | None = None) -> None:
    """Writes the example files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "data", "preference"))
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    os.makedirs(args.out, exist_ok=True)
    train, train_prompts = make_rows(TRAIN_TOPICS, per_case=5, rng=rng)
    # A second, differently seeded set of candidates for the same training prompts doubles the pairs.
    more, _ = make_rows(TRAIN_TOPICS, per_case=5, rng=rng)
    seen = {_key(row) for row in train}
    train += [row for row in more if _key(row) not in seen]  # an exact repeat teaches nothing new
    held_out, _ = make_rows(EVAL_TOPICS, per_case=5, rng=rng)
    write_jsonl(os.path.join(args.out, "train.jsonl"), train)
    write_jsonl(os.path.join(args.out, "eval.jsonl"), held_out)
    unique_prompts = list({p["input_text"]: p for p in train_prompts}.values())
    write_jsonl(os.path.join(args.out, "prompts.jsonl"), unique_prompts)
    from tunekit.components.data_validation.preference_convert import human_to_gemini

    write_jsonl(os.path.join(args.out, "train_gemini.jsonl"), [human_to_gemini(row) for row in train[:20]])
    print(
        f"{len(train)} training pairs, {len(held_out)} held-out pairs, {len(unique_prompts)} prompts -> {args.out}"
    )


if __name__ == "__main__":
    main()
