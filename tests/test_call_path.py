"""The per-call path's fast forms give what the straightforward code gave (issue 11 item 7): the request a
server sees, the reply schema, the batch prompt and its budget, the token estimate, the typo check.
Each reference below is the code as it was before, kept here to compare against. Speed: bench/ only.
"""

from __future__ import annotations

import asyncio
import copy
import random
import re
from pathlib import Path

import pytest

from agent import tokens
from agent.plan import load_plan
from agent.prompts import PlanPrompts, build_request, render, sample_request, spec_lines, system_prompt
from agent.providers.base import Request
from agent.records import Spec
from agent.reply import ITEM_MODELS, _strict_schema, reply_schema
from tests.fakeserver import fake_server_fixture  # noqa: F401 - registers `fake_server`
from tests.test_fast_paths import HAND_WRITTEN, simulated_texts

ROOT = Path(__file__).resolve().parent.parent
PLANS = sorted(p for p in (ROOT / "plans").glob("*.yaml") if not p.name.endswith(".requirements.yaml"))


# ---- the reply schema --------------------------------------------------------------------------------

def old_reply_schema(shape: str, ids: list[str]) -> dict:
    item = _strict_schema(ITEM_MODELS[shape].model_json_schema())
    examples: dict = {"type": "array", "items": item}
    if ids:
        item["properties"]["id"] = {"type": "string", "enum": list(ids)}
        examples["minItems"] = examples["maxItems"] = len(ids)
    return {"type": "object", "properties": {"examples": examples}, "required": ["examples"],
            "additionalProperties": False}


@pytest.mark.parametrize("shape", sorted(ITEM_MODELS))
def test_reply_schema_built_once_equals_a_fresh_build_and_is_never_shared(shape):
    for ids in ([], ["a"], ["r1b2-0", "r1b2-1", "r1b2-2"]):
        schema = reply_schema(shape, ids)
        assert schema == old_reply_schema(shape, ids)
        # a caller changing its schema (the judge adds fields to its own) must not change the next one
        copy_before = copy.deepcopy(schema)
        schema["properties"]["examples"]["items"]["properties"]["id"]["x"] = 1
        schema["properties"]["examples"]["items"]["required"].append("x")
        assert reply_schema(shape, ids) == copy_before


# ---- the batch request -------------------------------------------------------------------------------

def old_output_budget(plan, specs) -> int:
    total = 0.0
    for s in specs:
        words, turns = 0.0, 1.0
        for d, c in s.labels.items():
            cat = plan.dimensions[d].category(c) if d in plan.dimensions else None
            if cat is not None and cat.max_words:
                words += cat.max_words
            if cat is not None and cat.min_turns is not None:
                turns = max(turns, (cat.min_turns + (cat.max_turns or cat.min_turns + 1)) / 2)
        words = (words or 400) * turns
        if plan.record_shape == "preference":
            words *= 2
        total += words * 1.4 + 60
    budget = int(total * 1.3) + 50
    cap = plan.generation.max_output_tokens
    return max(256, min(budget, cap) if cap else budget)


def old_build_request(plan, specs, *, avoid=(), steering=None, temperature=None, system=None, references=(),
                      avoid_cues=False) -> Request:
    steering = steering or {}
    docs = {s.passage: s.document for s in specs if s.passage}
    user = render("batch.j2", specs=specs, spec_lines=spec_lines(plan, specs), avoid=list(avoid), avoid_cues=avoid_cues,
                  steering={"instructions": steering.get("instructions", [])}, documents=docs,
                  references=list(references))
    g = plan.generation
    return Request(system=system or system_prompt(plan), user=user,
                   schema=old_reply_schema(plan.record_shape, [s.id for s in specs]), model=g.model,
                   temperature=g.temperature if temperature is None else temperature,
                   max_tokens=old_output_budget(plan, specs), timeout=g.timeout_seconds, seed=g.seed,
                   specs=tuple(specs))


