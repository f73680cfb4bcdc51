"""Requirements -> Plan. Every default share and word range here is the seed's (shared/seeds/000)."""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from agent.plan import Category, Dimension, Generation, Measure, Plan
from agent.requirements import Requirements, slug

# (name, share, description[, declared measure values]); descriptions tell the model what makes an
# example belong to the category, and are quoted into the prompts. Ranges live only in the declared values
# (the prompts render them from there), never in a description, so an edited range reaches the model.
QUESTION_TYPES = [
    ("factual", 0.35, "Factual/informational: a direct question with a clear, specific answer ('What is X?', 'What are the specs of Y?')."),
    ("instructional", 0.28, "Instructional/how-to: step-by-step guidance, a process or a configuration ('How do I deploy ...?')."),
    ("comparative", 0.12, "Comparative: side-by-side comparison or trade-off analysis ('Which is better for X?', 'A vs B')."),
    ("troubleshooting", 0.18, "Troubleshooting/debugging: an error, a failure or a performance problem to diagnose and fix."),
    ("multi_step", 0.07, "Multi-step/complex: needs several pieces of information; a workflow, a pipeline or a system design."),
]
BEHAVIOURS = [
    ("standard", 0.72, "Standard: a clear, answerable, in-scope question; the assistant answers it fully."),
    ("ambiguous", 0.08, "Ambiguous: vague or open to several readings ('How do I train faster?'); the assistant asks a clarifying question instead of assuming."),
    ("adversarial", 0.08, "Adversarial/edge case: a trick question, contradiction, impossible scenario or dangerous setting; the assistant spots the problem and says so instead of answering confidently."),
    ("negative", 0.12, "Negative: out of scope, unethical, outdated or unknowable; the assistant declines or says it does not know, gives the reason briefly and redirects to legitimate help."),
]
COMPANY_DOMAINS = [
    ("product_features", 0.20, "Product features: core capabilities, what the product can and cannot do."),
    ("api_integration", 0.15, "API/technical integration: endpoints, parameters, integration patterns, SDK usage."),
    ("pricing_billing", 0.10, "Pricing/billing: cost structures, pricing models, budget estimation."),
    ("setup_configuration", 0.15, "Setup/configuration: installation, environment setup, configuration options."),
    ("best_practices", 0.10, "Best practices: recommended workflows, optimization tips, common patterns."),
    ("limitations", 0.10, "Limitations/constraints: known issues, boundaries, unsupported features."),
    ("use_cases", 0.10, "Use cases/workflows: real-world scenarios, end-to-end examples, industry applications."),
    ("company_policies", 0.10, "Company policies: terms of service, data handling, support channels."),
]
DIFFICULTY = [
    ("easy", 0.40, "Easy: single fact retrieval."),
    ("medium", 0.40, "Medium: multi-step reasoning."),
    ("hard", 0.20, "Hard: complex analysis and trade-offs."),
]
# seed 000: short 50-150, medium 150-400, long "400-800+" (open-ended: 1200 is where it stops)
RESPONSE_LENGTH = [
    ("short", 0.30, "Short answer: a quick fact or a simple how-to.", {"min_words": 50, "max_words": 150}),
    ("medium", 0.50, "Medium answer: a standard explanation with examples.", {"min_words": 151, "max_words": 400}),
    ("long", 0.20, "Long answer: a complex topic or a comprehensive guide.", {"min_words": 401, "max_words": 1200}),
]
# seed 000: short 5-20, medium 20-100, long "100-200+"
INPUT_LENGTH = [
    ("short", 0.40, "Short user message.", {"min_words": 5, "max_words": 20}),
    ("medium", 0.40, "Medium user message, with some context.", {"min_words": 21, "max_words": 100}),
    ("long", 0.20, "Long user message: detailed context, logs or constraints.", {"min_words": 101, "max_words": 400}),
]
TONES = [
    ("professional", 0.40, "Professional/technical: precise terminology, formal."),
    ("conversational", 0.40, "Conversational: friendly, accessible, encouraging."),
    ("mixed", 0.20, "Mixed: technical content in approachable language."),
]
EXAMPLES = [
    ("with_examples", 0.60, "With code or a concrete example: practical and actionable (a code block, a command or a worked example).", {"code": True}),
    ("conceptual", 0.40, "Conceptual only: theory, explanation and principles, no code block.", {"code": False}),
]
OPENNESS = [
    ("open", 0.60, "Open-ended: exploratory, several approaches, context-dependent."),
    ("closed", 0.40, "Closed: yes/no, a specific value or a definite answer."),
]
TURNS = [
    ("single_turn", 0.90, "Single turn: one user message and one assistant reply.", {"min_turns": 1, "max_turns": 1}),
    ("multi_turn", 0.10, "Multi-turn: follow-ups, clarifications or progressive refinement.", {"min_turns": 2, "max_turns": 3}),
]
TYPOS = [
    ("clean", 0.95, "Clean user language: correct spelling and grammar.", {"typos": False}),
    ("typos", 0.05, "Real user language: typos, misspellings, informal phrasing (e.g. 'pls', 'dont', 'teh').", {"typos": True}),
]
KTO_LABELS = [
    ("desirable", 0.50, "Desirable (label true): the completion is correct, helpful and on-tone."),
    ("undesirable", 0.50, "Undesirable (label false): the completion is plausible but flawed: wrong, unhelpful, off-tone or assuming."),
]
FORMAT_NAMES = {"lists": "list", "tables": "table", "json": "json"}
FORMAT_DESCRIPTIONS = {
    "plain": "Plain prose paragraphs (no list, table or JSON block).",
    "list": "Contains a bulleted or numbered list.",
    "table": "Contains a Markdown table.",
    "json": "Contains a JSON block in a ```json fence.",
}
FOCUS_SHARE = 0.7  # a user's stated focus gets 70%; the rest keep the seed's proportions among themselves

