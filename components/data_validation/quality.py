"""Dataset-level quality signals computed in one streaming pass with bounded memory.

- Length distributions: log-scale histograms (about 3% bucket width), so percentiles cost constant memory.
- Instruction templates: a signature per prompt (its instruction line and the order of its ``label:`` sections),
  counted in a capped counter; the dominant one is what prediction-time prompts must carry.
- Classes: the class list an instruction gives (``... one of: a, b or c``), and the label distribution.
- Extractive QA: the ``context:`` section of a prompt, which the answer must be a substring of.
- Duplicates: one 8-byte record per row (a 32-bit hash of the input, the 32-bit line number), sorted at the end;
  candidate groups are confirmed on a second pass that parses only their lines.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter

#: Distinct template signatures / labels counted exactly; beyond this, new ones are counted as "other".
MAX_DISTINCT = 10_000
MAX_LABELS = 1_000
#: Examples of each signature kept to point at when it is not the dominant one.
LINES_PER_SIGNATURE = 3


class Histogram:
    """Counts of non-negative integers in log-scale buckets: exact below 64, then 32 buckets per doubling."""

    def __init__(self):
        self.buckets = [0] * 1200
        self.count = 0
        self.total = 0
        self.max = 0

    def add(self, n: int) -> None:
        """Counts ``n``."""
        if n < 64:
            self.buckets[n] += 1
        else:
            b = n.bit_length()
            index = 64 + (b - 7) * 32 + ((n >> (b - 6)) & 31)
            self.buckets[min(index, 1199)] += 1
        self.count += 1
        self.total += n
        if n > self.max:
            self.max = n

    @staticmethod
    def lower_bound(index: int) -> int:
        """The smallest value counted in bucket ``index``."""
        if index < 64:
            return index
        k = index - 64
        return (32 + k % 32) << (k // 32 + 1)

    def percentile(self, q: float) -> int:
        """The ``q``-th percentile (0-100), to within a bucket's width."""
        if not self.count:
            return 0
        rank = max(1, int(round(q / 100 * self.count)))
        seen = 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return min(self.lower_bound(index), self.max)
        return self.max

    def nonzero(self) -> list[tuple[int, int]]:
        """``(lower bound, count)`` of every non-empty bucket."""
        return [(self.lower_bound(i), n) for i, n in enumerate(self.buckets) if n]

    def summary(self) -> dict:
        """Count, mean, percentiles and max."""
        return {
            "count": self.count,
            "mean": round(self.total / self.count, 1) if self.count else 0,
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "max": self.max,
        }


_LABEL = re.compile(r"[ \t]*[A-Za-z][A-Za-z0-9 _-]{0,30}$")
#: How much of a prompt the template and class heuristics look at: instructions come first.
HEAD = 2048


def template_signature(prompt: str) -> tuple:
    r"""The shape of a prompt's instruction: its first line up to a colon (or first 4 words) and its sections.

    Two prompts built from one template (``Classify ...: a, b or c\\nMessage: ...\\nTeam:``) share a signature
    whatever their content; prompts that drop or reorder the instruction or a section do not.
    """
    size = min(len(prompt), HEAD)
    begin = 0
    while begin < size and prompt[begin] in " \t\r\n":
        begin += 1
    newline = prompt.find("\n", begin, size)
    first = prompt[begin : newline if newline >= 0 else size]
    colon = first.find(":")
    if 0 < colon <= 120:
        lead = first[:colon].strip().lower()
    else:
        lead = " ".join(first[:200].split()[:4]).lower()
    sections = []
    # Only lines with a colon near their start can open a section; finding those first avoids a regex scan of
    # every prompt's whole text (and copies of it).
    start = 0
    match = _LABEL.match
    while start < size:
        end = prompt.find("\n", start, size)
        if end < 0:
            end = size
        colon = prompt.find(":", start, min(end, start + 34))
        if colon > start and match(prompt, start, colon):
            sections.append(prompt[start:colon].strip().lower())
        start = end + 1
    return (lead, tuple(sections))


class Templates:
    """Counts template signatures with bounded memory and names the dominant one."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.lines: dict = {}
        self.other = 0
        self.total = 0

    def add(self, signature: tuple, line: int) -> None:
        """Counts one prompt's signature."""
        self.total += 1
        counts = self.counts
        if signature in counts:
            counts[signature] += 1
            kept = self.lines[signature]
            if len(kept) < LINES_PER_SIGNATURE:
                kept.append(line)
        elif len(counts) < MAX_DISTINCT:
            counts[signature] = 1
            self.lines[signature] = [line]
        else:
            self.other += 1

    def dominant(self) -> tuple[tuple | None, float]:
        """The most common signature and its share of prompts."""
        if not self.counts:
            return None, 0.0
        signature, n = self.counts.most_common(1)[0]
        return signature, n / self.total

    def deviating_lines(self, limit: int) -> list[tuple[int, tuple]]:
        """Up to ``limit`` ``(line, signature)`` of prompts without the dominant signature, in line order."""
        dominant, _ = self.dominant()
        found = [(line, sig) for sig, lines in self.lines.items() if sig != dominant for line in lines]
        return sorted(found)[:limit]


