"""The grounding check: every concrete claim in an answer must be in the documentation it was written from.

A claim is something a customer would act on and a model likes to invent: a price, a number with a unit (a
limit, a size, a duration, a percentage), a version, a URL, an error code, a product or plan name. The
answer's claims are extracted and compared with the claims of its support text (the passage, the plan's
persona and system prompts, and what the user said). Comparison is on normalised values, not strings:
"twenty-four hours", "24 hrs" and "24h" are one claim; "1,000 GB" is "1000 GB"; "$2.49" is "2.49 USD". A
price that is a supported price times numbers the answer or the passage states ("8 GPUs at $2.49 = $19.92")
counts as supported: arithmetic on documented figures is not invention.

Pure functions over text; no model calls. Cost per example: bench/README.md ("Grounding").
"""

from __future__ import annotations

import re
from collections.abc import Set
from dataclasses import dataclass
from itertools import combinations_with_replacement

# -- numbers written in words -------------------------------------------------------------------------------
_SMALL = {w: i for i, w in enumerate(
    ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"])}
_TENS = {w: 10 * i for i, w in enumerate(["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]) if i >= 2}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORD = "|".join(sorted([*_SMALL, *_TENS, *_SCALES, "a"], key=len, reverse=True))
_WORD_RUN = re.compile(rf"\b(?:{_NUMBER_WORD})(?:[\s-]+(?:and[\s-]+)?(?:{_NUMBER_WORD}))*\b", re.I)


def _words_value(run: str) -> int | None:
    words = [w for w in re.split(r"[\s-]+", run.lower()) if w and w != "and"]
    if not words or words == ["a"] or (words[0] == "a" and (len(words) == 1 or words[1] not in _SCALES)):
        return None
    total = current = 0
    for w in words:
        if w == "a":
            current = 1
        elif w in _SMALL:
            current += _SMALL[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        else:
            total += max(current, 1) * _SCALES[w]
            current = 0
    return total + current


_NUMBER_WORDS = frozenset([*_SMALL, *_TENS, *_SCALES])


def words_to_digits(text: str) -> str:
    """'twenty-four hours' -> '24 hours', 'one thousand GB' -> '1000 GB' ('a' alone stays a word)."""
    if _NUMBER_WORDS.isdisjoint(re.findall(r"[a-z]+", text.lower())):
        return text  # most texts have no number word: skip the slow alternation scan

    def sub(m: re.Match) -> str:
        value = _words_value(m.group(0))
        return m.group(0) if value is None else str(value)
    return _WORD_RUN.sub(sub, text)


# -- claims ---------------------------------------------------------------------------------------------------
UNITS = {
    "%": "%", "percent": "%", "per cent": "%",
    "gb": "gb", "gigabyte": "gb", "gigabytes": "gb", "tb": "tb", "terabyte": "tb", "terabytes": "tb",
    "mb": "mb", "megabyte": "mb", "megabytes": "mb", "gib": "gib", "tib": "tib", "mib": "mib", "pb": "pb",
    "gbps": "gbps", "gbit/s": "gbps", "gb/s": "gb/s", "mbps": "mbps", "tflops": "tflops",
    "ms": "ms", "millisecond": "ms", "milliseconds": "ms",
    "second": "s", "seconds": "s", "sec": "s", "secs": "s",
    "minute": "min", "minutes": "min", "min": "min", "mins": "min",
    "hour": "h", "hours": "h", "hr": "h", "hrs": "h", "h": "h",
    "day": "d", "days": "d", "week": "wk", "weeks": "wk", "month": "mo", "months": "mo", "year": "yr", "years": "yr",
    "gpu": "gpu", "gpus": "gpu", "vcpu": "vcpu", "vcpus": "vcpu", "cpu": "vcpu", "cpus": "vcpu", "core": "core",
    "cores": "core", "instance": "instance", "instances": "instance", "volume": "volume", "volumes": "volume",
    "request": "request", "requests": "request", "call": "request", "calls": "request", "key": "key", "keys": "key",
    "region": "region", "regions": "region", "seat": "seat", "seats": "seat", "user": "seat", "users": "seat",
    "member": "seat", "members": "seat", "token": "token", "tokens": "token", "snapshot": "snapshot",
    "snapshots": "snapshot", "node": "node", "nodes": "node", "x": "x",
}
# units that measure something: a claim even at 1 ("1 hour" of notice is a policy); counted things at 1
# ("one GPU") are how people talk, not figures to check
_MEASURES = {"%", "gb", "tb", "mb", "gib", "tib", "mib", "pb", "gbps", "gb/s", "mbps", "tflops", "ms", "s", "min", "h",
             "d", "wk", "mo", "yr"}
_NUM = r"\d+(?:,\d{3})*(?:\.\d+)?|\d*\.\d+"
_UNIT_RE = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_MONEY = re.compile(rf"(?P<cur>[$€£])\s?(?P<a>{_NUM})(?P<k>[kKmM]\b)?|(?P<b>{_NUM})\s?(?P<cur2>USD|EUR|GBP|dollars?|cents?)\b", re.I)
_QTY = re.compile(rf"(?<![\w.$€£])(?P<n>{_NUM})\s?(?:-\s?)?(?P<u>{_UNIT_RE})(?![\w])", re.I)
_VERSION = re.compile(r"\bv\d+(?:\.\d+)*\b|\b\d+\.\d+\.\d+\b|(?:\b(?:CUDA|Python|Ubuntu|driver|version) )(?P<v>\d+(?:\.\d+)+)", re.I)
_URL = re.compile(r"\bhttps?://[^\s)\]>\"'`]+|\b(?:[a-z0-9-]+\.)+(?:com|io|dev|ai|net|org|cloud)(?:/[^\s)\]>\"'`]*)?", re.I)
_CODE = re.compile(r"\b(?:HTTP|[Ee]rror|[Ss]tatus|[Cc]ode)\s+(?P<http>[1-5]\d\d)\b|\b(?P<err>[A-Z][A-Z0-9]*_[A-Z0-9_]+|E\d{3,5})\b")
_PRODUCT = re.compile(r"\b(?:[A-Z]{1,4}\d{2,4}[A-Za-z]{0,3}|RTX\s?\d{4}|MI\d{3}X?)\b")
# letter+digit names that are standards, not products a company sells: SHA256, AES256, UTF16, ISO27001, P99
_NOT_PRODUCT = re.compile(r"(?:SHA|AES|UTF|ISO|RFC|TLS|HTTP|IPV|X|P|Q|FP|INT|BF)\d+[A-Za-z]*")
_PLAN = re.compile(r"\b([A-Z][a-zA-Z]+)\s+(?:plan|tier)\b")
_NOT_PLAN = {"The", "This", "That", "Your", "Our", "Each", "Every", "A", "An", "Any", "Which", "What", "Paid",
             "Free", "Pricing", "Billing", "Support", "Payment"}


@dataclass(frozen=True)
class Claim:
    text: str       # as the answer wrote it
    kind: str       # price | quantity | version | url | code | product | plan
    key: tuple      # the normalised value compared with the support's


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def claims(text: str) -> list[Claim]:
    """The concrete claims in a text, normalised (numbers in words read as digits)."""
    t = words_to_digits(text)
    out: list[Claim] = []
    taken: list[tuple[int, int]] = []

    def free(m: re.Match) -> bool:
        return not any(a < m.end() and m.start() < b for a, b in taken)

    for m in _URL.finditer(t):
        url = re.sub(r"^https?://", "", m.group(0).lower()).rstrip("/.,;:")
        out.append(Claim(m.group(0), "url", ("url", url)))
        taken.append(m.span())
    for m in _MONEY.finditer(t):
        if not free(m):
            continue
        if m.group("a") is not None:
            value = _num(m.group("a")) * {"k": 1e3, "m": 1e6}.get((m.group("k") or "").lower(), 1)
        else:
            value = _num(m.group("b")) / (100 if m.group("cur2").lower().startswith("cent") else 1)
        out.append(Claim(m.group(0), "price", ("price", round(value, 4))))
        taken.append(m.span())
    for m in _VERSION.finditer(t):
        if free(m):
            out.append(Claim(m.group(0), "version", ("version", (m.group("v") or m.group(0)).lower().lstrip("v"))))
            taken.append(m.span())
    for m in _CODE.finditer(t):
        if free(m):
            code = m.group("http") or m.group("err")
            out.append(Claim(m.group(0), "code", ("code", code.upper())))
            taken.append(m.span())
    for m in _PRODUCT.finditer(t):
        if free(m) and not _NOT_PRODUCT.fullmatch(m.group(0)):
            out.append(Claim(m.group(0), "product", ("product", re.sub(r"\s", "", m.group(0).upper()))))
            taken.append(m.span())
    for m in _QTY.finditer(t):
        if not free(m):
            continue
        unit = UNITS[m.group("u").lower()]
        value = _num(m.group("n"))
        if unit not in _MEASURES and value <= 1:
            continue
        out.append(Claim(m.group(0), "quantity", ("quantity", value, unit)))
        taken.append(m.span())
    for m in _PLAN.finditer(t):
        if m.group(1) not in _NOT_PLAN and free(m):
            out.append(Claim(m.group(0), "plan", ("plan", m.group(1).lower())))
    return out


class Support:
    """The claims of the text an answer may draw on, ready for many lookups."""

    def __init__(self, text: str):
        self.text = words_to_digits(text)
        self.lower = self.text.lower()
        self.keys = {c.key for c in claims(text)}
        self.prices = sorted({k[1] for k in self.keys if k[0] == "price"})
        self.urls = sorted({k[1].rstrip("/") for k in self.keys if k[0] == "url"}, key=len, reverse=True)
        self.numbers = {_num(n) for n in re.findall(_NUM, self.text)}

    def supports(self, claim: Claim, answer_numbers: Set[float] = frozenset()) -> bool:
        if claim.key in self.keys:
            return True
        kind = claim.kind
        if kind == "quantity":
            # a measured limit stated in the passage without a unit attached ("Max volume size (TB) | 16")
            value, unit = claim.key[1], claim.key[2]
            return value in self.numbers and re.search(rf"\({re.escape(unit)}\)", self.lower) is not None
        if kind in ("product", "code", "plan"):
            word = claim.key[1]
            return re.search(rf"(?<![\w]){re.escape(word.lower())}(?![\w])", re.sub(r"\s", "", self.lower)
                             if kind == "product" else self.lower) is not None
        if kind == "url":  # a documented URL, or a documented base URL + a documented path ("/v2" + "/instances")
            url = claim.key[1]
            return url in self.lower or any(
                url.startswith(base) and (rest := url[len(base):].split("?")[0]).startswith("/") and rest in self.lower
                for base in self.urls)
        if kind == "price":
            return self._derived(claim.key[1], answer_numbers | self.numbers)
        return False

    def _derived(self, value: float, numbers: Set[float]) -> bool:
        """A supported price times one or two stated numbers (a quantity, a number of hours)."""
        factors = [n for n in numbers if 0 < n <= 100_000]
        for price in self.prices:
            if abs(price - value) < 0.005:
                return True
            for k in (1, 2):
                for combo in combinations_with_replacement(factors, k):
                    product = price
                    for f in combo:
                        product *= f
                    if abs(product - value) < 0.005 + 1e-9 * value:
                        return True
        return False


def unsupported(answer: str, *supports: Support) -> list[Claim]:
    """The answer's claims none of its supports contains, in the order written (each key once)."""
    found = claims(answer)
    answer_numbers = {c.key[1] for c in found if c.kind == "quantity"}
    seen: set[tuple] = set()
    out = []
    for c in found:
        if c.key in seen:
            continue
        seen.add(c.key)
        if not any(s.supports(c, answer_numbers) for s in supports):
            out.append(c)
    return out


def answer_text(record: dict, shape: str) -> str:
    """What the assistant asserts: every assistant turn; the chosen reply of a pair; a desirable KTO
    completion (an undesirable one is meant to be wrong)."""
    if shape == "chat":
        return "\n".join(m.get("content", "") for m in record.get("messages", []) if m.get("role") == "assistant")
    if shape == "preference":
        return str(record.get("chosen", ""))
    return str(record.get("completion", "")) if record.get("label", True) else ""


def user_side(record: dict) -> str:
    if "messages" in record:
        return "\n".join(m.get("content", "") for m in record["messages"] if m.get("role") == "user")
    return str(record.get("prompt", ""))


FAITHFUL_MIN = 3   # a judge rating below this (of 5) rejects the example


def faithfulness(data: object) -> dict[str, int]:
    """The judge's "faithful" rating per example id, from its parsed JSON reply (what is not a 1-5 is left out)."""
    rows = data.get("labels") if isinstance(data, dict) else None
    out = {}
    for row in rows or []:
        if isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("faithful"), int) \
                and 1 <= row["faithful"] <= 5:
            out[row["id"]] = row["faithful"]
    return out
