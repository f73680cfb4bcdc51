"""The auditor: decides what every returned example really is, and whether it is accepted.

For each example: structural and content checks -> measured labels -> near-duplicate check -> room in
every category it really belongs to. Accepted examples count under their AUDITED labels; an example is
never counted where it does not belong. Categories that keep coming out wrong get stronger instructions,
and after a bounded number of misses in a row are reported unfillable instead of looped on forever.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from agent.audit import grounding
from agent.audit.checks import check_record
from agent.audit.dedup import NearDupIndex
from agent.audit.diversity import DiversityTracker, shortfalls, steering
from agent.audit.labels import measure
from agent.audit.state import StateError, dumps, loads, same_shape
from agent.ledger import SURPLUS, ExampleRow, Ledger, is_lost, is_surplus
from agent.plan import Plan
from agent.records import (
    BatchSummary,
    CategoryState,
    Diversity,
    Missing,
    RunState,
    Spec,
    Steering,
    Unfillable,
    response_text,
    user_text,
)

Counts = dict[str, dict[str, int]]
SNAPSHOT_EVERY_S = 60.0
log = logging.getLogger(__name__)
# the only modules whose classes a stored diversity state may name (agent/audit/state.py: data, never code)
STATE_MODULES = ("agent.audit.diversity", "agent.audit.overlap", "agent.audit.text_stats")


def to_record(item: Any, spec: Spec, shape: str) -> dict[str, Any]:
    """A parsed reply item -> the canonical record (the system prompt is ours, never the model's)."""
    if shape == "chat":
        messages = [{"role": "system", "content": spec.system_prompt}] if spec.system_prompt else []
        messages += [{"role": m.role, "content": m.content} for m in item.messages]
        return {"messages": messages}
    if shape == "preference":
        return {"system": spec.system_prompt, "prompt": item.prompt, "chosen": item.chosen, "rejected": item.rejected}
    return {"system": spec.system_prompt, "prompt": item.prompt, "completion": item.completion,
            "label": spec.labels.get("kto_label", "desirable") == "desirable"}


class Auditor:
    """Owns the in-memory cache of the run's counts and per-category state, started from the ledger's
    run_state() (agent/ledger.py says how a resume knows what remains) and written back through the engine's
    record_call (category_state()) and record_batch."""

    temperature_adjustable = True   # False: the provider ignores temperature (the runner sets it from its capabilities)

    def __init__(self, plan: Plan, ledger: Ledger, state: RunState | None = None, references=None):
        state = state or ledger.run_state(plan)
        self.plan = plan
        # (dimension, category) -> quota: every audited label asks, a dict lookup instead of a category scan
        self._quotas = {(d, c.name): c.quota or 0 for d, dim in plan.dimensions.items() for c in dim.categories}
        self.references = references           # agent/references.py: real examples never to be copied
        self.grounding = GroundingTally(ledger, plan)
        self.shape = plan.record_shape
        self.accepted: Counts = {d: {c.name: 0 for c in dim.categories} for d, dim in plan.dimensions.items()}
        for d, cats in state.accepted.items():
            for c, n in cats.items():
                self.accepted.setdefault(d, {})[c] = n
        self.n_accepted = state.n_accepted
        self.index = NearDupIndex(plan.quality.dedup_threshold)
        # filled by load_index(), which the engine runs in a thread while the first calls are in flight
        self.kept_texts = ledger.accepted_texts()
        self.measured_dims = [d for d, dim in plan.dimensions.items() if dim.measure != "trusted"]
        self.plan_hash = state.categories.plan_hash
        self.misses: Counter[tuple[str, str]] = Counter(state.categories.misses)
        # a category given up on stays given up on across resumes of the same plan; its shortfall is recomputed
        self.unfillable: dict[tuple[str, str], int] = {
            (d, c): max(0, self.quota(d, c) - self.accepted.get(d, {}).get(c, 0))
            for (d, c) in state.categories.unfillable if d in plan.dimensions and plan.dimensions[d].category(c)}
        self._categories_changed = False
        # the diversity state is restored at the first batch audit, not here: resume starts calling at once
        self.ledger = ledger
        self._tracker: DiversityTracker | None = None
        self._dirty = False
        self._last_snapshot = time.monotonic()
        self._pending_diversity: list[dict[str, Any]] = []
        self.batch_reasons: Counter[str] = Counter()
        self.batch_processed = 0
        self.batch_accepted = 0

    def load_index(self) -> None:
        """Rebuild the near-duplicate index from the accepted examples (seconds at 100k: LSH hashing)."""
        self.index.extend(self.kept_texts)
        self.kept_texts = []

    # -- quotas -------------------------------------------------------------------------------------
    def quota(self, dim: str, cat: str) -> int:
        if dim not in self.plan.dimensions:
            raise KeyError(dim)    # as plan.dimensions[dim] did
        return self._quotas.get((dim, cat), 0)

    def remaining(self) -> Counts:
        """What is left to fill, per category; unfillable categories count as nothing left to draw."""
        return {d: {c.name: 0 if (d, c.name) in self.unfillable else max(0, (c.quota or 0) - self.accepted[d].get(c.name, 0))
                    for c in dim.categories} for d, dim in self.plan.dimensions.items()}

    def shortfall(self) -> int:
        return self.plan.total - self.n_accepted

    # -- one example ----------------------------------------------------------------------------------
    def admit(self, spec: Spec, item: Any, judged: dict[str, str] | None = None,
              faithful: int | None = None, copied: Callable[[str], bool] | None = None) -> ExampleRow:
        record = to_record(item, spec, self.shape)
        text = user_text(record)
        row = ExampleRow(spec_id=spec.id, status="rejected", requested=dict(spec.labels), record=record,
                         topic=spec.topic, user_text=text, passage=spec.passage)
        issues = check_record(record, self.shape, self.plan.quality, requested=spec.labels)
        if issues:
            return self._reject(row, f"check:{issues[0].code}", "; ".join(i.message for i in issues[:3]))
        measured = measure(record, self.plan, requested=spec.labels)
        # requested labels, overridden by an LLM judge's where the plan asks for one, then by measurement
        labels = {**spec.labels, **(judged or {}), **{d: c for d, c in measured.items() if d in spec.labels}}
        row.audited = labels   # an off_spec row keeps None for the dimension it fits no category of
        got = {**(judged or {}), **measured}
        # a question copied from the prompt's avoid list (copied(text)) says nothing about whether its categories
        # can be filled: its misses are the avoid list's (AvoidList shrinks it), not the category's
        if copied is None or all(got[d] == spec.labels[d] for d in got if d in spec.labels) or not copied(text):
            self._count_misses(spec.labels, got)
        off = next((d for d, c in measured.items() if c is None), None)
        if off is not None:
            return self._reject(row, f"off_spec:{off}", f"fits no {off} category")
        audited = {d: c for d, c in labels.items() if c is not None}   # all of them: off_spec is ruled out
        dup = self.index.find(text)
        if dup is not None:
            return self._reject(row, "near_duplicate", f"ratio {dup[1]:.3f} with accepted example {dup[0]}")
        quotas, accepted = self._quotas, self.accepted     # quota(d, c) without a method call per label
        full = next((d for d, c in audited.items()
                     if accepted[d].get(c, 0) >= (quotas[d, c] if (d, c) in quotas else self.quota(d, c))), None)
        if full is not None:
            how = f"came out as {full}={audited[full]}" + (
                f" (asked {spec.labels[full]})" if audited[full] != spec.labels.get(full) else "")
            if spec.tail and audited[full] == spec.labels.get(full):
                # a tail copy whose own slot another copy filled first: the extra draw, not a fault (a copy that
                # came out as another, full category missed, and counts as no_room like any other example)
                return self._reject(row, f"{SURPLUS}{full}", f"{how}, already filled by another copy of this spec")
            return self._reject(row, f"no_room:{full}", f"{how}, which is already full")
        if self.references is not None:
            real = self.references.copied(text)
            if real is not None:
                return self._reject(row, "copies_real_example", f"ratio {real[1]:.3f} with real example {real[0] + 1}")
        if spec.document:
            bad = self.grounding.check(spec, record, self.shape, audited.get("domain", ""))
            if bad:
                return self._reject(row, "ungrounded", "unsupported claim" + ("s" if len(bad) > 1 else "") + ": "
                                    + ", ".join(f"{c.text!r} ({c.kind})" for c in bad[:3]) + f"; not in passage {spec.passage}")
            if faithful is not None and self.grounding.rate(audited.get("domain", ""), faithful) < grounding.FAITHFUL_MIN:
                return self._reject(row, "unfaithful", f"the judge rated faithfulness to passage {spec.passage} "
                                    f"{faithful}/5 (needs {grounding.FAITHFUL_MIN})")
        row.status = "accepted"
        for d, c in audited.items():
            counts = accepted[d]
            counts[c] = counts.get(c, 0) + 1
        self.n_accepted += 1
        self.index.add(spec.id, text)
        self.batch_accepted += 1
        self.batch_processed += 1
        self._pending_diversity.append(self._div_item(record, audited, text))
        return row

    def reject_spec(self, spec: Spec, reason: str, detail: str) -> ExampleRow:
        row = ExampleRow(spec_id=spec.id, status="rejected", requested=dict(spec.labels), topic=spec.topic,
                         passage=spec.passage)
        return self._reject(row, reason, detail)

    def _reject(self, row: ExampleRow, reason: str, detail: str) -> ExampleRow:
        row.status, row.reason, row.detail = "rejected", reason, detail
        self.batch_reasons[reason] += 1
        self.batch_processed += 1
        return row

    def count_failed(self, specs: list[Spec]) -> None:
        """Specs of one call whose items were invalid or missing: one miss for each category they asked for,
        once per call (a reply is one attempt), on the dimensions whose hits are counted too (measured, or
        judged): a trusted label's misses would never be reset by a hit."""
        wanted = {(d, c) for s in specs for d, c in s.labels.items()
                  if self.plan.dimensions[d].measure != "trusted" or self.plan.audit.judge}
        for d, c in sorted(wanted):
            self._count_misses({d: c}, {d: None})

    def _count_misses(self, requested: dict[str, str], measured: dict[str, str | None]) -> None:
        for d, got in measured.items():
            want = requested.get(d)
            if want is None:
                continue
            if got == want:
                if self.misses.get((d, want)):
                    self.misses[(d, want)] = 0
                    self._categories_changed = True
                continue
            self.misses[(d, want)] += 1
            self._categories_changed = True
            if self.misses[(d, want)] >= self.plan.audit.max_attempts_per_category:
                self.unfillable[(d, want)] = max(0, self.quota(d, want) - self.accepted[d].get(want, 0))

    def category_state(self) -> dict[str, bytes] | None:
        """The misses and unfillable categories to store with the call that changed them (None: unchanged)."""
        if not self._categories_changed:
            return None
        self._categories_changed = False
        state = CategoryState(plan_hash=self.plan_hash, misses=dict(self.misses), unfillable=dict(self.unfillable))
        return {CategoryState.STATE_KEY: state.dumps()}

    # -- steering the next draws ------------------------------------------------------------------------
    def instructions(self) -> list[str]:
        """Stronger instructions for categories the model keeps missing."""
        out = []
        for (d, c), n in self.misses.most_common():
            if n < 2 or (d, c) in self.unfillable:
                continue
            cat = self.plan.dimensions[d].category(c)
            if cat is None:  # misses are counted for specs drawn from this plan, and dropped when it changes
                raise RuntimeError(f"a miss was counted for {d}={c}, which is not in the plan")
            out.append(f"Examples with {d}={c} keep coming out wrong ({n} in a row): make them exactly "
                       f"'{cat.description}'" + (f" Count the words: {cat.min_words}-{cat.max_words}." if cat.min_words else ""))
        return out[:6]

    # -- batch audit ------------------------------------------------------------------------------------
    def close_batch(self, number: int, **extra: Any) -> BatchSummary:
        tracker = self.tracker  # first: restoring it folds the ledger's tail into the pending items
        items, self._pending_diversity = self._pending_diversity, []
        metrics = tracker.add_batch(items)
        found = shortfalls(metrics.cumulative, self.n_accepted, self.plan.total)
        steer = Steering.from_json(steering(found, tracker.used_verbs, temperature=self.temperature_adjustable))
        if steer.avoid_list_size:
            steer.avoid_phrases = tracker.common_phrases(steer.avoid_list_size)
        lost = {r: n for r, n in self.batch_reasons.most_common() if is_lost(r)}  # specs no example came back for
        div = metrics.to_dict()
        surplus = sum(n for r, n in self.batch_reasons.items() if is_surplus(r))  # tail copies not needed
        summary = BatchSummary(
            batch=number,
            processed=self.batch_processed,
            accepted=self.batch_accepted,
            rejected=self.batch_processed - self.batch_accepted - sum(lost.values()) - surplus,
            rejections={r: n for r, n in self.batch_reasons.most_common() if r not in lost and not is_surplus(r)},
            surplus=surplus,
            failed_calls=sum(lost.values()),
            lost=lost,
            duplicates=self.batch_reasons.get("near_duplicate", 0),
            total_accepted=self.n_accepted,
            table={d: {c.name: {"target": c.quota, "accepted": self.accepted[d].get(c.name, 0),
                                "remaining": max(0, (c.quota or 0) - self.accepted[d].get(c.name, 0))}
                       for c in dim.categories} for d, dim in self.plan.dimensions.items()},
            diversity=Diversity(batch=div["batch"], cumulative=div["cumulative"]),
            shortfalls=[s.to_dict() for s in found],
            steering=steer,
            missing=[Missing(d, c, n) for (d, c), n in self.misses.items() if n >= 2],
            unfillable=self.unfillable_list(),
            grounding=self.grounding.summary() if self.grounding.active else None,
            **extra,
        )
        self.batch_reasons.clear()
        self.batch_processed = self.batch_accepted = 0
        self._dirty = True
        return summary

    def unfillable_list(self) -> list[Unfillable]:
        return [Unfillable(d, c, n) for (d, c), n in self.unfillable.items()]

    @property
    def dirty(self) -> bool:
        return self._dirty

    def snapshot_due(self) -> bool:
        return self._dirty and time.monotonic() - self._last_snapshot >= SNAPSHOT_EVERY_S

    def snapshot(self, last_accepted_id: int) -> dict[str, bytes]:
        """The diversity state to store in the ledger (agent/audit/state.py's format). Encoding is
        O(examples), so it is done at most once a minute and at the end of a run; after a crash the few
        examples since are re-read."""
        self._dirty = False
        self._last_snapshot = time.monotonic()
        try:
            blob = dumps(self.tracker, STATE_MODULES)
        except StateError as e:  # a tracker holding something the format cannot store: resume rebuilds it
            log.warning("diversity state not saved (%s); a resume will rebuild it from the examples", e)
            return {}
        return {"diversity": blob, "diversity_upto": str(last_accepted_id).encode()}

    def _div_item(self, record: dict[str, Any], audited: dict[str, str], user: str | None = None) -> dict[str, Any]:
        """user: the record's user_text when the caller has it already."""
        return {"user": user_text(record) if user is None else user, "response": response_text(record), "labels": audited}

    def _restore(self) -> tuple[DiversityTracker, int] | None:
        """The stored snapshot, if it is one this version wrote for this run; None (with a log line) if not."""
        blob = self.ledger.state("diversity")
        if blob is None:
            return None
        try:
            upto = int(self.ledger.state("diversity_upto") or b"")
            tracker = loads(bytes(blob), STATE_MODULES)
            fresh = DiversityTracker(self.plan.structure())
            if not same_shape(tracker, fresh):
                raise StateError("its layout differs from this version's")
            tracker.categories = fresh.categories
            held, expected = tracker.metrics().examples, self.ledger.accepted_count(upto=upto)
            if held != expected:
                raise StateError(f"it holds {held} examples, the ledger has {expected} up to id {upto}")
        except (StateError, ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
            log.warning("%s: the stored diversity state is unreadable (%s); rebuilding it from the examples",
                        self.ledger.path, e)
            return None
        return tracker, upto

    @property
    def tracker(self) -> DiversityTracker:
        """The diversity state: the last batch's snapshot plus what was accepted after it (a crash's tail)."""
        if self._tracker is None:
            restored = self._restore()
            tracker, upto = restored if restored is not None else (DiversityTracker(self.plan.structure()), 0)
            tail = [self._div_item(r["record"], r["audited"]) for r in self.ledger.iter_accepted(after_id=upto)]
            # examples accepted in this run are in both the ledger tail and the pending list: count them once
            seen = {(i["user"], i["response"]) for i in tail}
            self._pending_diversity = tail + [i for i in self._pending_diversity if (i["user"], i["response"]) not in seen]
            self._tracker = tracker
        return self._tracker


class GroundingTally:
    """The grounding check's supports (cached per passage) and its measure: the share of checked answers
    with an unsupported claim, per domain category, for the batch and the whole run (resumes included)."""

    def __init__(self, ledger: Ledger, plan: Plan):
        self.fixed = "\n".join([plan.persona, *plan.system_prompts])
        self.supports: dict[str, grounding.Support] = {}
        self.run: dict[str, Counter[str]] = {}
        self.batch: dict[str, Counter[str]] = {}
        self.active = bool(plan.sources)
        # checked = what reached the check, the last before acceptance: accepted, ungrounded or unfaithful
        for cat, reason, n in (() if not self.active else ledger.db.execute(
                "SELECT COALESCE(json_extract(audited, '$.domain'), ''), reason, COUNT(*) FROM examples"
                " WHERE passage IS NOT NULL AND (status = 'accepted' OR reason IN ('ungrounded', 'unfaithful'))"
                " GROUP BY 1, 2")):
            tally = self.run.setdefault(cat, Counter())
            tally["checked"] += n
            tally["unsupported"] += n if reason == "ungrounded" else 0

    def check(self, spec: Spec, record: dict[str, Any], shape: str, category: str) -> list[grounding.Claim]:
        support = self.supports.get(spec.passage)
        if support is None or len(self.supports) > 4096:
            if len(self.supports) > 4096:
                self.supports.clear()
            support = self.supports[spec.passage] = grounding.Support(f"{spec.document}\n{self.fixed}")
        bad = grounding.unsupported(grounding.answer_text(record, shape), support,
                                    grounding.Support(grounding.user_side(record)))
        for tallies in (self.run, self.batch):
            t = tallies.setdefault(category, Counter())
            t["checked"] += 1
            t["unsupported"] += bool(bad)
        return bad

    def rate(self, category: str, faithful: int) -> int:
        """Count a judge's faithfulness rating (the run's mean per category goes in the audit record)."""
        for tallies in (self.run, self.batch):
            t = tallies.setdefault(category, Counter())
            t["rated"] += 1
            t["rating_sum"] += faithful
        return faithful

    def summary(self) -> dict[str, Any]:
        def row(t: Counter[str]) -> dict[str, Any]:
            out = {"checked": t["checked"], "unsupported": t["unsupported"],
                   "share": round(t["unsupported"] / t["checked"], 4) if t["checked"] else 0.0}
            if t["rated"]:
                out["judge_faithfulness"] = round(t["rating_sum"] / t["rated"], 2)
            return out

        def table(tallies: dict[str, Counter[str]]) -> dict[str, Any]:
            return {**row(sum(tallies.values(), Counter())), "by_category": {c: row(t) for c, t in sorted(tallies.items())}}
        out = {"batch": table(self.batch), "run": table(self.run)}
        self.batch = {}
        return out
