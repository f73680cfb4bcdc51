"""What a person asked for: the answers to the seed's "Gathering Requirements" questions."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.plan import NAME_PATTERN, OutputFormat, SpecialFormat, Strict

Focus = Literal["mixed", "easy", "medium", "hard"]
ToneChoice = Literal["varied", "professional", "conversational", "mixed"]
LengthChoice = Literal["varied", "short", "medium", "long"]


class Requirements(Strict):
    name: str = Field(default="", description="plan name; derived from the task when empty")
    task: str = Field(min_length=3, description="what the model is trained to do")
    domain: str = Field(min_length=2, description="subject matter, e.g. 'cloud GPU rental'")
    num_examples: int = Field(ge=1, le=10_000_000)
    complexity: Focus = "mixed"
    edge_cases: bool = True
    phrasing_variation: bool = True
    multi_turn: bool = True
    typos: bool = True
    tone: ToneChoice = "varied"
    style_notes: str = ""
    response_length: LengthChoice = "varied"
    special_formats: list[SpecialFormat] = Field(default_factory=lambda: list[SpecialFormat](["code", "lists"]))
    subject_areas: list[str] = Field(default_factory=list, description="the company's domain categories")
    distribution: Literal["even", "weighted"] = "even"
    area_weights: dict[str, float] = Field(default_factory=dict)
    negatives: bool = True
    validation_split: float = Field(default=0.1, ge=0, le=0.5)
    output_format: OutputFormat = "openai"
    system_prompt_mode: Literal["consistent", "varied"] = "consistent"
    system_prompt_variants: int = Field(default=3, ge=1, le=50)
    persona: str = ""
    sources: list[str] = Field(default_factory=list, description="documents to ground answers in")
    examples: list[str] = Field(default_factory=list, description="real examples: style references")
    provider: str = "simulated"   # a name in the provider registry

    @field_validator("provider")
    @classmethod
    def _provider(cls, name: str) -> str:
        from agent import providers

        return providers.checked_name(name)
    model: str = ""

    @field_validator("subject_areas")
    @classmethod
    def _areas(cls, areas: list[str]) -> list[str]:
        cleaned = [a.strip() for a in areas if a.strip()]
        slugs = [slug(a) for a in cleaned]
        dup = next((a for a, s in zip(cleaned, slugs, strict=True) if slugs.count(s) > 1), None)
        if dup:
            raise ValueError(f"subject area {dup!r} is listed twice")
        return cleaned

    @field_validator("area_weights")
    @classmethod
    def _weights(cls, weights: dict[str, float]) -> dict[str, float]:
        bad = next((k for k, v in weights.items() if not v >= 0), None)
        if bad is not None:
            raise ValueError(f"weight of {bad!r} must be a number >= 0")
        return weights

    @model_validator(mode="after")
    def _consistent(self) -> Requirements:
        if self.name and not re.match(NAME_PATTERN, self.name):
            raise ValueError(f"name: {self.name!r} may only hold letters, digits, '_', '-' and '.'")
        if self.distribution == "weighted" and self.area_weights:
            unknown = set(self.area_weights) - set(self.subject_areas)
            if unknown:
                raise ValueError(f"area_weights: {sorted(unknown)[0]!r} is not one of the subject_areas")
            if sum(self.area_weights.values()) <= 0:
                raise ValueError("area_weights: the weights must not all be 0")
        return self

    @property
    def plan_name(self) -> str:
        return self.name or slug(self.task)[:40].strip("_") or "dataset"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
