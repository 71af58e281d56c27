"""The validation report: findings, counts by kind, summary statistics; as JSON, HTML, KFP metrics and text.

The HTML is self-contained (inline CSS and SVG, no external assets), so Vertex AI's pipeline UI shows it as is.
"""

from __future__ import annotations

import html
import json

from tunekit.components.common.state import write_text
from tunekit.components.data_validation.findings import ERROR, INFO, SEVERITIES, WARNING, Finding, Findings

_SEVERITY_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


class Report:
    """The result of validating one run's files.

    Attributes:
        method: The tuning method validated for.
        task: The task (``generic`` when none was given).
        model: The base model, if given.
        strict: Whether warnings fail validation.
        findings_collector: The findings collector (exact counts; the first findings of each kind in detail).
        summary: Statistics: ``files`` -> role -> rows, format, token estimates, labels...; ``notes``.
        distributions: role -> ``input_tokens``/``output_tokens`` (bucket, count) lists and ``labels``.
        unreadable: Whether a file could not be read at all (the CLI exits 2).
    """

    def __init__(
        self, *, method: str, task: str, model: str | None, strict: bool, findings: Findings | None = None
    ):
        self.method = method
        self.task = task
        self.model = model
        self.strict = strict
        self.findings_collector = findings if findings is not None else Findings()
        self.summary = {}
        self.distributions = {}
        self.unreadable = False

    @property
    def findings(self) -> list[Finding]:
        """The findings kept in detail, errors first, then by file and line."""
        return sorted(
            self.findings_collector.kept,
            key=lambda f: (_SEVERITY_RANK[f.severity], f.path, f.line or 0, f.kind),
        )

    def counts_by_kind(self) -> dict[str, int]:
        """Every finding counted by kind (including those not kept in detail)."""
        return dict(sorted(self.findings_collector.counts.items()))

    @property
    def errors(self) -> int:
        """The number of errors."""
        return self.findings_collector.count(ERROR)

    @property
    def warnings(self) -> int:
        """The number of warnings."""
        return self.findings_collector.count(WARNING)

    @property
    def ok(self) -> bool:
        """No errors, and no warnings when strict."""
        return self.errors == 0 and not (self.strict and self.warnings)

    def to_dict(self) -> dict:
        """The whole report as a JSON-ready dict."""
        return {
            "ok": self.ok,
            "method": self.method,
            "task": self.task,
            "model": self.model,
            "strict": self.strict,
            "errors": self.errors,
            "warnings": self.warnings,
            "infos": self.findings_collector.count(INFO),
            "counts_by_kind": self.counts_by_kind(),
            "severity_by_kind": dict(sorted(self.findings_collector.severity_of.items())),
            "token_counts": "estimates (about 4 characters per token) unless a finding says 'counted'",
            "summary": self.summary,
            "distributions": self.distributions,
            "findings": [f.to_dict() for f in self.findings],
        }

    def write_json(self, path: str) -> None:
        """Writes :meth:`to_dict` to ``path`` whole (:func:`~tunekit.components.common.state.write_text`)."""
        write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str))

    def metrics(self) -> dict[str, float]:
        """Counts for KFP Metrics: errors, warnings, rows per file and findings per kind."""
        values: dict[str, float] = {
            "ok": float(self.ok),
            "errors": float(self.errors),
            "warnings": float(self.warnings),
        }
        for role, stats in self.summary.get("files", {}).items():
            if "rows" in stats:
                values[f"{role}_rows"] = float(stats["rows"])
                values[f"{role}_valid_rows"] = float(stats.get("valid_rows", 0))
        for kind, n in self.counts_by_kind().items():
            values[f"findings_{kind}"] = float(n)
        return values

    def text_summary(self, *, per_kind: int = 2, report_path: str | None = None) -> str:
        """A short summary for a terminal: files, verdict, the first findings of each kind."""
        out = []
        for role, stats in self.summary.get("files", {}).items():
            if "rows" not in stats:
                out.append(f"{role}: {stats.get('path', '')}: not read")
                continue
            tokens = stats.get("input_tokens_estimate", {})
            out.append(
                f"{role}: {stats['path']}: {stats.get('format') or 'unknown format'}, {stats['rows']:,} rows "
                f"({stats.get('valid_rows', 0):,} valid); input tokens p50 {tokens.get('p50', 0):,}, "
                f"max {tokens.get('max', 0):,} (estimates)"
            )
        counts = self.counts_by_kind()
        by_kind: dict[str, list[Finding]] = {}
        for finding in self.findings:
            by_kind.setdefault(finding.kind, []).append(finding)
        for kind, found in by_kind.items():
            out.append(f"{found[0].severity} {kind} ({counts.get(kind, len(found)):,}):")
            out.extend("  " + f.format() for f in found[:per_kind])
        verdict = "VALID" if self.ok else "INVALID"
        why = " (strict: warnings fail)" if self.strict and self.errors == 0 and self.warnings else ""
        out.append(f"{verdict}{why}: {self.errors:,} errors, {self.warnings:,} warnings")
        if report_path:
            out.append(f"full report: {report_path}")
        return "\n".join(out)

    def render_html(self) -> str:
        """A self-contained HTML page: verdict, files, counts by kind, findings table, length and label plots."""
        esc = html.escape
        verdict = "valid" if self.ok else "invalid"
        parts = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>tunekit data validation</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>Data validation: <span class='{verdict}'>{verdict.upper()}</span></h1>",
            f"<p>Method <b>{esc(self.method)}</b>, task <b>{esc(self.task)}</b>, model <b>{esc(self.model or '-')}</b>"
            f"{', strict' if self.strict else ''}: {self.errors:,} errors, {self.warnings:,} warnings. "
            "Token counts are estimates unless a finding says they were counted.</p>",
            "<h2>Files</h2><table><tr><th>role</th><th>file</th><th>format</th><th>rows</th><th>valid</th>"
            "<th>labelled</th><th>input tokens p50 / p90 / max</th><th>output tokens p50 / p90 / max</th>"
            "<th>duplicates</th></tr>",
        ]
        for role, stats in self.summary.get("files", {}).items():
            tin = stats.get("input_tokens_estimate", {})
            tout = stats.get("output_tokens_estimate", {})
            parts.append(
                f"<tr><td>{esc(role)}</td><td>{esc(str(stats.get('path', '')))}</td>"
                f"<td>{esc(str(stats.get('format') or '-'))}</td><td>{stats.get('rows', 0):,}</td>"
                f"<td>{stats.get('valid_rows', 0):,}</td><td>{stats.get('labelled_rows', '-')}</td>"
                f"<td>{tin.get('p50', '-')} / {tin.get('p90', '-')} / {tin.get('max', '-')}</td>"
                f"<td>{tout.get('p50', '-')} / {tout.get('p90', '-')} / {tout.get('max', '-')}</td>"
                f"<td>{stats.get('duplicates', '-')}</td></tr>"
            )
        parts.append("</table>")
        counts = self.counts_by_kind()
        if counts:
            parts.append("<h2>Findings by kind</h2><table><tr><th>kind</th><th>severity</th><th>count</th></tr>")
            for kind, n in counts.items():
                severity = self.findings_collector.severity_of.get(kind, "")
                parts.append(f"<tr class='{severity}'><td>{esc(kind)}</td><td>{severity}</td><td>{n:,}</td></tr>")
            parts.append("</table>")
        for note in self.summary.get("notes", []):
            parts.append(f"<p class='note'>{esc(note)}</p>")
        parts.append("<h2>Distributions</h2><div class='plots'>")
        for role, dists in self.distributions.items():
            for name in ("input_tokens", "output_tokens"):
                if dists.get(name):
                    parts.append(_histogram_svg(f"{role}: {name.replace('_', ' ')} (estimate)", dists[name]))
            if dists.get("labels"):
                parts.append(_bars_svg(f"{role}: label distribution", dists["labels"]))
        parts.append("</div>")
        findings = self.findings
        if findings:
            parts.append(
                f"<h2>Findings</h2><p>The first {self.findings_collector.keep_per_kind} of each kind.</p>"
                "<table><tr><th>severity</th><th>kind</th><th>file</th><th>line</th><th>field</th>"
                "<th>what is wrong</th><th>what to do</th></tr>"
            )
            for f in findings:
                parts.append(
                    f"<tr class='{f.severity}'><td>{f.severity}</td><td>{esc(f.kind)}</td><td>{esc(f.path)}</td>"
                    f"<td>{f.line or ''}</td><td>{esc(f.field or '')}</td><td>{esc(f.message)}</td>"
                    f"<td>{esc(f.hint)}</td></tr>"
                )
            parts.append("</table>")
        parts.append("</body></html>")
        return "".join(parts)


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}.valid{color:#1a7f37}.invalid{color:#c62828}"
    "tr.error td:first-child{color:#c62828;font-weight:bold}tr.warning td:first-child{color:#b26a00}"
    ".plots{display:flex;flex-wrap:wrap;gap:16px}.note{color:#555}svg text{font-size:11px;fill:#333}"
)