def random_specs(plan, rng: random.Random, n: int, start: int) -> list[Spec]:
    specs = []
    for i in range(n):
        labels = {d: rng.choice(dim.categories).name for d, dim in plan.dimensions.items() if rng.random() < 0.9}
        if rng.random() < 0.1:   # names the plan lacks add nothing to the budget, old or new
            labels[rng.choice(["not_a_dimension", next(iter(plan.dimensions))])] = "not_a_category"
        passage = f"doc-{rng.randrange(3)}" if rng.random() < 0.3 else ""
        specs.append(Spec(id=f"r1b{start}-{i}", labels=labels, topic=rng.choice(["", "egress fees", "SSH keys"]),
                          system_prompt=plan.system_prompts[0], passage=passage,
                          document=f"text of {passage}" if passage else ""))
    return specs


@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_one_plan_prompts_for_every_call_equals_building_each_request_afresh(path):
    plan = load_plan(path)
    prompts = PlanPrompts(plan)   # kept across calls, as the engine keeps it
    rng = random.Random(path.stem)
    for call in range(40):
        specs = random_specs(plan, rng, rng.randint(1, 6), call)
        kwargs = dict(avoid=[f"question {rng.randrange(100)}?" for _ in range(rng.randrange(5))],
                      steering={"instructions": ["be brief"] * rng.randrange(2)},
                      temperature=rng.choice([None, 0.7]), avoid_cues=rng.random() < 0.5,
                      references=[("a user", "a reply")] * rng.randrange(2), system=rng.choice([None, "own system"]))
        expected = old_build_request(plan, specs, **kwargs)
        assert prompts.request(specs, **kwargs) == expected
        assert build_request(plan, specs, **kwargs) == expected


# ---- the token estimate ------------------------------------------------------------------------------

def test_counting_by_lines_equals_counting_the_whole_text():
    if tokens.encoding() is None:
        pytest.skip("no tiktoken encoding offline")
    rng = random.Random(5)
    prompts = []
    for path in PLANS:
        plan = load_plan(path)
        prompts += [sample_request(plan).user, system_prompt(plan)]
        prompts += [build_request(plan, random_specs(plan, rng, 5, i), avoid=["q?"] * i).user for i in range(5)]
    pieces = ["word", "Word", " ", "  ", "\n", "\n\n", "\r\n", "\r", "\t", " \n", "'s", "'ll", "12345", "-", "- ",
              "[r1b2-0]", ":", "!!", "é", "日本", "🙂", "\u00a0", "\u2028", "\x1c", "<|endoftext|>", "  \n  x",
              "; ", ", ", "] ", ") ", "' ", "'s ", "'S", " '", "=", "(", ".", "?", "; \n", ";\n ", ". . ", "\u3000",
              "—", "… ", "« ", "123; 4", "\\ ", "` ", "~ ", "_ ", "- -", "$ 5"]
    fuzz = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts = prompts + simulated_texts(200) + HAND_WRITTEN + fuzz
    for text in texts:
        assert tokens.count_lines(text) == tokens.count(text), repr(text)
    assert sum(len(tokens._LINE_CUT.split(t)) > 1 for t in texts) > 1000   # the split is taken
    assert sum(tokens.PIECE_CUT in t for t in texts) > 1000   # and the cut within lines
    for text in texts:   # the quick split cuts where the regular expression does
        assert tokens.lines(text) == tokens._LINE_CUT.split(text), repr(text)


def test_counting_by_pieces_equals_counting_the_whole_text_on_every_short_string():
    """Brute force over short strings of characters chosen to meet every alternative of cl100k's pattern at a
    cut: letters, a digit, an apostrophe (contractions), ASCII and other punctuation, spaces, line breaks."""
    if tokens.encoding() is None:
        pytest.skip("no tiktoken encoding offline")
    import itertools

    alphabet = ["a", "s", "D", "1", "'", ";", ")", "[", "\u00bb", " ", "  ", "\n", "\t", "\u00a0"]
    cut = 0
    for n in range(1, 5):
        for chars in itertools.product(alphabet, repeat=n):
            text = "".join(chars)
            tokens._line_count.cache_clear()
            assert tokens.count_lines(text) == len(tokens.encoding().encode_ordinary(text)), repr(text)
            cut += tokens.PIECE_CUT in text
    assert cut > 500


