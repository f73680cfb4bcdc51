"""Per-example quality checks: structure, lengths, tone traps, refusals, PII (seed 003's validation script,
made stricter where it lets bad records through and looser where it flags good ones).

check_record(record, shape, quality, requested) -> [Issue, ...]; an empty list means the record passes.
Rules that look at "the reply" apply to every assistant turn (chat), to `chosen` (preference) and to a
desirable completion (kto, label true): the responses a trainer is taught to imitate.

Refusals. Seed 003 flags "I cannot" without the word "help"; that misses "I can't" / "I'm unable to", lets
"I cannot help with that." pass (the "help" is the refusal itself) and flags "I cannot stress enough ...".
Here a refusal is one of REFUSAL's phrases (I/we can't, cannot, won't, will not, am unable to, am not
able to), idioms excluded; the clause holding it is cut out, and the rest of the reply must hold a
REDIRECT (an offer of help, an alternative, a support channel or the docs, or a question).
Behaviour "negative" (requested["behaviour"]) expects a decline: it must decline or say it doesn't know,
give a REASON and a REDIRECT (seed 003's refusal example). Behaviour "ambiguous" expects a clarifying
question: a "?" outside code in some assistant turn.

PII (skipped when quality.allow_pii): e-mail addresses, phone numbers (Google's libphonenumber, region US
first, written with separators or a "+"), payment card numbers (Luhn-valid, card-like prefix and grouping),
US SSNs (python-stdnum's validity rules) and IBANs (checksum). Allowed as placeholders, not personal data:
addresses at RFC 2606 domains (example.com/.org/.net, *.example, *.test, *.invalid, *.localhost) and at
domain.com / yourdomain.com / yourcompany.com, role mailboxes (support@, billing@, ...), NANP's fictional
555-0100..0199 numbers, the public sandbox card numbers and the advertising SSN 123-45-6789.
Version numbers, IP addresses, ports, dates, prices and GPU names never match these patterns (tested).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

from agent.plan import Quality


@dataclass(frozen=True)
class Issue:
    code: str       # stable short id: "empty_turn", "as_an_ai", "pii_email", ...
    message: str    # for a person; names the turn or field


ROLES = ("system", "user", "assistant")
_APOS = "['’]"

AS_AN_AI = re.compile(
    r"(?:^|[.!?]\s+|\n)\s*[\"'“]?as an? (?:ai|artificial intelligence|(?:large )?language model|llm)\b", re.I
)
REFUSAL = re.compile(
    rf"\b(?:I|we)(?:\s+(?:can(?:no|{_APOS})?t|can not|won{_APOS}t|will not|am unable to|are unable to"
    rf"|am not able to|are not able to)|{_APOS}(?:m|re) (?:unable to|not able to))"
    r"(?!\s+(?:stress|emphasi[sz]e|overstate|wait|thank|believe|imagine|recommend \w+ enough))",
    re.I,
)
# a hedge is not a refusal in an ordinary answer ("I can't guarantee the price"), but counts as a decline
HEDGE = re.compile(r"\s+(?:guarantee|promise|predict|speak for|confirm|say for sure)\b", re.I)
DONT_KNOW = re.compile(
    rf"\bI(?: do not| don{_APOS}?t) (?:know|have)\b|\bI{_APOS}?m not sure\b|\bI am not sure\b|\bI have no "
    r"(?:information|access|way|data|details|visibility)\b|\bnot (?:something|anything) (?:I|we) can\b"
    rf"|\b(?:out of|outside(?: of)?|beyond) (?:my|our|the) (?:scope|expertise|knowledge)\b|\bout of scope\b"
    rf"|\bI{_APOS}?m (?:afraid|sorry,? but)\b|\bunfortunately\b",
    re.I,
)
# where the refused clause ends: what follows may be the redirect ("..., but I can help you ...")
CLAUSE_END = re.compile(r"[,.;:!?\n]|\b(?:but|however|instead)\b", re.I)
REDIRECT = re.compile(
    r"\?|\bhelp|\bassist|\b(?:happy|glad) to\b|\b(?:I|we) can (?:walk|show|guide|explain|point|send|set up|check|look)\b"
    r"|\bif you (?:need|want|would like|'d like|prefer)\b|\byou (?:can|could|may|might)\b|\binstead\b|\balternatively\b"
    r"|\b(?:try|consider|recommend|suggest)|\b(?:contact|reach out|support|help ?cent(?:er|re)|documentation"
    r"|docs|guide|ticket|consult)\b|\blet me know\b|\bfeel free\b|\bhere(?:'s| is| are) (?:how|what)\b"
    r"|\b(?:a|an|your) (?:lawyer|attorney|doctor|physician|professional|specialist|administrator|admin"
    r"|account manager)\b",
    re.I,
)
REASON = re.compile(
    rf"\b(?:because|since|due to|as (?:it|this|that|these|those|doing so|sharing|they|we|I|the)\b"
    r"|would (?:violate|breach|be|require|put|expose|compromise)|violat\w+|against (?:our|the|their)"
    r"|out(?:side)? (?:of )?(?:my |our |the )?scope|not (?:supported|available|allowed|permitted|possible"
    r"|public\w*|disclosed|announced|released|something|within|designed|authori[sz]ed)"
    rf"|(?:is|are|was|has|have)n{_APOS}?t (?:supported|available|allowed|possible|public\w*|disclosed"
    rf"|announced|released|been)|(?:don{_APOS}?t|do not|doesn{_APOS}?t|does not) (?:have|share|provide"
    r"|offer|support|store|keep|disclose|allow|know)|no (?:access|information|data|way|record|visibility)"
    r"|polic(?:y|ies)|privacy|terms of (?:service|use)|confidential|illegal|unlawful|unsafe|dangerous"
    r"|unethical|harm\w*|security|outdated|no longer|deprecated|end of life|unknow\w*|speculat\w*|future"
    r"|only (?:help|assist|answer|support|discuss|handle))\b",
    re.I,
)
CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.S)

# Regexes find candidates in prose; libphonenumber and python-stdnum decide whether they are real numbers.
EMAIL = re.compile(r"(?<![\w.+-])([A-Za-z0-9._%+-]+)@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,})\b(?![:@])")
CARD = re.compile(r"(?<![\d-])(?:\d{4}([ -]?)\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?|\d{4}([ -]?)\d{6}\2\d{5}|\d{13,19})(?![\d-])")
SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
PHONE_HINT = re.compile(r"(?:\d[\s().-]{0,3}){7}")   # 7+ digits in a phone-like run: worth libphonenumber's time
IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
PLACEHOLDER_DOMAINS = {"example.com", "example.org", "example.net", "domain.com", "yourdomain.com",
                       "yourcompany.com", "company.com", "mycompany.com"}
RESERVED_TLDS = {"example", "test", "invalid", "localhost"}
ROLE_MAILBOXES = {"support", "help", "helpdesk", "billing", "sales", "info", "contact", "security", "privacy",
                  "abuse", "noreply", "no-reply", "donotreply", "admin", "team", "hello", "feedback", "legal",
                  "compliance", "dpo", "press", "careers", "jobs", "accounts", "service", "customerservice"}
TEST_CARDS = {"4242424242424242", "4111111111111111", "4000056655665556", "5555555555554444",
              "5105105105105100", "378282246310005", "371449635398431", "6011111111111117", "4012888888881881"}
PLACEHOLDER_SSNS = {"123-45-6789"}


def check_record(record: dict[str, Any], shape: str, quality: Quality,
                 requested: dict[str, str] | None = None) -> list[Issue]:
    """Every rule the record breaks; [] when it passes."""
    if shape == "chat":
        issues, texts, replies = _chat(record, quality)
    elif shape == "preference":
        issues, texts, replies = _preference(record, quality)
    elif shape == "kto":
        issues, texts, replies = _kto(record, quality)
    else:
        raise ValueError(f"unknown record shape {shape!r}: expected chat, preference or kto")
    if texts is None:           # structure too broken to read further
        return issues
    behaviour = (requested or {}).get("behaviour", (requested or {}).get("behavior"))
    issues += reply_issues(replies, behaviour)
    if not quality.allow_pii:
        issues += [Issue(code, f"{where} contains {what}") for where, text in texts
                   for code, what in (_find_pii(text) if where == "system message" else _pii_found(text))]
    return issues


Texts = list[tuple[str, str]]   # (where, text): "user turn 1", "chosen", ...


def _chat(record: dict[str, Any], quality: Quality) -> tuple[list[Issue], Texts | None, Texts]:
    messages = record.get("messages") if isinstance(record, dict) else None
    if not isinstance(messages, list) or not messages:
        return [Issue("no_messages", "the record has no 'messages' list")], None, []
    bad = [i for i, m in enumerate(messages, 1)
           if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str)]
    if bad:
        return [Issue("bad_message", f"message {i} is not an object with string 'role' and 'content'") for i in bad], None, []
    issues: list[Issue] = []
    roles = [m["role"] for m in messages]
    for i, role in enumerate(roles, 1):
        if role not in ROLES:
            issues.append(Issue("bad_role", f"message {i} has role {role!r}; allowed: system, user, assistant"))
    if roles.count("system") > 1 or ("system" in roles and roles[0] != "system"):
        issues.append(Issue("system_not_first", "a conversation may have one system message, and only first"))
    if "user" not in roles:
        issues.append(Issue("no_user", "the conversation has no user turn"))
    if "assistant" not in roles:
        issues.append(Issue("no_assistant", "the conversation has no assistant turn"))
    if roles[-1] != "assistant":
        issues.append(Issue("ends_not_assistant", f"the conversation ends with a {roles[-1]!r} message, not the assistant"))
    turns = [r for r in roles if r != "system"]
    for i, role in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected and role in ROLES:
            issues.append(Issue("roles_not_alternating",
                                f"turn {i + 1} is {role!r} where {expected!r} was due: roles must alternate user/assistant"))
            break
    texts: Texts = []
    seen: dict[str, int] = {}
    compare_users = roles.count("user") > 1     # a single user turn repeats none: its key is not built
    count = {"system": 0, "user": 0, "assistant": 0}
    for m in messages:
        role, content = m["role"], m["content"]
        if role not in ROLES:
            continue
        count[role] += 1
        where = "system message" if role == "system" else f"{role} turn {count[role]}"
        texts.append((where, content))
        if role == "system":
            if not content.strip():
                issues.append(Issue("empty_turn", "the system message is empty"))
            continue
        issues += length_issues(where, content, quality)
        if role != "user" or not compare_users:      # only user turns are compared: a reply's (long) key is not built
            continue
        key = " ".join(content.split()).casefold()
        if key:
            if key in seen:
                issues.append(Issue("duplicate_user_turn", f"{where} repeats user turn {seen[key]}"))
            seen.setdefault(key, count["user"])
    replies = [(w, t) for w, t in texts if w.startswith("assistant")]
    return issues, texts, replies


def _fields(record: Any, names: tuple[str, ...], quality: Quality) -> tuple[list[Issue], Texts | None]:
    if not isinstance(record, dict):
        return [Issue("missing_field", "the record is not a JSON object")], None
    issues = [Issue("missing_field", f"'{n}' must be a string, got {type(record.get(n)).__name__}")
              for n in names if not isinstance(record.get(n), str)]
    if "system" in record and not isinstance(record["system"], str):
        issues.append(Issue("missing_field", "'system' must be a string"))
    if issues:
        return issues, None
    for n in names:
        issues += length_issues(n, record[n], quality)
    texts = [(n, record[n]) for n in names]
    if record.get("system"):
        texts.insert(0, ("system message", record["system"]))
    return issues, texts


def _preference(record: Any, quality: Quality) -> tuple[list[Issue], Texts | None, Texts]:
    issues, texts = _fields(record, ("prompt", "chosen", "rejected"), quality)
    if texts is None:
        return issues, None, []
    chosen, rejected = record["chosen"].strip(), record["rejected"].strip()
    if " ".join(chosen.split()).casefold() == " ".join(rejected.split()).casefold():
        issues.append(Issue("chosen_equals_rejected", "chosen and rejected are the same text"))
    elif chosen and rejected:
        longer, shorter = max(len(chosen), len(rejected)), min(len(chosen), len(rejected))
        if longer / shorter > quality.preference_length_ratio:
            which = "chosen" if len(chosen) > len(rejected) else "rejected"
            issues.append(Issue("length_bias", f"{which} is {longer / shorter:.1f}x the other's length "
                                               f"(limit {quality.preference_length_ratio:g}x): a length bias"))
    return issues, texts, [("chosen", record["chosen"])]


def _kto(record: Any, quality: Quality) -> tuple[list[Issue], Texts | None, Texts]:
    issues, texts = _fields(record, ("prompt", "completion"), quality)
    label = record.get("label") if isinstance(record, dict) else None
    if not isinstance(label, bool):     # 1 and "true" are not labels a KTO trainer reads reliably
        issues.append(Issue("label_not_bool", f"'label' must be true or false, got {label!r}"))
    if texts is None:
        return issues, None, []
    return issues, texts, ([("completion", record["completion"])] if label is True else [])


def length_issues(where: str, text: str, quality: Quality) -> list[Issue]:
    n = len(text.strip())
    if n == 0:
        return [Issue("empty_turn", f"{where} is empty")]
    if n < quality.min_chars:
        return [Issue("too_short", f"{where} is {n} chars, below the {quality.min_chars}-char minimum")]
    if n > quality.max_chars:
        return [Issue("too_long", f"{where} is {n} chars, above the {quality.max_chars}-char maximum")]
    return []


# How the reply rules read a text. An ASCII text is lower-cased once and read by case-sensitive, lower-cased
# copies of the rules: the same matches at the same places (lower() keeps an ASCII text's length) for a
# fraction of re.I's per-position cost, and literal parts every match holds are looked for first with C-level
# substring searches. Any other text is read as it is by the re.I rules, with no prefilter: under re.I a few
# non-ASCII letters match ASCII ones ("ſ" is "s", "ı" is "i").
class Rules(NamedTuple):
    refusal: re.Pattern[str]
    hedge: re.Pattern[str]
    dont_know: re.Pattern[str]
    clause_end: re.Pattern[str]
    redirect: re.Pattern[str]
    reason: re.Pattern[str]


def _lowered(rx: re.Pattern[str]) -> re.Pattern[str]:
    """rx without re.I for lower-cased text: its only capital is the literal "I" (checked)."""
    capitals = set(re.findall(r"\\?[A-Z]", rx.pattern))
    if not capitals <= {"I"} or not rx.flags & re.I:
        raise ValueError(f"{rx.pattern!r} cannot be lower-cased: it holds {sorted(capitals)}")
    return re.compile(rx.pattern.replace("I", "i"), rx.flags & ~re.I)


def _alternatives(pattern: str) -> list[str]:
    """The pattern's top-level alternatives (a "|" outside any group and character class)."""
    parts, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            i += pattern.startswith("^", i + 1)
            i += pattern.startswith("]", i + 1)    # a "]" first in a class is a literal
        elif c in "()":
            depth += 1 if c == "(" else -1
        elif c == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    return parts + [pattern[start:]]


