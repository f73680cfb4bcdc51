"""The requirements interview. `ask` and `say` are injected so it runs, and is tested, without a terminal.

ask(prompt, default) -> str     raises EOFError / KeyboardInterrupt when the person stops
say(text) -> None
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent import providers
from agent.errors import InputError, Interrupted
from agent.plan import NAME_PATTERN
from agent.planner import SIZE_GUIDANCE
from agent.requirements import Requirements, slug

Ask = Callable[[str, str | None], str]
Say = Callable[[str], None]
MAX_TRIES = 5  # re-asks per question before giving up: a script feeding bad answers must not loop forever


def parse_text(raw: str) -> str:
    text = raw.strip()
    if len(text) < 2:
        raise ValueError("please type a few words")
    return text


def parse_optional_text(raw: str) -> str:
    return raw.strip()


def parse_int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip().replace(",", "").replace("_", ""))
        except ValueError:
            raise ValueError(f"{raw.strip()!r} is not a whole number") from None
        if not lo <= value <= hi:
            raise ValueError(f"give a number from {lo:,} to {hi:,}")
        return value

    return parse


def parse_fraction(lo: float, hi: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        text = raw.strip()
        try:
            value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number (write 0.1 or 10%)") from None
        if not lo <= value <= hi:
            raise ValueError(f"give a value from {lo} to {hi} (for example 0.1 for 10%)")
        return value

    return parse


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        text = raw.strip().lower()
        exact = [c for c in choices if c == text]
        matches = exact or ([c for c in choices if c.startswith(text)] if text else [])
        if len(matches) != 1:
            raise ValueError(f"choose one of: {', '.join(choices)}")
        return matches[0]

    return parse


def parse_yes_no(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("y", "yes", "true", "1"):
        return True
    if text in ("n", "no", "false", "0"):
        return False
    raise ValueError("answer yes or no")


def parse_list(allowed: tuple[str, ...] | None = None) -> Callable[[str], list[str]]:
    def parse(raw: str) -> list[str]:
        if raw.strip().lower() in ("", "none", "-"):
            return []
        items = [x.strip() for x in raw.split(",") if x.strip()]
        if allowed:
            bad = [x for x in items if x.lower() not in allowed]
            if bad:
                raise ValueError(f"{bad[0]!r} is not one of: {', '.join(allowed)}")
            items = [x.lower() for x in items]
        return items

    return parse


def parse_paths(raw: str) -> list[str]:
    """Comma-separated files or folders that must exist ('none' or empty: no paths)."""
    paths = parse_list()(raw)
    missing = next((p for p in paths if not Path(p).expanduser().exists()), None)
    if missing:
        raise ValueError(f"{missing!r} does not exist (paths are read from the folder datagen runs in)")
    return paths


def parse_weights(areas: list[str]) -> Callable[[str], dict[str, float]]:
    def parse(raw: str) -> dict[str, float]:
        weights: dict[str, float] = {}
        for part in [p for p in raw.split(",") if p.strip()]:
            name, sep, value = part.rpartition("=")
            name = name.strip()
            if not sep or name not in areas:
                raise ValueError(f"write area=weight pairs with areas from: {', '.join(areas)}")
            try:
                weights[name] = float(value)
            except ValueError:
                raise ValueError(f"weight {value.strip()!r} of {name!r} is not a number") from None
            if weights[name] < 0:
                raise ValueError(f"weight of {name!r} must be >= 0")
        if not weights or sum(weights.values()) <= 0:
            raise ValueError("give at least one positive weight")
        return weights

    return parse


def parse_name(raw: str) -> str:
    import re

    text = raw.strip()
    if not re.match(NAME_PATTERN, text):
        raise ValueError("use letters, digits, '_', '-' or '.' (no spaces)")
    return text


@dataclass
class Question:
    key: str
    prompt: str
    parse: Callable[[str], Any]
    default: Callable[[dict[str, Any]], str | None] = lambda a: None
    help: str = ""
    when: Callable[[dict[str, Any]], bool] = lambda a: True
    dynamic_parse: Callable[[dict[str, Any]], Callable[[str], Any]] | None = field(default=None)


QUESTIONS: list[Question] = [
    Question("task", "What is the model being trained to do? (e.g. customer support, technical Q&A, code generation)",
             parse_text),
    Question("domain", "Which domain or subject matter? (e.g. cloud GPU rental, e-commerce, legal)", parse_text),
    Question("num_examples", "How many examples do you need?", parse_int(1, 10_000_000), lambda a: "1000",
             help=SIZE_GUIDANCE),
    Question("complexity", "Complexity: a mix (40% easy / 40% medium / 20% hard) or a focus? [mixed/easy/medium/hard]",
             parse_choice("mixed", "easy", "medium", "hard"), lambda a: "mixed"),
    Question("edge_cases", "Include edge cases: ambiguous (8%) and adversarial (8%) questions? [y/n]", parse_yes_no,
             lambda a: "yes", help="Seed: 5-10% each teaches the model to ask for clarification and spot bad premises."),
    Question("phrasing_variation", "Vary query phrasing and response styles? [y/n]", parse_yes_no, lambda a: "yes"),
    Question("multi_turn", "Include multi-turn conversations (10%)? [y/n]", parse_yes_no, lambda a: "yes"),
    Question("typos", "Include real user language with typos/informal phrasing (5%)? [y/n]", parse_yes_no,
             lambda a: "yes"),
    Question("tone", "Assistant tone: varied (40% professional / 40% conversational / 20% mixed) or one focus? "
             "[varied/professional/conversational/mixed]",
             parse_choice("varied", "professional", "conversational", "mixed"), lambda a: "varied"),
    Question("style_notes", "Any style notes for the assistant? (e.g. 'concise, no emojis'; empty for none)",
             parse_optional_text, lambda a: ""),
    Question("response_length", "Response length: varied (30% short / 50% medium / 20% long) or one focus? "
             "[varied/short/medium/long]", parse_choice("varied", "short", "medium", "long"), lambda a: "varied"),
    Question("special_formats", "Special formats to include (comma-separated: code, lists, tables, json; 'none')",
             parse_list(("code", "lists", "tables", "json")), lambda a: "code, lists"),
    Question("subject_areas", "Your subject areas, comma-separated (empty: the seed's 8 company-data domains: "
             "product features, API, pricing, setup, best practices, limitations, use cases, policies)",
             parse_list(), lambda a: ""),
    Question("distribution", "Distribute evenly across subject areas, or weighted? [even/weighted]",
             parse_choice("even", "weighted"), lambda a: "even", when=lambda a: bool(a.get("subject_areas"))),
    Question("area_weights", "Weights as area=weight, comma-separated (e.g. billing=2, setup=1)", parse_text,
             when=lambda a: a.get("distribution") == "weighted",
             dynamic_parse=lambda a: parse_weights(a["subject_areas"])),
    Question("negatives", "Include negative examples the assistant should decline or redirect (12%)? [y/n]",
             parse_yes_no, lambda a: "yes", help="Seed: 10-15% negatives teach the model its boundaries."),
    Question("validation_split", "Validation split (0 to 0.5)?", parse_fraction(0, 0.5), lambda a: "0.1",
             help="Seed: keep 10-20% aside to evaluate on."),
    Question("output_format", "Output format: openai (chat messages), alpaca, sharegpt, dpo (preference pairs), "
             "kto? [openai/alpaca/sharegpt/dpo/kto]", parse_choice("openai", "alpaca", "sharegpt", "dpo", "kto"),
             lambda a: "openai"),
    Question("system_prompt_mode", "System prompt: one consistent prompt or several varied ones? [consistent/varied]",
             parse_choice("consistent", "varied"), lambda a: "consistent"),
    Question("system_prompt_variants", "How many system prompt variations?", parse_int(2, 50), lambda a: "3",
             when=lambda a: a.get("system_prompt_mode") == "varied"),
    Question("persona", "The assistant's persona / system prompt (empty for a default built from the task)",
             parse_optional_text, lambda a: ""),
    Question("sources", "Documents to ground answers in (folder or files, comma-separated: Markdown, text, HTML, "
             "PDF; empty for none)", parse_paths, lambda a: "",
             help="Every example then answers from one passage of them; answers stating what they do not say are "
                  "rejected."),
    Question("examples", "Real examples to learn the style from (files in any export format, comma-separated; "
             "empty for none)", parse_paths, lambda a: "",
             help="A few are shown per call as style references; generated examples that copy one are rejected."),
    Question("provider", f"Which provider will generate? [{'/'.join(providers.names(installed=False))}] "
             "(simulated is offline, for trying)", parse_text, lambda a: "simulated",
             dynamic_parse=lambda a: parse_choice(*providers.names())),
    Question("model", "Which model? (used for the cost estimate)", parse_optional_text,
             lambda a: providers.default_model(a.get("provider") or "simulated")),
    Question("name", "A short name for this plan (file plans/<name>.yaml)", parse_name,
             lambda a: slug(a.get("task", "dataset"))[:40].strip("_") or "dataset"),
]


def _ask_one(q: Question, answers: dict[str, Any], ask: Ask, say: Say) -> Any:
    parse = q.dynamic_parse(answers) if q.dynamic_parse else q.parse
    if q.help:
        say(q.help)
    for _ in range(MAX_TRIES):
        raw = ask(q.prompt, q.default(answers))
        if raw.strip() == "" and q.default(answers) is not None:
            raw = q.default(answers) or ""
        try:
            return parse(raw)
        except ValueError as e:
            say(f"  ! {e}")
    raise InputError(f"no valid answer to '{q.key}' after {MAX_TRIES} tries; the interview stopped and wrote nothing")


def ask_requirements(ask: Ask, say: Say) -> Requirements:
    """Ask every question in order; re-ask on a bad answer. Ctrl-C / EOF -> Interrupted, nothing written."""
    answers: dict[str, Any] = {}
    say("datagen interview: answer each question, or press Enter to take the [default].")
    try:
        for q in QUESTIONS:
            if q.when(answers):
                answers[q.key] = _ask_one(q, answers, ask, say)
    except (KeyboardInterrupt, EOFError):
        raise Interrupted("interview stopped; nothing was written") from None
    try:
        return Requirements.model_validate(answers)
    except ValidationError as e:  # cross-field rules; the per-question parsers catch the rest
        from agent.yamlfile import validation_message

        raise InputError(validation_message("interview", e)) from None


def confirm(ask: Ask, prompt: str) -> bool:
    for _ in range(MAX_TRIES):
        try:
            return parse_yes_no(ask(prompt, "no"))
        except ValueError:
            continue
        except (KeyboardInterrupt, EOFError):
            raise Interrupted("interview stopped; nothing was written") from None
    return False


def conduct(ask: Ask, say: Say, show_plan: Callable[[Any], None], *, answers_path=None, out_dir=None,
            force: bool = False, approve: bool | None = None):
    """The whole interview: requirements -> plan -> shown -> approved -> both files written.

    Returns (requirements_path, plan_path), or None when the person declines. Nothing is written before
    approval, and an existing plan is never overwritten without --force (or, interactively, a yes).
    """
    from pathlib import Path

    from agent.estimate import estimate_lines
    from agent.plan import plan_yaml
    from agent.planner import build_plan
    from agent.yamlfile import dump_yaml, load_model, write_atomic

    out = Path(out_dir or "plans")
    if answers_path is not None:
        req = load_model(Path(answers_path), Requirements, "answers")
    else:
        req = ask_requirements(ask, say)
    plan = build_plan(req)
    show_plan(plan)
    for line in estimate_lines(plan):
        say(line)

    plan_path = out / f"{plan.name}.yaml"
    req_path = out / f"{plan.name}.requirements.yaml"
    interactive = answers_path is None
    if plan_path.exists() and not force:
        if not interactive:
            raise InputError(f"{plan_path} already exists; pass --force to overwrite it or set another 'name' in {answers_path}")
        if not confirm(ask, f"{plan_path} exists. Overwrite it? [y/n]"):
            raise Interrupted(f"kept the existing {plan_path}; nothing was written (answer the name question differently)")
    if approve is None:
        approve = confirm(ask, "Approve this plan and write it? [y/n]") if interactive else True
    if not approve:
        say("Not approved: nothing was written.")
        return None
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(req_path, dump_yaml(req.model_dump(mode="json")))
        write_atomic(plan_path, plan_yaml(plan))
    except OSError as e:
        raise InputError(f"cannot write the plan into {out}: {e.strerror}; choose a writable --out-dir") from None
    say(f"Wrote {req_path} and {plan_path}. Next: datagen generate --plan {plan_path}")
    return req_path, plan_path