def test_a_request_estimated_at_dispatch_and_at_its_call_is_counted_once(monkeypatch):
    import dataclasses

    from agent import retries

    plan = load_plan(ROOT / "plans" / "example.yaml")
    kit, rng = PlanPrompts(plan), random.Random(3)
    requests = [kit.request(random_specs(plan, rng, 5, call), avoid=[f"q{call}-{i}?" for i in range(call % 7)])
                for call in range(60)]
    expected = [tokens.count(r.system) + tokens.count(r.user) + 8 for r in requests]   # the uncached figure
    counted: list[str] = []
    monkeypatch.setattr(tokens, "count_lines", lambda text: counted.append(text) or tokens.count(text))
    retries._estimate.cache_clear()
    # a dispatch burst: every call's worst case first, then each call's own estimate as it starts
    assert [retries.estimate_input(r) for r in requests] == expected
    assert [retries.estimate_input(r) for r in requests] == expected
    assert counted == [r.user for r in requests]
    # equal texts in another request object (a copy with a new timeout) are the same figure, not a recount
    assert retries.estimate_input(dataclasses.replace(requests[0], timeout=9.0)) == expected[0]
    assert len(counted) == len(requests)


# ---- the wire: what a server sees --------------------------------------------------------------------

async def _old_sdk_body(url: str, request: Request, mode: str, extra_body: dict) -> None:
    """The request as the provider sent it before: every part a create() argument."""
    import json

    import openai

    from agent.providers.openai import _messages

    kwargs: dict = {"model": request.model, "messages": _messages(request, mode), "temperature": request.temperature,
                    "max_tokens": request.max_tokens, "timeout": request.timeout}
    if request.seed is not None:
        kwargs["seed"] = request.seed
    if extra_body:
        kwargs["extra_body"] = extra_body
    if mode == "json_schema":
        kwargs["response_format"] = {"type": "json_schema", "json_schema": {
            "name": request.schema_name, "schema": request.schema, "strict": True}}
    elif mode == "json_object+schema":
        kwargs["response_format"] = {"type": "json_object", "schema": request.schema}
        kwargs["extra_body"] = {**extra_body, "guided_json": request.schema}
    elif mode == "json_object":
        kwargs["response_format"] = {"type": "json_object"}
    client = openai.AsyncOpenAI(api_key="sk-test", base_url=url, max_retries=0)
    async with client:
        await client.chat.completions.with_raw_response.create(**kwargs)
    json.dumps(kwargs)   # the reference itself is plain JSON


@pytest.mark.parametrize("mode", ["json_schema", "json_object+schema", "json_object", "text"])
@pytest.mark.parametrize("extra_body", [{}, {"top_k": 20, "min_p": 0.05}, {"guided_json": {"user": "own"}}])
def test_the_body_on_the_wire_is_what_create_arguments_gave(fake_server, mode, extra_body):
    from agent.providers.openai import OpenAIProvider

    server = fake_server(max_requests=10)
    plan = load_plan(ROOT / "plans" / "example.yaml")
    request = sample_request(plan)
    provider = OpenAIProvider(model=request.model, api_key="sk-test", base_url=server.openai_url,
                              extra_body=extra_body)
    provider.mode = mode

    async def both() -> None:
        await provider.complete(request)
        await provider.aclose()
        await _old_sdk_body(server.openai_url, request, mode, extra_body)

    asyncio.run(both())
    new, old = server.requests[0], server.requests[1]
    assert new.path == old.path
    assert new.body == old.body
    assert list(new.body["messages"][0]) == ["role", "content"]
    skip = {"x-stainless-retry-count", "x-stainless-read-timeout", "content-length", "x-stainless-raw-response"}
    assert {k: v for k, v in new.headers.items() if k not in skip} == {
        k: v for k, v in old.headers.items() if k not in skip}


# ---- the typo check ----------------------------------------------------------------------------------

