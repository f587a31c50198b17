"""A small parser for the Prometheus text exposition format (version 0.0.4).

Only what exporters emit is needed: ``# HELP``/``# TYPE`` comments, samples
``name{label="value",…} value [timestamp]`` with escaped label values and NaN/±Inf.
Written here rather than depending on prometheus_client, to keep the agent's footprint small.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^(?P<name>{_NAME})\s*(?:\{{(?P<labels>.*)\}})?\s+(?P<rest>\S.*)$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_SEPARATOR = re.compile(r"^-{10,}\s*$")
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class PrometheusParseError(ValueError):
    pass


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    value: float = math.nan


def _parse_labels(text: str, lineno: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _LABEL.match(text, pos)
        if not match:
            raise PrometheusParseError(f"line {lineno}: bad label set {{{text}}}")
        raw = match.group(2)
        labels[match.group(1)] = re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], raw)
        pos = match.end()
    return labels


def _parse_value(text: str, lineno: int) -> float:
    word = text.split()[0]  # an optional timestamp may follow
    special = {"nan": math.nan, "+inf": math.inf, "inf": math.inf, "-inf": -math.inf}
    if word.lower() in special:
        return special[word.lower()]
    try:
        return float(word)
    except ValueError:
        raise PrometheusParseError(f"line {lineno}: bad sample value {word!r}") from None


def parse(text: str, *, strict: bool = True) -> tuple[list[Sample], list[str]]:
    """Samples in order, and the lines skipped as not Prometheus syntax.

    ``strict`` raises on the first such line instead; the collector runs lenient so that
    an exporter's stray line (a title, a banner) costs that line, not the whole scrape.
    """
    samples: list[Sample] = []
    skipped: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            match = _SAMPLE.match(line)
            if not match:
                raise PrometheusParseError(f"line {lineno}: not a sample: {line[:80]!r}")
            labels = _parse_labels(match.group("labels") or "", lineno)
            samples.append(Sample(match.group("name"), labels, _parse_value(match["rest"], lineno)))
        except PrometheusParseError:
            if strict:
                raise
            skipped.append(raw)
    return samples, skipped


def split_scrapes(text: str) -> list[str]:
    """Several scrapes pasted into one file, separated by lines of dashes."""
    parts: list[list[str]] = [[]]
    for line in text.splitlines():
        if _SEPARATOR.match(line):
            parts.append([])
        else:
            parts[-1].append(line)
    return ["\n".join(part) for part in parts if any(s.strip() for s in part)]