def _one_boundary(rx: re.Pattern[str]) -> re.Pattern[str]:
    """rx with its alternatives that open on \\b grouped under one: "\\?|\\bhelp|\\bassist" -> "\\?|\\b(?:help|assist)".
    The same texts match (alternatives reordered: for search() as a yes/no only), and where no word starts,
    sre tries one \\b instead of one per alternative, and at a word start skips each alternative whose first
    letter differs (a literal first, no longer the \\b): REDIRECT scans a reply in a fifth of the time."""
    parts = _alternatives(rx.pattern)
    bounded = [p.removeprefix(r"\b") for p in parts if p.startswith(r"\b")]
    rest = [p for p in parts if not p.startswith(r"\b")]
    return re.compile("|".join([*rest, r"\b(?:" + "|".join(bounded) + ")"]), rx.flags)


def _first_words_scanned(rx: re.Pattern[str]) -> re.Pattern[str]:
    """rx = "\\b(?:i|we)REST" as "i(?<!\\wi)(?:REST)|we(?<!\\wwe)(?:REST)": the same matches at the same places (a
    word start before a letter is a non-word character, or none, before it), and a pattern opening on a
    literal letter lets sre skip to the next "i" or "w" instead of trying the \\b and the words at every position:
    REFUSAL scans a reply in half the time."""
    head = re.match(r"\\b\(\?:([a-z]+(?:\|[a-z]+)*)\)", rx.pattern)
    rest = rx.pattern[head.end():] if head else ""
    if head is None or re.compile(rest).groups:
        raise ValueError(f"{rx.pattern!r} does not open on a \\b and a group of words, or holds a capturing group")
    return re.compile("|".join(rf"{w}(?<!\w{w})(?:{rest})" for w in head.group(1).split("|")), rx.flags)