def old_typo_signals(text: str):
    from agent.audit import labels as L

    sig = L.TypoSignals()
    prose = L.URLS.sub(" ", L.CODE_SPANS.sub(" ", text))
    sig.informal += L.REPEATED_PUNCT.findall(prose)
    for raw in prose.split():
        token = raw.strip(L.STRIP)
        if not token:
            continue
        lower = token.lower().replace("’", "'")
        if L._is_informal(token, lower):
            sig.informal.append(token)
        else:
            parts = token.split("-")
            if len(parts) > 1 and any(p.lower() in L.TECH_WORDS for p in parts):
                continue
            sig.unknown += [p for p in parts if L._checkable(p) and not L.known_word(p)]
    starts = [prose.lstrip().split(maxsplit=1)[0]] if prose.strip() else []
    starts += [m.group(2) for m in re.finditer(r"(\S+)[.!?]\s+(?=(\S+))", prose) if L._ends_sentence(m.group(1))]
    sig.lowercase_starts = sum(1 for w in starts if L._lowercase_dictionary_word(w.strip(L.STRIP)))
    return sig


def test_typo_signals_per_cached_token_equal_the_per_token_walk():
    from agent.audit.labels import typo_signals

    rng = random.Random(7)
    pieces = ["pls", "dont", "i", "I", "i'm", "IM", "teh", "recieve", "nvidia-smi", "multi-gpu", "foo-bar", "the",
              "gpu", "GPUs", "(pls)", "'dont'", "??", "!!", ".", ",", "-", "--flag", "v1.2", "https://x.y", "a@b.c",
              "`code`", "```\nteh\n```", " ", "  ", "\n", "colour", "optimise", "can't", "won’t", "Thx", "thx.",
              "\u00a0", "\u2003", "\x1c", "e.g.", "the.", "a!", "x?", "...", "www.x", "@", "a://b"]
    fuzz = ["".join(rng.choice(pieces) + rng.choice([" ", "", "\n"]) for _ in range(rng.randint(0, 25)))
            for _ in range(2000)]
    texts = simulated_texts() + HAND_WRITTEN + fuzz
    for text in texts:
        assert typo_signals(text) == old_typo_signals(text), repr(text)
    assert sum(old_typo_signals(t).has_typos for t in texts) > 300


def test_code_block_prefilter_sees_code_in_containers():
    """Indented code inside lists and blockquotes, tabs and fences of either kind: the prefilter lets
    the parse see them (tests/test_fast_paths.py compares has_example with a full parse on fuzz too)."""
    from agent.audit.labels import has_example
    from tests.test_fast_paths import plain_has_example

    rng = random.Random(11)
    pieces = ["- ", "1. ", "> ", ">", "  ", "   ", "    ", "     ", "\t", " \t", "code", "x", "\n", "\n\n", "```",
              "~~~", "``", "~~", "\r\n"]
    fuzz = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 16))) for _ in range(4000)]
    cases = ["- item\n\n      code\n", ">     code", ">\tcode", "-     code", "1.      code", "> - a\n>\n>       b",
             "text\n\n\tcode", "~~~\nx\n~~~", "```\nx\n```"] + fuzz
    for text in cases:
        assert has_example(text) == plain_has_example(text), repr(text)
    assert sum(plain_has_example(t) for t in cases) > 200
    assert not re.search(r"```|~~~|\t| {4}", "- a\n- b")   # the skip is taken for plain lists