_CLASS_LIST = re.compile(
    r"(?i)\b(?:classes|labels|categories|options|choices|one of(?: the following)?(?: \w+)?|one \w+|answer with)"
    r"\s*(?:\([^)\n]*\))?\s*[:\-]\s*([^\n]+)"
)
_SPLIT = re.compile(r"\s*(?:,|\||/|;|\bor\b)\s*")


#: Where a one-line list of classes ends: a ``Text:``-like section label after it on the same line.
_NEXT_SECTION = re.compile(r"(?:[.;]\s*|\s+)(?=[A-Z][A-Za-z]{0,20}(?: [A-Za-z]{1,20})?\s*:)")


def class_list(prompt: str) -> tuple[str, ...] | None:
    """The classes an instruction lists, lower-cased.

    On their own line (``... one team: billing, technical or account``) or on one line with the text, as in
    Google's tuning guides (``Classify the following text into one of the following classes: [business,
    entertainment] Text: 5 stocks to buy now``): a ``[...]`` list, or the list up to the next ``Label:``.
    """
    match = _CLASS_LIST.search(prompt[:HEAD])
    if not match:
        return None
    listed = match.group(1).strip()
    if listed.startswith("[") and "]" in listed:
        listed = listed[1 : listed.index("]")]
    else:
        end = _NEXT_SECTION.search(listed)
        if end:
            listed = listed[: end.start()]
    items = [normalise_label(item) for item in _SPLIT.split(listed)]
    items = [item for item in items if item and len(item.split()) <= 4]
    return tuple(items) if len(items) >= 2 else None


def normalise_label(text: str) -> str:
    """A label as compared with the class list: trimmed of spaces, quotes and final punctuation, lower-cased."""
    return text.strip().strip("\"'`*[](){}").rstrip(".!").strip().lower()


_CONTEXT = re.compile(r"(?i)(?:^|\n)[ \t]*context[ \t]*:")
#: ``context:`` inside a line, as in the one-line ``question: ... context: ...`` prompts of Google's guides.
_INLINE_CONTEXT = re.compile(r"(?i)(?:^|\s)context[ \t]*:")
_AFTER_CONTEXT = re.compile(r"(?i)\n[ \t]*(?:question|q|answer|a)[ \t]*:|\s(?:question|answer)[ \t]*:")


def qa_context(prompt: str) -> str | None:
    """The ``context:`` section of an extractive-QA prompt (up to a following ``question:``/``answer:``).

    The section starts a line (``Context: ...`` then ``Question: ...`` on the next line) or follows on the same line
    (``question: ... context: ...``).
    """
    match = _CONTEXT.search(prompt) or _INLINE_CONTEXT.search(prompt)
    if not match:
        return None
    rest = prompt[match.end() :]
    end = _AFTER_CONTEXT.search(rest)
    return rest[: end.start()] if end else rest


class DuplicateIndex:
    """One 8-byte record per row: the 32-bit hash of its input key and its line number.

    The hash is Python's (randomised per process, 64 bits, cut to 32): only rows hashed in this process are
    compared. Equal hashes are candidates; the caller confirms them on a second pass.
    """

    def __init__(self):
        self.records = array("Q")
        self.too_many_lines = False

    def add(self, key: str, line: int) -> None:
        """Records the row on ``line`` with input key ``key``."""
        if line >= 1 << 32:
            self.too_many_lines = True
            return
        self.records.append(((hash(key) & 0xFFFFFFFF) << 32) | line)

    def candidate_lines(self, limit: int) -> list[int]:
        """Lines whose input hash equals another row's (at most ``limit``), sorted."""
        import numpy as np  # only here: the sort is the one vectorised step

        if len(self.records) < 2:
            return []
        keys = np.frombuffer(self.records, dtype=np.uint64)
        keys.sort()  # in place: no copy of the records
        found: list[int] = []
        chunk = 1 << 16
        mask = np.uint64(0xFFFFFFFF)
        shift = np.uint64(32)
        for start in range(0, len(keys) - 1, chunk):
            window = keys[start : start + chunk + 1]
            hashes = window >> shift
            same = hashes[1:] == hashes[:-1]
            if not same.any():
                continue
            positions = np.flatnonzero(same)
            lines = set((window[positions] & mask).tolist()) | set((window[positions + 1] & mask).tolist())
            found.extend(lines)
            if len(found) >= limit:
                break
        self.records = array("Q")  # sorted now, no longer needed
        return sorted(set(found))[:limit]