DEFAULT_EXCLUSIONS = [
    ("behaviour=negative", "response_length=long"),
    ("behaviour=ambiguous", "response_length=long"),
    ("question_type=multi_step", "response_length=short"),
]


def _dim(rows, description: str, measure: Measure = "trusted", shares: dict[str, float] | None = None) -> Dimension:
    cats = []
    for row in rows:
        name, share, desc, *declared = row
        cats.append(Category(name=name, share=round((shares or {}).get(name, share), 10), description=desc,
                             **(declared[0] if declared else {})))
    return Dimension(description=description, measure=measure, categories=cats)


def renormalise(shares: dict[str, float], zero: AbstractSet[str] = frozenset()) -> dict[str, float]:
    kept = {k: (0.0 if k in zero else v) for k, v in shares.items()}
    s = sum(kept.values())
    return {k: v / s for k, v in kept.items()}


def focus(rows, choice: str) -> dict[str, float] | None:
    """'mixed'/'varied' keep the seed's shares; naming one category gives it FOCUS_SHARE."""
    names = [r[0] for r in rows]
    if choice not in names:
        return None
    rest = {r[0]: r[1] for r in rows if r[0] != choice}
    s = sum(rest.values())
    return {choice: FOCUS_SHARE, **{k: v / s * (1 - FOCUS_SHARE) for k, v in rest.items()}}


def domain_dimension(req: Requirements) -> Dimension:
    if not req.subject_areas:
        return _dim(COMPANY_DOMAINS, "Company-data domains (seed 000)")
    if req.distribution == "weighted" and req.area_weights:
        weights = {a: req.area_weights.get(a, 0.0) for a in req.subject_areas}
    else:
        weights = {a: 1.0 for a in req.subject_areas}
    shares = renormalise(weights)
    rows = [(slug(a) or f"area_{i}", shares[a], f"{a}: questions about this subject area of {req.domain}.")
            for i, a in enumerate(req.subject_areas)]
    return _dim(rows, f"The subject areas of {req.domain}")


def format_dimension(req: Requirements) -> Dimension | None:
    chosen = [FORMAT_NAMES[f] for f in req.special_formats if f in FORMAT_NAMES]
    if not chosen:
        return None
    rows = [("plain", 0.5, FORMAT_DESCRIPTIONS["plain"], {"format": "plain"})]
    rows += [(name, 0.5 / len(chosen), FORMAT_DESCRIPTIONS[name], {"format": name}) for name in chosen]
    return _dim(rows, "Response formats the user asked for", measure="format")


def system_prompts(req: Requirements) -> list[str]:
    persona = req.persona.strip() or f"You are a helpful assistant for {req.domain}."
    base = f"{persona} Your job: {req.task}."
    if req.style_notes:
        base += f" Style: {req.style_notes}."
    if req.system_prompt_mode == "consistent" or req.system_prompt_variants == 1:
        return [base]
    variants = [
        base,
        f"{persona} Help users with {req.domain}: {req.task}. Be accurate; ask when a question is unclear.",
        f"{persona} Answer questions about {req.domain}. Say so when something is out of scope or unknown.",
        f"{persona} Support users of {req.domain} ({req.task}). Prefer concrete steps and examples.",
    ]
    out = variants[: req.system_prompt_variants]
    while len(out) < req.system_prompt_variants:
        out.append(f"{base} (variant {len(out) + 1})")
    return out


