"""The prompt's "Already covered" list, and what to do when a model copies it instead of avoiding it.

Strong models read the list as "write something else". Small local models (Qwen2.5-0.5B on llama.cpp) copy
its questions word for word as their new user turns: every such example is a near-duplicate and the run
stalls. So the list degrades in steps, each logged, once its entries come back as examples:
questions (whole earlier questions) -> cues (a few content words of each) -> off (no list at all).
"""

from __future__ import annotations

import functools
import logging
import re

from rapidfuzz import fuzz, process

log = logging.getLogger(__name__)

STEPS = ("questions", "cues", "off")
COPIES_TO_STEP = 2        # calls that copied the list (at this step) before the next, smaller step
COPY_RATIO = 90           # rapidfuzz ratio (0-100) of an example's question to a list entry that counts as a copy
CUE_WORDS = 4
_STOP = (
    "a an the and or but if of to in on at for from by with about into over is are was were be been do does did "
    "i me my we our you your it its this that these those can could should would will how what why when where "
    "which who whom there their them they he she his her not no yes so as than then just also any some all "
    "get have has had am please there's i'm what's how's")
STOPWORDS = frozenset(_STOP.split())


def cue(question: str) -> str:
    """A few content words of a question, e.g. 'How do I stop a GPU instance?' -> 'stop gpu instance'."""
    words = [w for w in re.findall(r"[\w'-]+", question.lower()) if w not in STOPWORDS and len(w) > 1]
    seen: list[str] = []
    for w in words:
        if w not in seen:
            seen.append(w)
    return " ".join(seen[:CUE_WORDS])


def is_copy(shown: list[str], text: str) -> bool:
    """Is this example question a copy of an entry of the avoid list a call was shown? (Some entry's
    fuzz.ratio with it, both lower-cased, is at least COPY_RATIO.)"""
    if not text or not shown:
        return False
    found = process.extractOne(text.lower(), _lowered(tuple(shown)), scorer=fuzz.ratio, processor=None,
                                score_cutoff=COPY_RATIO)
    return found is not None


@functools.lru_cache(maxsize=64)
def _lowered(shown: tuple[str, ...]) -> list[str]:
    """A call's list, lower-cased once for all its examples (the same list is asked about per example)."""
    return [s.lower() for s in shown]


class AvoidList:
    def __init__(self) -> None:
        self.step = 0
        self.copies = 0           # copies seen at the current step

    @property
    def mode(self) -> str:
        return STEPS[self.step]

    def shown(self, questions: list[str]) -> list[str]:
        """The entries to put in the prompt for these earlier questions, at the current step."""
        if self.mode == "off":
            return []
        if self.mode == "cues":
            return list(dict.fromkeys(c for c in (cue(q) for q in questions) if c))
        return [q[:160] for q in questions]

    def copied(self, shown: list[str], texts: list[str]) -> int:
        """How many of a call's example questions are copies of the list it was shown."""
        return sum(is_copy(shown, t) for t in texts)

    def note(self, shown: list[str], mode: str, texts: list[str]) -> None:
        """After a call: did it copy the list it was shown (half or more of its examples are copies)? Step
        down after COPIES_TO_STEP such calls. A strong model's occasional near-copy never counts."""
        if mode != self.mode or not texts:   # sent before the last step: already acted on
            return
        if self.copied(shown, texts) * 2 < len(texts):
            return
        self.copies += 1
        if self.copies >= COPIES_TO_STEP and self.step < len(STEPS) - 1:
            self.step += 1
            self.copies = 0
            log.warning("the model copies the prompt's 'Already covered' list into its examples (%d calls): "
                        "showing it as %s for the rest of the run", COPIES_TO_STEP,
                        "short topic cues" if self.mode == "cues" else "nothing (list dropped)")