CASED = Rules(REFUSAL, HEDGE, DONT_KNOW, CLAUSE_END, REDIRECT, REASON)
LOWER = Rules(*map(_lowered, CASED))._replace(refusal=_first_words_scanned(_lowered(REFUSAL)),
                                             redirect=_one_boundary(_lowered(REDIRECT)))
_AS_AN_AI_CORE = re.compile(r"as an? (?:ai|artificial intelligence|(?:large )?language model|llm)\b")
_CAN_VERB = re.compile(r"can(?:not|t|'t|’t| not)")    # a literal prefix: sre searches for "can" first
# a literal part of each DONT_KNOW alternative, in its order
_DONT_KNOW_PARTS = ("i do", "not sure", "i have no", "thing i can", "thing we can", "scope", "expertise", "knowledge",
                    "afraid", "sorry", "unfortunately")


def _reading(text: str) -> tuple[str, Rules]:
    return (text.lower(), LOWER) if text.isascii() else (text, CASED)


def _may_say_as_an_ai(s: str, rules: Rules) -> bool:
    return rules is CASED or _AS_AN_AI_CORE.search(s) is not None


def _may_refuse(s: str, rules: Rules) -> bool:
    """REFUSAL's verbs (cannot, cant, can't, can’t, can not, won't, won’t, will not, unable to, not able to):
    four scans of the lower-cased text instead of ten, most texts having none of "won", "will not", "able to"."""
    if rules is CASED:
        return True
    return (_CAN_VERB.search(s) is not None or ("won" in s and ("won't" in s or "won’t" in s)) or "will not" in s
            or ("able to" in s and ("unable to" in s or "not able to" in s)))


