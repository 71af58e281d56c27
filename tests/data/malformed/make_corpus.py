"""Writes the malformed-input corpus and its manifest (run once; the files are committed).

Each case names its files, the method (and task or format when it matters) and the findings it must produce:
``kind`` and ``line`` (null for a finding about the whole file). ``.venv/bin/python tests/data/malformed/make_corpus.py``
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CASES: list[dict] = []


def write(name: str, lines: list) -> str:
    """Writes ``lines`` (dicts become JSON, bytes and str are written as they are) to ``name``."""
    with open(os.path.join(HERE, name), "wb") as handle:
        for line in lines:
            if isinstance(line, bytes):
                handle.write(line + b"\n")
            elif isinstance(line, str):
                handle.write(line.encode() + b"\n")
            else:
                handle.write(json.dumps(line).encode() + b"\n")
    return name


def case(name: str, files: dict, method: str, expect: list, **options) -> None:
    CASES.append({"name": name, "files": files, "method": method, "expect": expect, **options})


def train_case(name: str, file: str, rows: list, method: str, expect: list, **options) -> None:
    """A case whose one file is its training data: ``rows`` written to ``file``."""
    case(name, {"train": write(file, rows)}, method, expect, **options)


def pair(i: int, label: str = "billing") -> dict:
    return {
        "input_text": f"Route the message to one team: billing, shipping or account.\nMessage: case {i}\nTeam:",
        "output_text": label,
    }


def chat(*turns: tuple) -> dict:
    return {"messages": [{"role": role, "content": text} for role, text in turns]}


def gemini(*turns: tuple, system: str | None = None) -> dict:
    row: dict = {
        "contents": [
            {"role": role, "parts": parts if isinstance(parts, list) else [{"text": parts}]}
            for role, parts in turns
        ]
    }
    if system:
        row["systemInstruction"] = {"parts": [{"text": system}]}
    return row


GOOD = [pair(i, ("billing", "shipping", "account")[i % 3]) for i in range(6)]
E = lambda kind, line=None: {"kind": kind, "line": line}  # noqa: E731

# -- supervised: structure ------------------------------------------------------------------------------------
with open(os.path.join(HERE, "sft_json_array.jsonl"), "w") as f:
    json.dump(GOOD, f)
case("json_array", {"train": "sft_json_array.jsonl"}, "supervised", [E("json_array", 1)])
with open(os.path.join(HERE, "sft_bom.jsonl"), "wb") as f:
    f.write(b"\xef\xbb\xbf" + b"\n".join(json.dumps(r).encode() for r in GOOD) + b"\n")
case("bom", {"train": "sft_bom.jsonl"}, "supervised", [E("bom", 1)])
train_case(
    "invalid_utf8",
    "sft_invalid_utf8.jsonl",
    [GOOD[0], b'{"input_text": "caf\xe9", "output_text": "x"}', GOOD[1]],
    "supervised",
    [E("invalid_utf8", 2)],
)
train_case(
    "invalid_json",
    "sft_invalid_json.jsonl",
    [GOOD[0], GOOD[1], '{"input_text": "a", "output_text": '],
    "supervised",
    [E("invalid_json", 3)],
)
train_case(
    "not_object",
    "sft_not_object.jsonl",
    [GOOD[0], "[1, 2]", '"text"'],
    "supervised",
    [E("not_object", 2), E("not_object", 3)],
)
train_case("blank_line", "sft_blank_line.jsonl", [GOOD[0], "", GOOD[1]], "supervised", [E("blank_line", 2)])
train_case(
    "missing_output", "sft_missing_output.jsonl", [{"input_text": "hello"}], "supervised", [E("missing_field", 1)]
)
train_case(
    "wrong_type",
    "sft_wrong_type.jsonl",
    [GOOD[0], {"input_text": "a", "output_text": 5}],
    "supervised",
    [E("wrong_type", 2)],
)
train_case(
    "null_text",
    "sft_null_text.jsonl",
    [{"input_text": None, "output_text": "b"}],
    "supervised",
    [E("wrong_type", 1)],
)
train_case(
    "empty_text",
    "sft_empty_text.jsonl",
    [GOOD[0], {"input_text": "  \n ", "output_text": "b"}],
    "supervised",
    [E("empty_text", 2)],
)
train_case(
    "unknown_field", "sft_unknown_field.jsonl", [dict(GOOD[0], label="x")], "supervised", [E("unknown_field", 1)]
)
train_case(
    "unknown_format",
    "sft_unknown_format.jsonl",
    [{"prompt": "a", "completion": "b"}],
    "supervised",
    [E("unknown_format", 1)],
)
train_case(
    "mixed_formats",
    "sft_mixed_formats.jsonl",
    [GOOD[0], chat(("user", "a"), ("model", "b"))],
    "supervised",
    [E("mixed_formats", 2)],
)
train_case("empty_file", "sft_empty_file.jsonl", [], "supervised", [E("empty_file")])
case("missing_file", {"train": "does_not_exist.jsonl"}, "supervised", [E("file_unreadable")])

# -- supervised: quality --------------------------------------------------------------------------------------
train_case("duplicate", "sft_duplicate.jsonl", [GOOD[0], GOOD[1], GOOD[0]], "supervised", [E("duplicate", 3)])
train_case(
    "conflicting_duplicate",
    "sft_conflicting.jsonl",
    [GOOD[0], GOOD[1], dict(GOOD[0], output_text="shipping")],
    "supervised",
    [E("conflicting_duplicate", 3)],
)
case(
    "train_validation_overlap",
    {
        "train": write("sft_overlap_train.jsonl", GOOD),
        "validation": write("sft_overlap_validation.jsonl", [GOOD[2]]),
    },
    "supervised",
    [E("train_validation_overlap", 3)],
)
train_case(
    "too_few_examples", "sft_too_few.jsonl", GOOD, "supervised", [E("too_few_examples")], task="classification"
)
train_case(
    "class_not_in_instruction",
    "sft_class_not_listed.jsonl",
    GOOD + [pair(7, "refunds")],
    "supervised",
    [E("class_not_in_instruction", 7)],
    task="classification",
)
train_case(
    "rare_class",
    "sft_rare_class.jsonl",
    [pair(i, "billing") for i in range(20)] + [pair(99, "account")],
    "supervised",
    [E("rare_class")],
    task="classification",
)
train_case(
    "instruction_inconsistent",
    "sft_inconsistent.jsonl",
    GOOD + [{"input_text": "Which team handles this? case 9", "output_text": "billing"}],
    "supervised",
    [E("instruction_inconsistent"), E("instruction_inconsistent", 7)],
)
QA = "Answer from the context.\ncontext: The parcel left Lyon on Monday.\nquestion: Where did it leave from?"
train_case(
    "answer_not_in_context",
    "sft_qa_not_substring.jsonl",
    [{"input_text": QA, "output_text": "Lyon"}, {"input_text": QA, "output_text": "Paris"}],
    "supervised",
    [E("answer_not_in_context", 2)],
    task="extractive_qa",
)
train_case(
    "missing_context",
    "sft_qa_missing_context.jsonl",
    [{"input_text": "question: where?", "output_text": "Lyon"}],
    "supervised",
    [E("missing_context", 1)],
    task="extractive_qa",
)
case(
    "validation_too_large",
    {
        "train": write("sft_small_train.jsonl", GOOD),
        "validation": write(
            "sft_validation_5001.jsonl", [{"input_text": f"q{i}", "output_text": "a"} for i in range(5001)]
        ),
    },
    "supervised",
    [E("validation_too_large")],
)
train_case(
    "too_many_tokens",
    "sft_too_many_tokens.jsonl",
    [{"input_text": "word " * 120_000, "output_text": "a"}],
    "supervised",
    [E("too_many_tokens", 1)],
)
train_case(
    "near_token_limit",
    "sft_near_token_limit.jsonl",
    [{"input_text": "word " * 90_000, "output_text": "a"}],
    "supervised",
    [E("near_token_limit", 1)],
)

# -- chat -----------------------------------------------------------------------------------------------------
train_case(
    "chat_system_not_first",
    "chat_system_not_first.jsonl",
    [chat(("user", "a"), ("system", "be brief"), ("model", "b"))],
    "supervised",
    [E("role_order", 1)],
)
train_case(
    "chat_not_alternating",
    "chat_not_alternating.jsonl",
    [chat(("user", "a"), ("user", "b"), ("model", "c"))],
    "supervised",
    [E("role_order", 1)],
)
train_case(
    "chat_ends_with_user",
    "chat_ends_with_user.jsonl",
    [chat(("user", "a"), ("model", "b"), ("user", "c"))],
    "supervised",
    [E("last_turn", 1)],
)
train_case(
    "chat_invalid_role",
    "chat_invalid_role.jsonl",
    [chat(("user", "a"), ("bot", "b"))],
    "supervised",
    [E("invalid_role", 1)],
)
train_case(
    "chat_messages_not_list",
    "chat_messages_not_list.jsonl",
    [{"messages": "hello"}],
    "supervised",
    [E("wrong_type", 1)],
)
train_case(
    "chat_missing_content",
    "chat_missing_content.jsonl",
    [{"messages": [{"role": "user"}, {"role": "model", "content": "b"}]}],
    "supervised",
    [E("missing_field", 1)],
)

# -- Gemini contents -------------------------------------------------------------------------------------------
FILE_PART = lambda uri, mime="image/png": {"fileData": {"mimeType": mime, "fileUri": uri}}  # noqa: E731
train_case(
    "gemini_file_uri_not_gcs",
    "gemini_file_uri_not_gcs.jsonl",
    [gemini(("user", [FILE_PART("https://example.com/a.png"), {"text": "what?"}]), ("model", "a cat"))],
    "supervised",
    [E("file_uri_not_gcs", 1)],
)
train_case(
    "gemini_invalid_file_data",
    "gemini_invalid_file_data.jsonl",
    [gemini(("user", [{"fileData": {"fileUri": "gs://b/a.png"}}]), ("model", "a cat"))],
    "supervised",
    [E("invalid_file_data", 1)],
)
train_case(
    "gemini_system_role_in_contents",
    "gemini_system_role.jsonl",
    [gemini(("system", "be brief"), ("user", "a"), ("model", "b"))],
    "supervised",
    [E("invalid_role", 1)],
)
train_case(
    "gemini_starts_with_model",
    "gemini_starts_with_model.jsonl",
    [gemini(("model", "hi"), ("user", "a"), ("model", "b"))],
    "supervised",
    [E("role_order", 1)],
)
train_case(
    "gemini_ends_with_user",
    "gemini_ends_with_user.jsonl",
    [gemini(("user", "a"), ("model", "b"), ("user", "c"))],
    "supervised",
    [E("last_turn", 1)],
)
train_case(
    "gemini_part_without_text",
    "gemini_part_without_text.jsonl",
    [gemini(("user", [{"inlineData": {}}]), ("model", "b"))],
    "supervised",
    [E("missing_field", 1)],
)
train_case(
    "gemini_bad_system_instruction",
    "gemini_bad_system_instruction.jsonl",
    [dict(gemini(("user", "a"), ("model", "b")), systemInstruction="be brief")],
    "supervised",
    [E("wrong_type", 1)],
)
train_case(
    "gemini_empty_turn",
    "gemini_empty_turn.jsonl",
    [gemini(("user", "a"), ("model", ""))],
    "supervised",
    [E("empty_text", 1)],
)
train_case(
    "gemini_text_not_string",
    "gemini_text_not_string.jsonl",
    [gemini(("user", [{"text": ["a"]}]), ("model", "b"))],
    "supervised",
    [E("wrong_type", 1)],
)
train_case(
    "gemini_unknown_part_field",
    "gemini_unknown_part_field.jsonl",
    [gemini(("user", [{"text": "a", "thought": True}]), ("model", "b"))],
    "supervised",
    [E("unknown_field", 1)],
)

# -- distillation ---------------------------------------------------------------------------------------------
train_case(
    "distill_truncated_input",
    "distill_truncated_input.jsonl",
    [{"input_text": "word " * 6_000, "output_text": "a"}],
    "distillation",
    [E("truncated_input", 1)],
)
train_case(
    "distill_truncated_output",
    "distill_truncated_output.jsonl",
    [{"input_text": "q", "output_text": "word " * 1_000}],
    "distillation",
    [E("truncated_output", 1)],
)
train_case(
    "distill_few_unlabelled",
    "distill_few_unlabelled.jsonl",
    [{"input_text": f"q {i}"} for i in range(5)],
    "distillation",
    [E("few_unlabelled")],
)
train_case(
    "distill_labelled_mix",
    "distill_labelled_mix.jsonl",
    [{"input_text": "q 1"}, {"input_text": "q 2", "output_text": "a"}],
    "distillation",
    [E("labelled_mix")],
)
train_case(
    "distill_output_wrong_type",
    "distill_output_wrong_type.jsonl",
    [{"input_text": "q", "output_text": ["a"]}],
    "distillation",
    [E("wrong_type", 1)],
)

# -- human preference and RLHF prompts --------------------------------------------------------------------------
PREF = {"input_text": "Say hi", "candidate_0": "Hi!", "candidate_1": "Go away.", "choice": 0}
train_case(
    "pref_invalid_choice",
    "pref_invalid_choice.jsonl",
    [PREF, dict(PREF, choice=2)],
    "preference",
    [E("invalid_choice", 2)],
)
train_case(
    "pref_choice_string",
    "pref_choice_string.jsonl",
    [dict(PREF, choice="1")],
    "preference",
    [E("invalid_choice", 1)],
)
train_case(
    "pref_identical_candidates",
    "pref_identical.jsonl",
    [dict(PREF, candidate_1="Hi! ")],
    "preference",
    [E("identical_candidates", 1)],
)
train_case(
    "pref_missing_candidate",
    "pref_missing_candidate.jsonl",
    [PREF, {"input_text": "x", "candidate_0": "a", "choice": 1}],
    "preference",
    [E("missing_field", 2)],
)
train_case(
    "pref_messages_end_with_assistant",
    "pref_messages_end.jsonl",
    [
        {
            "messages": [{"author": "user", "content": "a"}, {"author": "assistant", "content": "b"}],
            "candidate_0": "x",
            "candidate_1": "y",
            "choice": 1,
        }
    ],
    "preference",
    [E("last_turn", 1)],
)
train_case(
    "rlhf_prompt_empty",
    "rlhf_prompt_empty.jsonl",
    [{"input_text": "Say hi"}, {"input_text": ""}],
    "preference",
    [E("empty_text", 2)],
    format="prompt",
)


# -- Gemini preference ----------------------------------------------------------------------------------------
def completion(score: int, text: str) -> dict:
    return {"score": score, "completion": {"role": "model", "parts": [{"text": text}]}}


def gpref(*turns, completions=None):
    row = gemini(*turns)
    row["completions"] = (
        completions if completions is not None else [completion(1, "Hi!"), completion(0, "Go away.")]
    )
    return row


train_case(
    "gpref_ends_with_model",
    "gpref_ends_with_model.jsonl",
    [gpref(("user", "a"), ("model", "b"))],
    "preference",
    [E("last_turn", 1)],
)
train_case(
    "gpref_file_data",
    "gpref_file_data.jsonl",
    [gpref(("user", [FILE_PART("gs://b/a.png")]))],
    "preference",
    [E("text_only", 1)],
)
train_case(
    "gpref_one_completion",
    "gpref_one_completion.jsonl",
    [
        gpref(
            ("user", "a"),
            completions=[completion(1, "x")],
        )
    ],
    "preference",
    [E("invalid_completions", 1)],
)
train_case(
    "gpref_same_score",
    "gpref_same_score.jsonl",
    [
        gpref(
            ("user", "a"),
            completions=[
                completion(1, "x"),
                completion(1, "y"),
            ],
        )
    ],
    "preference",
    [E("invalid_completions", 1)],
)
train_case(
    "gpref_identical",
    "gpref_identical.jsonl",
    [
        gpref(
            ("user", "a"),
            completions=[
                completion(1, "x"),
                completion(0, "x"),
            ],
        )
    ],
    "preference",
    [E("identical_candidates", 1)],
)

# -- embedding sets ---------------------------------------------------------------------------------------------
CORPUS = write(
    "emb_corpus.jsonl",
    [{"_id": "d1", "title": "Refunds", "text": "How refunds work."}, {"_id": "d2", "text": "Shipping times."}],
)
QUERIES = write(
    "emb_queries.jsonl", [{"_id": "q1", "text": "how do refunds work"}, {"_id": "q2", "text": "when will it ship"}]
)
TRAIN = write("emb_train.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t1"])


def emb(name, expect, **files):
    case(name, {"corpus": CORPUS, "queries": QUERIES, "train_labels": TRAIN, **files}, "embedding", expect)


emb("emb_missing_header", [E("missing_header", 1)], train_labels=write("emb_no_header.tsv", ["q1\td1\t1"]))
emb(
    "emb_unknown_query",
    [E("unknown_query_id", 3)],
    train_labels=write("emb_unknown_query.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q9\td1\t1"]),
)
emb(
    "emb_unknown_corpus",
    [E("unknown_corpus_id", 2)],
    train_labels=write("emb_unknown_corpus.tsv", ["query-id\tcorpus-id\tscore", "q1\td7\t1"]),
)
emb(
    "emb_negative_score",
    [E("invalid_score", 2)],
    train_labels=write("emb_negative_score.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t-1"]),
)
emb(
    "emb_score_not_number",
    [E("invalid_score", 2)],
    train_labels=write("emb_score_text.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\thigh"]),
)
emb(
    "emb_bad_tsv_row",
    [E("invalid_tsv_row", 2)],
    train_labels=write("emb_bad_row.tsv", ["query-id\tcorpus-id\tscore", "q1 d1 1"]),
)
emb(
    "emb_duplicate_corpus_id",
    [E("duplicate_id", 2)],
    corpus=write(
        "emb_duplicate_id.jsonl",
        [{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}, {"_id": "d2", "text": "c"}],
    ),
)
emb(
    "emb_query_missing_text",
    [E("missing_field", 2)],
    queries=write("emb_query_missing_text.jsonl", [{"_id": "q1", "text": "a"}, {"_id": "q2"}]),
)
emb(
    "emb_test_overlaps_train",
    [E("train_validation_overlap", 2)],
    test_labels=write("emb_test_overlap.tsv", ["query-id\tcorpus-id\tscore", "q1\td1\t1"]),
)
emb("emb_missing_train_labels", [E("missing_file")], train_labels="")

with open(os.path.join(HERE, "manifest.json"), "w") as f:
    json.dump(CASES, f, indent=1)
print(f"{len(CASES)} cases")
