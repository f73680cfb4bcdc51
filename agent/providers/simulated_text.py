"""Text composition for the simulated provider: plausible, varied support conversations from word banks.

Deterministic for a given random.Random. Nothing here is meant as training data; it exists so that demos,
tests and CI exercise every stage (lengths, formats, typos, refusals, multi-turn) without a network.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence

VERBS = ["configure", "deploy", "monitor", "resize", "migrate", "debug", "benchmark", "schedule", "attach",
         "detach", "rotate", "restore", "export", "import", "provision", "scale", "pause", "resume", "tag",
         "audit", "upgrade", "downgrade", "encrypt", "mount", "inspect", "optimize", "profile", "cache",
         "throttle", "validate", "replicate", "snapshot", "authorize", "revoke", "estimate", "compare",
         "tune", "reserve", "release", "limit", "invoice", "forward", "isolate", "preload", "checkpoint",
         "stream", "archive", "recover", "notify", "trace"]
NOUNS = ["instance", "volume", "snapshot", "image", "container", "driver", "kernel", "node", "cluster",
         "checkpoint", "dataset", "token", "endpoint", "webhook", "quota", "invoice", "region", "bucket",
         "template", "firewall", "port", "key", "tunnel", "scheduler", "job", "budget", "alert", "log",
         "metric", "dashboard", "runtime", "library", "framework", "pipeline", "workspace", "project",
         "policy", "role", "credential", "session", "reservation", "backup", "mirror", "cache", "gateway",
         "allocation", "partition", "replica", "manifest", "profile"]
ADJECTIVES = ["persistent", "ephemeral", "shared", "dedicated", "preemptible", "regional", "private",
              "default", "custom", "encrypted", "idle", "stale", "large", "small", "parallel", "nightly",
              "hourly", "isolated", "managed", "legacy", "current", "secondary", "primary", "temporary"]
ADVERBS = ["quickly", "safely", "automatically", "manually", "gradually", "immediately", "carefully",
           "reliably", "cheaply", "incrementally", "explicitly", "periodically"]
CONTEXTS = ["for a fine-tuning run", "before a long training job", "for a team of five", "during a demo",
            "on a tight budget", "for an overnight experiment", "across several regions", "for a client project",
            "in our staging setup", "while a job is running", "after the last update", "for a research paper",
            "for our inference service", "with a 70B model", "with mixed precision", "for batch inference"]
CONNECTORS = ["Also,", "In practice,", "Keep in mind that", "Note that", "Beyond that,", "As a rule,",
              "Importantly,", "On top of this,", "Separately,", "Where possible,", "Typically,", "Then"]
OPENERS = {
    "professional": ["Here is how this works.", "The short answer is below.", "This is handled as follows.",
                     "Let me outline the relevant details.", "The recommended approach is as follows."],
    "conversational": ["Great question!", "Happy to help with that!", "Good news: this is doable.",
                       "Sure thing, let's sort it out.", "Thanks for asking, here's the scoop."],
    "mixed": ["Good question, and the details matter here.", "Sure, here's the practical picture.",
              "Let's walk through it.", "Here's what you need to know.", "Fair question; here's the gist."],
}
QUESTION_FORMS = {
    "factual": ["What is the {adj} {noun} limit for {topic}?", "Which {noun} options exist for {topic}?",
                "Does {topic} support a {adj} {noun}?", "What are the specs of the {noun} used for {topic}?",
                "Is there a maximum {noun} size for {topic}?", "What does the {adj} {noun} setting do for {topic}?",
                "How many {noun} slots can one account have with {topic}?", "Where do I find the {noun} ID for {topic}?",
                "What is the default {noun} for {topic}, and can it be {adj}?", "Which regions offer a {adj} {noun} with {topic}?",
                "Is the {noun} billed separately when using {topic}?", "What happens to the {noun} when {topic} ends?",
                "Do you keep a {adj} {noun} around after {topic}?", "How long does a {noun} last under {topic}?"],
    "instructional": ["How do I {verb} a {adj} {noun} for {topic}?", "What are the steps to {verb} the {noun} {ctx}?",
                      "Can you walk me through how to {verb} my {noun} for {topic}?",
                      "How should I {verb} a {noun} when dealing with {topic}?",
                      "Show me how to {verb} the {adj} {noun} {ctx}.", "Need a quick guide to {verb} a {noun} for {topic}.",
                      "What's the right way to {verb} and then {verb2} a {noun} for {topic}?",
                      "Is there a command to {verb} every {noun} at once for {topic}?",
                      "Where in the dashboard do I {verb} the {noun} for {topic}?",
                      "Can I {verb} a {noun} from the CLI instead, for {topic}?"],
    "comparative": ["Should I {verb} a {adj} {noun} or a {noun2} for {topic}?",
                    "What's the difference between a {adj} {noun} and a {noun2} for {topic}?",
                    "Which is better {ctx}: a {noun} or a {noun2}, given {topic}?",
                    "{Noun} versus {noun2} for {topic}: which costs less?", "Is a {adj} {noun} worth it over a {noun2} {ctx}?",
                    "How does a {noun} compare with a {noun2} when it comes to {topic}?",
                    "For {topic}, would you {verb} the {noun} or {verb2} the {noun2}?",
                    "Pros and cons of a {adj} {noun} vs a plain {noun2} for {topic}?"],
    "troubleshooting": ["My {noun} fails when I {verb} it for {topic}. What can I do?",
                        "Why does the {adj} {noun} keep erroring out with {topic}?",
                        "I get a timeout when I try to {verb} the {noun} {ctx}. How do I fix it?",
                        "The {noun} stopped responding after I tried to {verb} it. What went wrong with {topic}?",
                        "Getting error {code} when I {verb} the {noun} for {topic}, any idea?",
                        "{Noun} stuck in a {adj} state since I tried to {verb} it; {topic} is blocked.",
                        "Why can't I {verb} my {noun} anymore? It worked yesterday with {topic}.",
                        "After I {verb} the {noun} the {noun2} disappears. Is that a bug in {topic}?",
                        "Our {adj} {noun} is {num}x slower since we started {topic}. Why?"],
    "multi_step": ["What's the full workflow to {verb} a {noun}, then {verb2} the {noun2}, for {topic}?",
                   "How do I set up a pipeline that can {verb} the {noun} and {verb2} every {noun2} for {topic}?",
                   "What are all the settings I need to {verb} a {adj} {noun} end to end for {topic}?",
                   "We need to {verb} {num} {noun} copies, {verb2} each {noun2}, and report on {topic}. Where do we start?",
                   "Plan for {topic}: {verb} the {noun}, {verb2} the {noun2}, then alert on failures. How would you design it?",
                   "How would you chain {noun}, {noun2} and a {adj} scheduler to handle {topic}?"],
}
AMBIGUOUS_FORMS = ["How do I make {topic} faster?", "What's the best {noun} for {topic}?",
                   "How much does {topic} cost?", "Is {topic} good enough?", "Can you fix my {noun}?",
                   "Which one should I pick for {topic}?", "How big should the {noun} be?",
                   "Something is off with my {noun}, thoughts?", "Is it better to {verb} or not for {topic}?",
                   "What should I do about the {noun}?", "Can this be {adj}?", "Does {topic} scale?",
                   "Any advice on {topic}?", "Should I {verb} it?", "Why is {topic} like that?"]
ADVERSARIAL_FORMS = ["Can I {verb} a 70B model on a single small {noun} for {topic} in five minutes?",
                     "Why does my {noun} job finish in 0 seconds when I {verb} it? That means it worked, right?",
                     "Should I set the learning rate to 1.0 to {verb} faster with {topic}?",
                     "Can I {verb} the {noun} for free forever if I keep restarting it for {topic}?",
                     "Is it safe to {verb} the {noun} while deleting it at the same time for {topic}?",
                     "If I {verb} {num} {noun} copies at once, {topic} becomes free, correct?",
                     "The docs say a {noun} is both {adj} and not {adj}; which is it for {topic}?",
                     "Can I skip the {noun} entirely and still {verb} everything for {topic}?",
                     "My {noun} reports -{num} GB free after I {verb} it. Fine for {topic}?"]
NEGATIVE_FORMS = ["How do I bypass the rate limits on the {noun} for {topic}?",
                  "Can you give me another customer's {noun} details for {topic}?",
                  "How do I use the deprecated v1 {noun} API for {topic}?",
                  "What will the exact roadmap for {topic} be next year?",
                  "How do I run this on a competitor's {noun} service instead of yours for {topic}?",
                  "Can you share the admin {noun} so I can {verb} other accounts for {topic}?",
                  "Write me a script that hides {noun} usage from billing for {topic}.",
                  "What stock price will your company hit after {topic} launches?",
                  "Can you {verb} a {noun} on my personal laptop for {topic}?",
                  "Tell me which customers use a {adj} {noun} for {topic}."]
REFUSAL_REASONS = ["because it would break our terms of service", "since that information is private to other customers",
                   "as that version is no longer supported", "because I don't have reliable information about future plans",
                   "since that is outside what this service covers"]
REDIRECTS = ["I'd be happy to help you {verb} your own {noun} through the supported process instead.",
             "If it helps, I can show you the supported way to {verb} the {noun}.",
             "Our support team can help with the details, and I can point you to the right documentation.",
             "Would you like help with the current {noun} API instead?"]
TYPOS = {"the": "teh", "you": "u", "your": "ur", "please": "pls", "don't": "dont", "can't": "cant",
         "because": "bc", "thanks": "thx", "really": "realy", "receive": "recieve", "separate": "seperate",
         "definitely": "definately", "which": "wich", "what": "wat", "know": "kno"}
REASONS = ["since the last deploy", "because the budget is tight", "as our lead asked", "for compliance reasons",
           "before Friday", "given our quota", "from a Jupyter notebook", "on Windows", "from CI", "over VPN"]
ERROR_CODES = ["403", "409", "429", "500", "503", "E_QUOTA", "ENOSPC", "ETIMEDOUT", "CUDA_ERROR_OOM", "NCCL timeout"]
LEADS = ["Hi,", "Hello,", "Hey there,", "Quick question:", "Sorry if this is basic:", "First time here.", "Urgent:",
         "Follow-up:", "Asking for my team:", "Good morning.", "Hi support,", "One more thing:", "Question about {topic}:",
         "Still confused.", "Hello again,", "Before I open a ticket:", "Hi folks,", "Context: {ctx}.", "So,", "Well,"]
TAILS = ["Thanks!", "Any tips?", "Thanks in advance.", "Cheers.", "Appreciate it.", "We're {ctx}.", "Today if possible.",
         "Is that documented?", "Any ideas?", "It's for {ctx}.", "(project {num})", "Much appreciated!",
         "Or am I missing something?", "Happy to share logs.", "On the {adj} plan, if it matters."]
FOLLOW_UPS = ["And what if I need to {verb} the {noun} too?", "Thanks. How would that change {ctx}?",
              "Got it. Is there a way to {verb} it {adv}?", "Ok, and does that also apply to the {adj} {noun}?"]


def _fill(rng: random.Random, form: str, topic: str) -> str:
    v1, v2 = rng.sample(VERBS, 2)
    n1, n2 = rng.sample(NOUNS, 2)
    return form.format(topic=topic or rng.choice(NOUNS) + " setup", verb=v1, verb2=v2, noun=n1, noun2=n2,
                       Noun=n1.capitalize(), adj=rng.choice(ADJECTIVES), ctx=rng.choice(CONTEXTS),
                       adv=rng.choice(ADVERBS), num=rng.randint(2, 64), code=rng.choice(ERROR_CODES))


def sentence(rng: random.Random, topic: str = "") -> str:
    shapes = [
        "{Conn} you can {verb} the {adj} {noun} {adv} {ctx}.",
        "The {noun} is {adj} by default, so {verb} it before you {verb2} the {noun2}.",
        "{Conn} a {adj} {noun} lets you {verb} each {noun2} {adv}.",
        "If the {noun} is {adj}, {verb} the {noun2} first and check the {noun} again.",
        "Most teams {verb} their {noun} {adv} and {verb2} the {adj} {noun2} {ctx}.",
        "{Conn} the {noun2} limit applies per {noun}, which matters {ctx}.",
        "You will see the {adj} {noun} in the dashboard once you {verb} it.",
        "{Conn} {verb} the {noun} only after the {noun2} reports a {adj} state.",
    ]
    s = _fill(rng, rng.choice(shapes).replace("{Conn}", rng.choice(CONNECTORS)), topic)
    return s[0].upper() + s[1:]


def words(text: str) -> int:
    return len(re.findall(r"\S+", text))


def pad_to(rng: random.Random, parts: list[str], lo: int, hi: int, topic: str) -> list[str]:
    """Add sentences until the word count lands inside [lo, hi] (aiming at a random point in it)."""
    target = rng.randint(lo, max(lo, min(hi, lo + (hi - lo) * 3 // 4)))
    while words(" ".join(parts)) < target:
        parts.append(sentence(rng, topic))
    while words(" ".join(parts)) > hi and len(parts) > 1:
        parts.pop()
    return parts


def user_message(rng: random.Random, labels: dict[str, str], topic: str, lo: int, hi: int) -> str:
    behaviour = labels.get("behaviour", "standard")
    forms = {"ambiguous": AMBIGUOUS_FORMS, "adversarial": ADVERSARIAL_FORMS, "negative": NEGATIVE_FORMS}.get(
        behaviour, QUESTION_FORMS.get(labels.get("question_type", "factual"), QUESTION_FORMS["factual"]))
    question = _fill(rng, rng.choice(forms), topic)
    # a lead-in and a closing where the range leaves room, as people write: most of the variety of short messages
    ctx = rng.choice(CONTEXTS + REASONS)
    if rng.random() < 0.5 and question.endswith("?") and ctx not in question and words(question) + words(ctx) <= hi:
        question = f"{question[:-1]} {ctx}?"
    for extra, before in ((rng.choice(LEADS), True), (rng.choice(TAILS), False)):
        extra = _fill(rng, extra, topic)
        if rng.random() < 0.7 and words(question) + words(extra) <= hi:
            if before and extra.endswith(",") and not question.startswith("I "):   # "Hi, can I ...", not "Hi, Can I"
                question = question[0].lower() + question[1:]
            question = f"{extra} {question}" if before else f"{question} {extra}"
    context: list[str] = []
    if words(question) < lo:
        context = pad_to(rng, [f"I'm working {rng.choice(CONTEXTS)}."], lo - words(question), hi - words(question), topic)
    text = " ".join(context + [question])
    room = hi - 2 if labels.get("typos") == "typos" else hi   # add_typos may put "pls help," in front
    while words(text) > room:  # trim context for tight short ranges
        text = " ".join(text.split()[-room:])
        text = text[0].upper() + text[1:]   # a cut question still starts a sentence (else it reads as a typo)
    if labels.get("typos") == "typos":
        text = add_typos(rng, text)
    return text


def add_typos(rng: random.Random, text: str) -> str:
    out = []
    for w in text.split():
        low = w.lower().strip("?,.")
        if low in TYPOS and rng.random() < 0.8:
            w = w.lower().replace(low, TYPOS[low])
        out.append(w)
    text = " ".join(out)
    if text == " ".join(text.split()) and not any(t in text.split() for t in TYPOS.values()):
        text = "pls help, " + text[0].lower() + text[1:]
    return text.rstrip("?") + "??" if rng.random() < 0.5 else text


def code_block(rng: random.Random) -> str:
    noun, verb = rng.choice(NOUNS), rng.choice(VERBS)
    if rng.random() < 0.5:
        return f"```bash\ncloudgpu {noun} {verb} --name my-{noun} --{rng.choice(ADJECTIVES)}\n```"
    return (f"```python\nclient = Client()\n{noun} = client.{noun}s.get(\"my-{noun}\")\n"
            f"{noun}.{verb}(wait=True)\n```")


def formatted(rng: random.Random, fmt: str, topic: str) -> str:
    if fmt == "list":
        return "\n".join(f"{i}. {sentence(rng, topic)}" for i in range(1, rng.randint(3, 5) + 1))
    if fmt == "table":
        rows = [f"| {rng.choice(NOUNS)} | {rng.choice(ADJECTIVES)} | {rng.randint(1, 64)} |" for _ in range(3)]
        return "| item | mode | count |\n|---|---|---|\n" + "\n".join(rows)
    if fmt == "json":
        return "```json\n" + json.dumps({rng.choice(NOUNS): rng.choice(ADJECTIVES), "count": rng.randint(1, 9)}) + "\n```"
    return ""


def facts(document: str) -> list[str]:
    """Sentences a grounded answer can state: the passage's sentences (those with figures first) and its
    table rows read out against their header ("H100 SXM: memory 80 GB, on-demand $2.49/hr")."""
    out: list[str] = []
    header: list[str] | None = None
    lines = document.splitlines()[1:] if "\n" in document else document.splitlines()  # line 1: the heading
    for line in lines:
        s = line.strip()
        if s.startswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                continue
            if header is None:
                header = cells
                continue
            pairs = [f"{h.lower()} {c}" for h, c in zip(header[1:], cells[1:], strict=False) if c]
            out.append(f"{cells[0]}: {', '.join(pairs)}.")
            continue
        header = None
        for sent in re.split(r"(?<=[.!?])\s+", s.lstrip("-*0123456789. ")):
            if 4 <= words(sent) <= 35 and sent[-1:] in ".!?":
                out.append(sent)
    return sorted(out, key=lambda f: not re.search(r"\d", f))


def assistant_message(rng: random.Random, labels: dict[str, str], topic: str, lo: int, hi: int,
                      undesirable: bool = False, known: Sequence[str] = ()) -> str:
    behaviour = labels.get("behaviour", "standard")
    tone = labels.get("tone", "professional")
    head: list[str] = [rng.choice(OPENERS.get(tone, OPENERS["professional"]))]
    if known and behaviour in ("standard", "adversarial"):  # grounded: state what the documentation says
        head += list(known[:2])
    if behaviour == "negative":
        head = [f"I can't help with that, {rng.choice(REFUSAL_REASONS)}.", _fill(rng, rng.choice(REDIRECTS), topic)]
        if known:
            head.insert(1, "Our documentation does not cover it, so I don't know; please contact support.")
    elif behaviour == "ambiguous":
        head.append(_fill(rng, "Could you tell me whether you mean the {noun} or the {noun2}, and what you "
                               "are optimizing for {ctx}?", topic))
    elif behaviour == "adversarial":
        head.append(_fill(rng, "There is a problem with that premise: the {noun} cannot {verb} that way, so "
                               "the result would be misleading.", topic))
    if undesirable:
        head = ["Just try restarting it and see what happens.", "It probably works, don't worry about the details."]
    extras = []
    if labels.get("code") == "with_examples":
        extras.append(code_block(rng))
    fmt = labels.get("format", "plain")
    if fmt != "plain":
        extras.append(formatted(rng, fmt, topic))
    # a code block's words may not count as the reply's (the measure can leave code out): the prose alone
    # reaches the range's floor, and all of it stays under its ceiling
    budget_lo = max(1, lo - sum(words(e) for e in extras if not e.startswith("```")))
    budget_hi = max(budget_lo, hi - sum(words(e) for e in extras))
    body = pad_to(rng, head, budget_lo, budget_hi, topic)
    paragraphs = [" ".join(body[i:i + 4]) for i in range(0, len(body), 4)]
    if behaviour == "ambiguous" and not paragraphs[-1].rstrip().endswith("?"):
        paragraphs.append("Which of these fits your case?")
    return "\n\n".join(paragraphs[:1] + extras + paragraphs[1:])