def test_a_sure_fence_is_one_the_full_parse_finds():
    """has_example's no-parse answer (_fenced_for_sure) is only ever True where a full parse finds a fence
    with content, and has_example still equals the full parse on texts built around fence lines."""
    from agent.audit.labels import _fenced_for_sure, has_example
    from tests.test_fast_paths import plain_has_example

    rng = random.Random(13)
    pieces = ["```", "````", "```json", "```a`b", "~~~", " ```", "   ```", "    ```", "\n", "\n", "\n\n", "x", "code",
              " ", "\t", "\u00a0", "- ", "> ", "1. ", "<div>", "</div>", "| a |", "|---|", "[a]: /u '", "'", "\r",
              "\x00", "`", "``", "    x", "pip install"]
    fuzz = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(6000)]
    cases = ["```\ncode\n```", "```\n\n```", "```\n```\nx", "```\n   ```\nx", "```bash\npip install x\n```",
             "text\n```\nx", "<div>\n```\nx", "| a |\n|---|\n```\nx", "[a]: /u 'b\n```\nx\n'", "- a\n```\nx",
             "> a\n```\nx", "    a\n```\nx", "```\n\u00a0\n```", "```\r\nx", "~~~\n```\nx"] + fuzz
    # a fence line with something before and after it
    cases += ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 4))) + "\n```" + rng.choice(["", "py", " `"])
              + "\n" + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) for _ in range(3000)]
    sure = 0
    for text in cases:
        if _fenced_for_sure(text):
            sure += 1
            assert plain_has_example(text), repr(text)
        assert has_example(text) == plain_has_example(text), repr(text)
    assert sure > 500


def test_formats_found_without_a_parse_equals_the_full_parse():
    """Texts with no list marker, ">", "|", "{", "[" or "json" are not parsed for their format: the full parse
    finds no list, table or JSON in them either."""
    from agent.audit import labels
    from tests.test_fast_paths import plain_formats_found

    rng = random.Random(17)
    pieces = ["```", "```json", "```JSON", "~~~", "\n", "\n", "\n\n", "x", " ", "\t", "    ", "- ", "* ", "+ ", "1. ",
              "2) ", "> ", "|", "| a |", "|---|", "---", "{", "}", "[", "]", "{\"a\": 1}", "[1, 2]", "1", "\"s\"",
              "\r", "\u00a0- ", "\f- ", "`", "json", "null"]
    fuzz = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 14))) for _ in range(6000)]
    cases = ["```\n[1, 2]\n```", "~~~\n{\"a\": 1}\n~~~", "```json\n1\n```", "```JSON\n\"s\"\n```", "> - a\n> - b",
             "a | b\n--|--", "- a\n- b", "\r- a\r- b", "  1. a\n  2. b", "```\nls -l\n```"]
    texts = simulated_texts() + HAND_WRITTEN + cases + fuzz
    assert all(plain_formats_found(t) for t in cases[:-1])
    skipped = 0
    for text in texts:
        assert labels.formats_found(text) == plain_formats_found(text), repr(text)
        skipped += bool(labels._MARKDOWN_HINT.search(text)) and not labels._format_hint(text)
    assert skipped > 100   # texts a parse would have read, now answered without one (274 on this corpus)


@pytest.mark.parametrize("path", PLANS, ids=[p.stem for p in PLANS])
def test_auditor_quota_lookup_equals_the_category_scan(tmp_path, path):
    from agent.audit.auditor import Auditor
    from agent.ledger import Ledger

    plan = load_plan(path)
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        auditor = Auditor(plan, ledger)
        for d, dim in plan.dimensions.items():
            for name in [c.name for c in dim.categories] + ["not_a_category"]:
                c = plan.dimensions[d].category(name)
                assert auditor.quota(d, name) == ((c.quota or 0) if c else 0)
        with pytest.raises(KeyError):
            auditor.quota("not_a_dimension", "x")
    finally:
        ledger.close()


def _old_request_for(engine, specs):
    """Engine.request_for before the seed went into PlanPrompts.request: the request built, then copied with it."""
    import dataclasses

    instructions = engine.steer.phrasing_instructions + engine.auditor.instructions()
    temperature = min(1.5, engine.plan.generation.temperature + engine.steer.temperature_step)
    shown = engine.avoid_list.shown(engine.avoid)
    request = engine.prompts.request(specs, avoid=shown + engine.steer.avoid_phrases,
                                     steering={"instructions": instructions}, temperature=temperature,
                                     avoid_cues=engine.avoid_list.mode == "cues",
                                     references=engine.references.next() if engine.references else ())
    return dataclasses.replace(request, seed=engine.rng.randrange(2**31)), (shown, engine.avoid_list.mode)


