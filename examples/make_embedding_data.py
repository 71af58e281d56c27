"""Writes the embedding-tuning example: a product-troubleshooting retrieval set with its own jargon.

Documents are service notes written in a support team's internal jargon (unit codes such as ``SWF-V2``, fault
codes such as ``WDR-4 watchdog reset loop``); queries are customers' plain words ("my robot vacuum keeps
restarting by itself"). A general-purpose embedding model cannot know that a ``SWF-V2`` is a robot vacuum or that
``WDR-4`` is what a customer calls "reboots every few minutes", so it is weak here; the mapping is exactly what
tuning on labelled pairs teaches, and it carries over to queries never seen in training.

Output files (under ``--out``, default ``examples/data/embedding``):

- ``corpus.jsonl``: ``_id``, ``title``, ``text`` (one service note per unit and fault);
- ``queries.jsonl``: ``_id``, ``text``;
- ``train.tsv``, ``validation.tsv``, ``test.tsv``: ``query-id``, ``corpus-id``, ``score`` (1), split by query.

Everything is generated from a seed: ``python examples/make_embedding_data.py`` rewrites the same files.
"""

from __future__ import annotations

import argparse
import os
import random

from tunekit.components.common.jsonl import write_jsonl

#: Unit code -> what customers call it.
PRODUCTS = {
    "HLC-R3": ["wifi router", "mesh router", "internet router"],
    "TRN-T1": ["smart thermostat", "thermostat", "heating controller"],
    "SWF-V2": ["robot vacuum", "vacuum robot", "robovac"],
    "KST-D1": ["video doorbell", "doorbell camera", "smart doorbell"],
    "ORL-S5": ["smart speaker", "voice assistant speaker", "kitchen speaker"],
    "PRG-C4": ["security camera", "outdoor camera", "home camera"],
    "MRL-L7": ["smart bulb", "light bulb", "smart lamp"],
    "EGR-P2": ["smart plug", "wifi plug", "power outlet plug"],
}

#: Fault code -> (jargon, subsystem, remedy, what customers say).
FAULTS = {
    "BRN-1": (
        "PSU brownout lockout",
        "power management IC",
        "Reseat the DC input and hold RST for 12 s to clear the latch.",
        [
            "won't turn on",
            "is completely dead",
            "has no power at all",
            "doesn't power up",
            "shows no sign of life",
        ],
    ),
    "WDR-4": (
        "watchdog reset loop",
        "supervisor core",
        "Flash the recovery image from the SVC partition.",
        [
            "keeps restarting by itself",
            "reboots every few minutes",
            "is stuck rebooting over and over",
            "randomly restarts",
            "cycles on and off constantly",
        ],
    ),
    "ASF-3": (
        "RF association failure on the 2G4 radio",
        "radio front end",
        "Force band steering off and re-run the SSID scan.",
        [
            "can't connect to my wifi",
            "won't join the wireless network",
            "fails to find my home network",
            "says network connection failed",
            "keeps dropping off wifi",
        ],
    ),
    "IQL-2": (
        "quiescent current leak",
        "battery management unit",
        "Disable the always-on sensor rail in the SVC menu.",
        [
            "battery drains really fast",
            "loses charge overnight",
            "battery dies within hours",
            "needs charging all the time",
            "runs out of power quickly even when idle",
        ],
    ),
    "PTN-6": (
        "amber fault pattern on the ring LED",
        "status controller",
        "Read the pattern count and look it up in the PTN table.",
        [
            "blinks orange",
            "flashes an orange light",
            "keeps blinking amber",
            "has a flashing orange ring",
            "shows a blinking yellow light",
        ],
    ),
    "TTR-5": (
        "thermal throttle trip",
        "thermal governor",
        "Clear the vent path and lower the duty profile to ECO-2.",
        [
            "gets really hot",
            "overheats",
            "is too hot to touch",
            "feels burning hot",
            "heats up a lot then stops working",
        ],
    ),
    "OCM-8": (
        "OTA image checksum mismatch",
        "bootloader",
        "Purge the staging slot and re-pull the signed bundle.",
        [
            "firmware update fails",
            "software update won't install",
            "update gets stuck and errors out",
            "can't update to the latest version",
            "update keeps failing halfway",
        ],
    ),
    "HBT-9": (
        "cloud heartbeat timeout",
        "telemetry agent",
        "Rotate the device certificate and re-register with the broker.",
        [
            "shows offline in the app",
            "says device unavailable in the app",
            "isn't reachable from my phone",
            "appears disconnected in the app",
            "disappeared from the app",
        ],
    ),
    "NVC-1": (
        "NVRAM commit failure",
        "config store",
        "Run the NV scrub job and re-provision the profile.",
        [
            "forgets its settings after a restart",
            "loses my settings every time",
            "resets to factory defaults on its own",
            "doesn't remember its configuration",
            "loses settings after a power cut",
        ],
    ),
    "VRM-3": (
        "coil whine in the VRM stage",
        "voltage regulator",
        "Swap to the low-ripple firmware profile; replace the inductor if it persists.",
        [
            "makes a buzzing noise",
            "is humming loudly",
            "emits a high-pitched whine",
            "makes a weird electrical sound",
            "has a constant buzz",
        ],
    ),
    "HID-2": (
        "HID matrix debounce stall",
        "input controller",
        "Recalibrate the capacitive matrix from the SVC menu.",
        [
            "buttons don't respond",
            "does nothing when I press the button",
            "touch controls stopped working",
            "ignores my button presses",
            "doesn't register presses",
        ],
    ),
    "PAR-4": (
        "commissioning token rejected by the BLE provisioner",
        "provisioning service",
        "Reset the commissioning token and retry within the 90 s window.",
        [
            "won't pair with my phone",
            "fails during setup in the app",
            "can't be added during setup",
            "keeps failing to pair",
            "won't finish the app setup",
        ],
    ),
}