def build_plan(req: Requirements) -> Plan:
    behaviour_zero = set()
    if not req.edge_cases:
        behaviour_zero |= {"ambiguous", "adversarial"}
    if not req.negatives:
        behaviour_zero.add("negative")
    behaviour = renormalise({r[0]: r[1] for r in BEHAVIOURS}, behaviour_zero)

    dims: dict[str, Dimension] = {
        "question_type": _dim(QUESTION_TYPES, "What kind of question the user asks (seed 000)"),
        "behaviour": _dim(BEHAVIOURS, "Quality elements: how the assistant must behave", shares=behaviour),
        "domain": domain_dimension(req),
        "difficulty": _dim(DIFFICULTY, "Difficulty level", shares=focus(DIFFICULTY, req.complexity)),
        "response_length": _dim(RESPONSE_LENGTH, "Assistant response length in words (measured)",
                                "response_words", shares=focus(RESPONSE_LENGTH, req.response_length)),
        "input_length": _dim(INPUT_LENGTH, "User message length in words (measured)", "input_words"),
        "tone": _dim(TONES, "The assistant's tone", shares=focus(TONES, req.tone)),
        "examples": _dim(EXAMPLES, "With or without code/examples (measured)", "code"),
        "openness": _dim(OPENNESS, "Open-ended or closed question"),
        "turns": _dim(TURNS, "Single or multi-turn conversation (measured)", "turns",
                      shares=None if req.multi_turn else {"single_turn": 1.0, "multi_turn": 0.0}),
        "typos": _dim(TYPOS, "Real user language (measured)", "typos",
                      shares=None if req.typos else {"clean": 1.0, "typos": 0.0}),
    }
    fmt = format_dimension(req)
    if fmt is not None:
        dims["format"] = fmt
    if req.output_format == "kto":
        dims["kto_label"] = _dim(KTO_LABELS, "KTO desirable/undesirable balance (seed 002: about 50/50)")
    if req.output_format in ("dpo", "kto"):
        # preference and KTO records are single-turn prompt/response pairs
        dims["turns"] = _dim(TURNS, dims["turns"].description, "turns", shares={"single_turn": 1.0, "multi_turn": 0.0})

    provider = req.provider
    generation = Generation(provider=provider, model=req.model or default_model(provider))
    exclusions = [pair for pair in DEFAULT_EXCLUSIONS if all(_has(dims, item) for item in pair)]
    plan = Plan(
        guidance=guidance(req),
        name=req.plan_name,
        task=req.task,
        domain=req.domain,
        persona=req.persona,
        system_prompts=system_prompts(req),
        total=req.num_examples,
        validation_split=req.validation_split,
        output_format=req.output_format,
        special_formats=req.special_formats,
        generation=generation,
        exclusions=exclusions,
        dimensions=dims,
        sources=req.sources,
        examples=req.examples,
    )
    if plan.sources:  # topics proposed from the documents: the headings of each category's passages
        from agent.sources import load_for_plan, topics_from

        plan.topics = topics_from(load_for_plan(plan)[1])
    return plan


def guidance(req: Requirements) -> list[str]:
    """The interview's free-form wishes as rules every example follows (rendered into the system prompt)."""
    rules = []
    if req.style_notes:
        rules.append(f"The assistant's style: {req.style_notes}.")
    if req.phrasing_variation:
        rules.append("Vary how users ask: questions, commands and statements; beginner to expert wording.")
    else:
        rules.append("Keep the users' phrasing plain and consistent; do not vary styles for its own sake.")
    wanted = [f for f in req.special_formats if f in ("code", "lists", "tables", "json")]
    if wanted:
        rules.append("Use these formats where the spec allows: " + ", ".join(wanted) + ".")
    return rules


def default_model(provider: str) -> str:
    from agent import providers

    return providers.default_model(provider)


def _has(dims: dict[str, Dimension], item: str) -> bool:
    d, _, c = item.partition("=")
    cat = dims[d].category(c) if d in dims else None
    return cat is not None and cat.share > 0


SIZE_GUIDANCE = (
    "Seed guidance: simple tasks 100-500 examples, medium 500-2,000, complex 2,000-10,000+, "
    "domain adaptation 1,000-5,000; company Q&A: 1,000 minimum, 5,000-10,000 recommended."
)