def _may_not_know(s: str, rules: Rules) -> bool:
    return rules is CASED or any(part in s for part in _DONT_KNOW_PARTS)


def reply_issues(replies: Texts, behaviour: str | None) -> list[Issue]:
    """Tone and behaviour rules over the replies a trainer imitates."""
    read = [(where, text, *_reading(text)) for where, text in replies]
    issues = [Issue("as_an_ai", f"{where} uses an 'As an AI ...' phrase") for where, text, s, rules in read
              if _may_say_as_an_ai(s, rules) and AS_AN_AI.search(text)]
    if behaviour == "negative":
        issues += _negative(read)
    else:
        issues += [Issue("refusal_without_help", f"{where} refuses without offering help, an alternative or a question")
                   for where, _, s, rules in read if _refuses(s, rules) and not _redirects(s, rules)]
    if behaviour == "ambiguous" and replies and not any("?" in CODE.sub("", t) for _, t in replies):
        issues.append(Issue("ambiguous_no_clarification",
                            "the request is ambiguous but no reply asks a clarifying question"))
    return issues


def _negative(read: list[tuple[str, str, str, Rules]]) -> list[Issue]:
    declining = [(where, s, rules) for where, _, s, rules in read if _declines(s, rules)]
    if not declining:
        return [Issue("negative_not_declined", "a negative example must decline or say it doesn't know; no reply does")] if read else []
    where, s, rules = declining[-1]
    issues = []
    if not rules.reason.search(s):
        issues.append(Issue("negative_no_reason", f"{where} declines without a reason (because, out of scope, policy, ...)"))
    if not _redirects(s, rules):
        issues.append(Issue("negative_no_redirect", f"{where} declines without redirecting to legitimate help"))
    return issues