@pytest.mark.parametrize("name", ["example", "grounded"])
def test_the_engine_builds_each_request_and_draws_its_seed_as_before(tmp_path, name, monkeypatch):
    """Two engines of one plan, one building requests the old way: the same requests, seeds and draws after."""
    from agent.generate import Engine
    from agent.ledger import Ledger
    from agent.limits import Limiter
    from agent.providers import create
    from agent.runner import grounding
    from agent.tokens import load_prices

    monkeypatch.chdir(ROOT)   # the plan's sources are read from the folder datagen runs in
    plan = load_plan(ROOT / "plans" / f"{name}.yaml")
    engines = []
    for side in ("old", "new"):
        passages, _, references = grounding(plan)
        ledger = Ledger.open(tmp_path / side, plan, simulated=True)
        engines.append(Engine(plan, ledger, create("simulated", model="simulated-1"), Limiter(), load_prices(),
                              passages=passages, references=references))
    old, new = engines
    rng = random.Random(8)
    for _ in range(6):
        calls_old, calls_new = old.draw_batch(), new.draw_batch()
        assert calls_old == calls_new
        for specs_old, specs_new in zip(calls_old, calls_new, strict=True):
            avoid = [f"an earlier question {rng.randrange(1000)}?" for _ in range(rng.randrange(25))]
            old.avoid, new.avoid = list(avoid), list(avoid)
            if rng.random() < 0.3:
                old.avoid_list.step = new.avoid_list.step = rng.randrange(3)
            assert new.request_for(specs_new) == _old_request_for(old, specs_old)
    assert old.rng.random() == new.rng.random()
    if name == "grounded":
        assert new.references and old.references and new.references.next() == old.references.next()
    for e in engines:
        e.ledger.close()


# ---- the engine's wait for its next finished call ----------------------------------------------------

def _waits(script: list[list[int]], first_done: bool) -> list[tuple[list[str], list[str]]]:
    """Run a script of rounds (each: new tasks, by how many event-loop turns each takes; its first entry also
    the turns the loop gives away after its wait, as the engine's wait for its index) through the engine's wait
    or asyncio.wait; the done and pending tasks each wait returned, by name."""
    from agent.generate import FirstDone

    async def job(turns: int, fail: bool) -> int:
        for _ in range(turns):
            await asyncio.sleep(0)
        if fail:
            raise ValueError("a failed call")
        return turns

    async def main():
        waiter = FirstDone()
        names: dict[asyncio.Task, str] = {}
        in_flight: set[asyncio.Task] = set()
        seen = []
        for r, new in enumerate(script):
            for i, turns in enumerate(new):
                task = asyncio.ensure_future(job(turns, turns % 5 == 4))
                names[task] = f"{r}.{i}"
                in_flight.add(waiter.watch(task) if first_done else task)
            if not in_flight:
                continue
            if first_done:
                done, in_flight = await waiter.wait(in_flight)
            else:
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            # sorted: a set of tasks iterates in the order of their addresses, which differ from run to run
            seen.append((sorted(names[t] for t in done), sorted(names[t] for t in in_flight)))
            for t in done:
                t.exception()
            for _ in range(new[0] % 3 if new else 0):
                await asyncio.sleep(0)
        for t in in_flight:
            t.cancel()
        await asyncio.gather(*in_flight, return_exceptions=True)
        return seen

    return asyncio.run(main())


def test_the_engine_waits_for_its_next_finished_call_as_asyncio_wait_did():
    rng = random.Random(12)
    several = 0
    for _ in range(300):
        script = [[rng.choice([0, 0, 1, 2, 3, 4, 6, 9]) for _ in range(rng.choice([0, 1, 1, 2, 5, 12]))]
                  for _ in range(rng.randint(1, 25))]
        expected = _waits(script, first_done=False)
        got = _waits(script, first_done=True)
        # the same tasks done at each wait, and the same left in flight
        assert got == expected, script
        several += sum(len(done) > 1 for done, _ in expected)
    assert several > 50   # waits that found several calls done at once (one at a time is the easy case)