def _octaves(buckets: list) -> list[tuple[str, int]]:
    """Regroups fine log buckets into bars of one doubling each: ``0``, ``1``, ``2-3``, ``4-7``..."""
    bars: dict[int, int] = {}
    for low, n in buckets:
        low = int(low)
        octave = low.bit_length()
        bars[octave] = bars.get(octave, 0) + int(n)
    if not bars:
        return []
    out = []
    for octave in range(min(bars), max(bars) + 1):
        start = 0 if octave == 0 else 1 << (octave - 1)
        end = 0 if octave == 0 else (1 << octave) - 1
        label = str(start) if start == end else f"{start:,}-{end:,}"
        out.append((label, bars.get(octave, 0)))
    return out


def _histogram_svg(title: str, buckets: list) -> str:
    bars = _octaves(buckets)
    width, height, pad = 420, 200, 30
    top = max((n for _, n in bars), default=1) or 1
    step = (width - 2 * pad) / max(len(bars), 1)
    items = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 60}' role='img'>",
        f"<text x='{pad}' y='14'>{html.escape(title)}</text>",
    ]
    for index, (label, n) in enumerate(bars):
        h = (height - 40) * n / top
        x = pad + index * step
        items.append(
            f"<rect x='{x:.1f}' y='{height - h:.1f}' width='{max(step - 2, 1):.1f}' height='{h:.1f}' fill='#4a78c2'>"
            f"<title>{html.escape(label)} tokens: {n:,}</title></rect>"
        )
        items.append(
            f"<text transform='translate({x + step / 2:.1f},{height + 6}) rotate(60)'>{html.escape(label)}</text>"
        )
    items.append("</svg>")
    return "".join(items)


def _bars_svg(title: str, labels: list) -> str:
    rows = labels[:30]
    width, row_h, pad = 420, 16, 130
    top = max((int(n) for _, n in rows), default=1) or 1
    items = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{24 + row_h * len(rows)}' role='img'>",
        f"<text x='4' y='14'>{html.escape(title)}</text>",
    ]
    for index, (label, n) in enumerate(rows):
        y = 20 + index * row_h
        w = (width - pad - 50) * int(n) / top
        items.append(f"<text x='4' y='{y + 11}'>{html.escape(str(label)[:20])}</text>")
        items.append(f"<rect x='{pad}' y='{y}' width='{w:.1f}' height='{row_h - 3}' fill='#5aa469'/>")
        items.append(f"<text x='{pad + w + 4:.1f}' y='{y + 11}'>{int(n):,}</text>")
    items.append("</svg>")
    return "".join(items)