def _refuses(s: str, rules: Rules) -> bool:
    """A refusal phrase that is neither an idiom nor a hedge ("I can't guarantee ..."); s and rules: _reading's."""
    return _may_refuse(s, rules) and any(not rules.hedge.match(s, m.end()) for m in rules.refusal.finditer(s))


def _declines(s: str, rules: Rules) -> bool:
    return bool((_may_refuse(s, rules) and rules.refusal.search(s)) or (_may_not_know(s, rules) and rules.dont_know.search(s)))


def _redirects(s: str, rules: Rules) -> bool:
    """REDIRECT anywhere outside the refused clauses themselves."""
    s = CODE.sub(" ", s) if "`" in s else s     # every CODE match holds a backtick
    return rules.redirect.search(_without_refused_clauses(s, rules)) is not None


def _without_refused_clauses(s: str, rules: Rules) -> str:
    if not _may_refuse(s, rules):
        return s
    parts, pos = [], 0
    for m in rules.refusal.finditer(s):
        if m.start() < pos:
            continue
        parts.append(s[pos:m.start()])
        end = rules.clause_end.search(s, m.end())
        pos = end.start() if end else len(s)
    parts.append(s[pos:])
    return " ".join(parts)


def find_pii(text: str) -> list[tuple[str, str]]:
    """(code, masked description) for each kind of personal data found, one per kind."""
    return list(_find_pii(text))


def _pii_found(text: str) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for code, value in _pii_candidates(text):
        found.setdefault(code, value)
    names = {"pii_email": "an e-mail address", "pii_phone": "a phone number", "pii_card": "a payment card number",
             "pii_national_id": "a national id number", "pii_iban": "an IBAN"}
    return tuple((code, f"{names[code]} ({_mask(value)})") for code, value in found.items())