TEMPLATES = [
    "my {product} {fault}",
    "the {product} I bought {fault}",
    "help, {product} {fault}",
    "{product} {fault}, what should I do?",
    "what to do when the {product} {fault}",
    "our {product} {fault} since yesterday",
]


def build(seed: int = 7, queries_per_doc: int = 3) -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """The corpus rows, query rows and ``(query-id, corpus-id)`` labels, reproducibly from ``seed``."""
    rng = random.Random(seed)
    corpus, queries, labels = [], [], []
    seen_texts: set[str] = set()
    for unit, names in PRODUCTS.items():
        for code, (jargon, subsystem, remedy, plain) in FAULTS.items():
            doc_id = f"{unit}-{code}".lower()
            corpus.append(
                {
                    "_id": doc_id,
                    "title": f"{unit} {code}: {jargon}",
                    "text": (
                        f"Service note for the {unit} line. Fault {code} ({jargon}) is raised by the {subsystem}. "
                        f"{remedy} If {code} persists after three cycles, escalate with the {unit} service log."
                    ),
                }
            )
            phrasings = rng.sample(plain, k=min(queries_per_doc, len(plain)))
            for i, fault in enumerate(phrasings):
                for _ in range(10):
                    text = rng.choice(TEMPLATES).format(product=rng.choice(names), fault=fault)
                    if text not in seen_texts:
                        break
                seen_texts.add(text)
                query_id = f"q-{doc_id}-{i}"
                queries.append({"_id": query_id, "text": text})
                labels.append((query_id, doc_id))
    return corpus, queries, labels


def split_by_query(
    labels: list[tuple[str, str]], seed: int = 7, validation: float = 0.1, test: float = 0.3
) -> dict[str, list[tuple[str, str]]]:
    """Splits labels by query into train / validation / test (a query's labels stay together)."""
    query_ids = sorted({q for q, _ in labels})
    random.Random(seed).shuffle(query_ids)
    n_test = round(len(query_ids) * test)
    n_validation = round(len(query_ids) * validation)
    test_ids = set(query_ids[:n_test])
    validation_ids = set(query_ids[n_test : n_test + n_validation])
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "validation": [], "test": []}
    for query_id, doc_id in labels:
        name = "test" if query_id in test_ids else "validation" if query_id in validation_ids else "train"
        splits[name].append((query_id, doc_id))
    return splits


def write(out_dir: str, seed: int = 7, queries_per_doc: int = 3) -> dict[str, str]:
    """Writes the five files under ``out_dir``; returns their paths by name."""
    corpus, queries, labels = build(seed, queries_per_doc)
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, f"{name}.jsonl") for name in ("corpus", "queries")}
    for name, rows in (("corpus", corpus), ("queries", queries)):
        write_jsonl(paths[name], rows)
    for name, rows in split_by_query(labels, seed).items():
        paths[name] = os.path.join(out_dir, f"{name}.tsv")
        with open(paths[name], "w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for query_id, doc_id in rows:
                handle.write(f"{query_id}\t{doc_id}\t1\n")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--out", default=os.path.join(here, "data", "embedding"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--queries-per-doc", type=int, default=3)
    args = parser.parse_args()
    for name, path in write(args.out, args.seed, args.queries_per_doc).items():
        print(f"wrote {name}: {path}")


if __name__ == "__main__":
    main()