# the plan's few system prompts come with every record; a turn's text is new (hashing it for a cache costs)
_find_pii = lru_cache(maxsize=1024)(_pii_found)


# An ASCII text's shape: every digit "0", every capital "A", every other byte kept. Each number pattern below
# needs a run a C-level substring search finds in the shape (CARD 4 digits, SSN ddd-dd-dddd, IBAN 2 capitals
# and 2 digits, a phone PHONE_HINT's digit run, read off the shape by a regex with a literal first byte):
# without it the pattern is not run, and what is found does not change (tests/test_fast_paths.py).
_SHAPE = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"0" * 10 + b"A" * 26)
_PHONE_SEPARATORS = re.escape("".join(c for c in map(chr, range(128)) if c.isspace() or c in "().-"))  # \s, ASCII
PHONE_SHAPE = re.compile(f"0(?:[{_PHONE_SEPARATORS}]{{0,3}}0){{6}}".encode())


def _pii_candidates(text: str) -> Iterator[tuple[str, str]]:
    # Each pattern needs what a cheap test can rule out: EMAIL an "@", SSN 9 digits, CARD 13, a phone 7, an
    # IBAN 2, and the runs of the text's shape above. (\d matches every Unicode decimal digit: a non-ASCII text
    # takes every number scan but the phone's, which PHONE_HINT rules out first.)
    if "@" in text:
        yield from _emails(text)
    if not text.isascii():
        if len(text) >= 2:
            yield from _numbers(text, card=len(text) >= 13, ssn=len(text) >= 9,
                                phone=len(text) >= 7 and PHONE_HINT.search(text) is not None)
        return
    shape = text.encode("ascii").translate(_SHAPE)
    digits = shape.count(b"0")
    if digits < 2:
        return
    yield from _numbers(text, card=digits >= 13 and b"0000" in shape, ssn=digits >= 9 and b"000-00-0000" in shape,
                        iban=b"AA00" in shape, phone=digits >= 7 and PHONE_SHAPE.search(shape) is not None)


def _emails(text: str) -> Iterator[tuple[str, str]]:
    for m in EMAIL.finditer(text):
        local, domain = m.group(1).lower(), m.group(2).lower()
        tld = domain.rsplit(".", 1)[-1]
        if domain in PLACEHOLDER_DOMAINS or tld in RESERVED_TLDS or _is_example(domain) or local in ROLE_MAILBOXES:
            continue
        yield "pii_email", m.group(0)


def _numbers(text: str, card: bool = True, ssn: bool = True, iban: bool = True,
             phone: bool = True) -> Iterator[tuple[str, str]]:
    """Card, SSN, IBAN and phone numbers in text; a scan set False is skipped (its prefilter ruled it out).
    The validators are imported when a candidate needs them: most texts hold none, and phonenumbers' import
    alone is a tenth of a second."""
    for m in CARD.finditer(text) if card else ():
        from stdnum import luhn

        digits = re.sub(r"\D", "", m.group(0))
        if digits[0] in "3456" and luhn.is_valid(digits) and digits not in TEST_CARDS:
            yield "pii_card", m.group(0)
    for m in SSN.finditer(text) if ssn else ():
        from stdnum.us import ssn as us_ssn

        if us_ssn.is_valid(m.group(0)) and m.group(0) not in PLACEHOLDER_SSNS:
            yield "pii_national_id", m.group(0)
    for m in IBAN.finditer(text) if iban else ():
        from stdnum import iban as iban_number

        if iban_number.is_valid(m.group(0)):
            yield "pii_iban", m.group(0)
    if not phone:
        return
    import phonenumbers

    for match in phonenumbers.PhoneNumberMatcher(text, "US", leniency=phonenumbers.Leniency.VALID):
        raw = match.raw_string
        # a bare digit run is more often an order id or a timestamp than a phone number
        if not (raw.startswith("+") or re.search(r"[\s().-]", raw)):
            continue
        national = str(match.number.national_number)
        if match.number.country_code == 1 and national[3:6] == "555" and "0100" <= national[6:] <= "0199":
            continue    # NANP reserves 555-0100..0199 for fiction
        yield "pii_phone", raw


def _is_example(domain: str) -> bool:
    return any(domain.endswith("." + d) for d in ("example.com", "example.org", "example.net"))


def _mask(value: str) -> str:
    """Enough to find it in the record, not enough to copy it out of a log."""
    keep = max(2, len(value) // 4)
    return value[:keep] + "…" + value[-2:] if len(value) > 6 else "…"
