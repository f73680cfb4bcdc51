"""Benchmark: DiversityTracker.add_batch(100) on a tracker already holding N examples, and the rebuild.

Run by hand:  .venv/bin/python bench/bench_diversity.py [--examples 50000] [--batches 5] [--write]
              .venv/bin/python bench/bench_diversity.py --simulated 3000 [--rounds 2] [--audit-batch 40]
                  [--replay CAPTURED.json] [--save-corpus BATCHES.json]

--simulated N: the engine's case instead: N examples from the simulated provider's text generator (its
templates repeat, so most 3-grams recur: the costly case for the overlap index) fed to a fresh tracker in
audit batches of 40, each followed by common_phrases(40) as a steered run does; CPU per example (process
time, after one warm-up batch that loads the tagger and lemmatizer), over the run and over its last tenth.
--replay FILE: the same on add_batch inputs captured from an engine run (a JSON list of batches), or on a
corpus written by --save-corpus (the simulated batches, so that another tree is fed the same ones without
generating them again).
Only the tracker's public API is used, so the same script can be copied into an older tree to measure
before/after.
--write appends nothing: it rewrites bench/notes/diversity.md with the figures of this run.

Texts are seeded synthetic English: words drawn from TextBlob's bundled tagger lexicon with a Zipf
(s=1.05) frequency over ranks, function words first; lengths follow seed 000 (user 5-20 / 20-100 /
100-200 words at 40/40/20 %, responses 50-150 / 150-400 / 400-800 at 30/50/20 %); one sentence in
five opens with a stock phrase ("make sure to", "you can use the", ...) so that some 3-grams are held
by a large share of examples, as in real LLM output (the costly case for the overlap index).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import resource
import statistics
import sys
import time
from itertools import accumulate
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.audit.diversity import DiversityTracker  # noqa: E402

FUNCTION_WORDS = [
    "the", "of", "to", "and", "a", "in", "is", "you", "that", "it", "for", "on", "with", "as", "can",
    "be", "this", "are", "or", "your", "by", "if", "at", "from", "use", "not", "an", "will", "have",
    "which", "more", "when", "each", "do", "so", "then", "there", "all", "one", "we", "their", "it's",
    "also", "but", "how", "what"
]
STOCK = ("make sure to", "you can use the", "for example", "keep in mind that", "in this case",
         "the best way to", "if you want to", "it is important to", "here is how to", "note that the")
OPENERS = ("how do i", "what is the", "why does my", "can i", "is it possible to", "what's the difference between")
TONES = ("professional", "conversational", "mixed")
FORMATS = ("plain", "list", "code", "table")


def vocabulary() -> list[str]:
    import textblob

    lexicon = Path(textblob.__file__).parent / "en" / "en-lexicon.txt"
    words = sorted({line.split()[0].lower() for line in lexicon.read_text().splitlines()
                    if line and line.split()[0].isalpha()})
    random.Random(7).shuffle(words)
    return FUNCTION_WORDS + [w for w in words if w not in FUNCTION_WORDS][:20000]


class Texts:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.words = vocabulary()
        self.cum = list(accumulate(1 / (rank + 1) ** 1.05 for rank in range(len(self.words))))

    def _words(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cum, k=k)

    def _text(self, n: int, opener: str = "") -> str:
        out = opener.split()
        while len(out) < n:
            sentence = self._words(self.rng.randint(6, 24))
            if self.rng.random() < 0.2:
                sentence = self.rng.choice(STOCK).split() + sentence
            out += sentence
            out[-1] += "."
        return " ".join(out[:n])

    def _length(self, bands: list[tuple[int, int, float]]) -> int:
        low, high, _ = self.rng.choices(bands, weights=[b[2] for b in bands])[0]
        return self.rng.randint(low, high)

    def example(self) -> dict:
        user_n = self._length([(5, 20, 0.4), (20, 100, 0.4), (100, 200, 0.2)])
        response_n = self._length([(50, 150, 0.3), (150, 400, 0.5), (400, 800, 0.2)])
        return {
            "user": self._text(user_n, self.rng.choice(OPENERS)) + "?",
            "response": self._text(response_n),
            "labels": {"tone": self.rng.choice(TONES), "format": self.rng.choice(FORMATS)},
        }


def plan_word_ranges() -> dict[str, dict[str, tuple[int, int]]]:
    """The example plan's declared word ranges per length category (what the engine asks the provider for)."""
    import yaml

    plan = yaml.safe_load((ROOT / "plans" / "example.yaml").read_text())
    return {dim: {c["name"]: (c["min_words"], c["max_words"]) for c in plan["dimensions"][dim]["categories"]}
            for dim in ("input_length", "response_length")}


def simulated_examples(n: int, seed: int = 3) -> list[dict]:
    """Examples as the simulated provider writes them, over the example plan's label values."""
    from agent.providers.simulated_text import assistant_message, user_message

    ranges = plan_word_ranges()
    rng = random.Random(seed)
    topics = ["spot instance preemption", "egress fees", "persistent volumes", "SSH keys", "GPU quotas", "billing alerts",
              "CUDA driver versions", "multi-node training", "snapshots", "API tokens", "reserved instances",
              "Jupyter notebooks", "container images", "network bandwidth", "data transfer", "H100 availability"]
    out = []
    for _ in range(n):
        labels = {"behaviour": rng.choice(["standard", "standard", "ambiguous", "adversarial", "negative"]),
                  "question_type": rng.choice(["factual", "troubleshooting", "multi_step"]),
                  "typos": rng.choice(["clean", "clean", "typos"]), "format": rng.choice(["plain", "list", "code"]),
                  "tone": rng.choice(["professional", "conversational", "mixed"]),
                  "response_length": rng.choice(["short", "medium", "medium", "long"]),
                  "input_length": rng.choice(["short", "short", "medium", "long"])}
        topic = rng.choice(topics)
        out.append({"user": user_message(rng, labels, topic, *ranges["input_length"][labels["input_length"]]),
                    "response": assistant_message(rng, labels, topic, *ranges["response_length"][labels["response_length"]]),
                    "labels": {"tone": labels["tone"], "format": labels["format"]}})
    return out


def simulated_run(n: int, rounds: int, batches: list[list[dict]] | None = None, audit_batch: int = 40,
                  save: Path | None = None) -> None:
    """The tracker fed the simulated corpus (or `batches` replayed), CPU per example over the whole run, over
    its last tenth (what an example costs at n held) and over each tenth (how that cost grows), peak RSS."""
    if batches is None:
        examples = simulated_examples(n)
        batches = [examples[i:i + audit_batch] for i in range(0, n, audit_batch)]
        if save is not None:
            import json

            save.write_text(json.dumps(batches))
    n = sum(map(len, batches))
    DiversityTracker().add_batch(simulated_examples(3, seed=99))  # loads the tagger and lemmatizer
    for r in range(rounds):
        tracker = DiversityTracker({"tone": list(TONES), "format": list(FORMATS)})
        c0 = time.process_time()
        held, marks = 0, [(0, c0)]   # (examples held, process time) at each tenth of the run
        for batch in batches:
            if held >= n * len(marks) // 10:
                marks.append((held, time.process_time()))
            tracker.add_batch(batch)
            tracker.common_phrases(40)
            held += len(batch)
        end = time.process_time()
        marks.append((n, end))
        cpu = end - c0
        tenths = [1000 * (t1 - t0) / max(1, h1 - h0) for (h0, t0), (h1, t1) in zip(marks, marks[1:], strict=False)]
        m = tracker.metrics()
        print(f"round {r + 1}: add_batch + common_phrases over {n} examples: {1000 * cpu / n:.3f} ms CPU per "
              f"example ({tenths[-1]:.3f} ms over the last tenth); load average "
              f"{os.getloadavg()[0]:.1f}; peak RSS {rss_mb():.0f} MB; overlap {m.ngram_overlap:.4f} nn>30% "
              f"{m.share_nn_over_30:.4f} verbs {m.unique_verbs} topics {m.unique_topics}")
        print("  ms per example in each tenth: " + ", ".join(f"{t:.3f}" for t in tenths))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=50_000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--write", action="store_true", help="rewrite bench/notes/diversity.md")
    parser.add_argument("--simulated", type=int, default=0, help="the simulated provider's corpus instead (see above)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--audit-batch", type=int, default=40, help="examples per add_batch with --simulated")
    parser.add_argument("--save-corpus", type=Path, default=None,
                        help="with --simulated: also write its batches as JSON, for --replay in another tree")
    parser.add_argument("--replay", type=Path, default=None,
                        help="a JSON list of add_batch inputs captured from an engine run, replayed (first N examples "
                             "with --simulated N)")
    args = parser.parse_args()
    if args.replay:
        import json

        batches, held = [], 0
        for batch in json.loads(args.replay.read_text()):
            if args.simulated and held >= args.simulated:
                break
            batches.append(batch)
            held += len(batch)
        simulated_run(held, args.rounds, batches)
        return
    if args.simulated:
        simulated_run(args.simulated, args.rounds, audit_batch=args.audit_batch, save=args.save_corpus)
        return

    texts = Texts(seed=1)
    t0 = time.perf_counter()
    stored = [texts.example() for _ in range(args.examples)]
    batches = [[texts.example() for _ in range(args.batch_size)] for _ in range(args.batches)]
    gen_s = time.perf_counter() - t0
    words = sum(len(e["user"].split()) + len(e["response"].split()) for e in stored)
    print(f"generated {args.examples} stored examples ({words / args.examples:.0f} words each) in {gen_s:.1f} s")
    rss_before = rss_mb()

    categories = {"tone": list(TONES), "format": list(FORMATS)}
    t0, c0 = time.perf_counter(), time.process_time()
    tracker = DiversityTracker.from_examples(stored, categories)
    rebuild_s, rebuild_cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_after = rss_mb()
    print(f"rebuild from {args.examples} examples: {rebuild_s:.1f} s ({rebuild_cpu:.1f} s CPU); peak RSS {rss_after:.0f} MB "
          f"({rss_before:.0f} MB before the rebuild)")

    times, cpu = [], []
    for batch in batches:
        t0, c0 = time.perf_counter(), time.process_time()
        result = tracker.add_batch(batch)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    cum = result.cumulative
    print("add_batch({}) s: {} (CPU s: {}); load average {:.1f}".format(
        args.batch_size, ", ".join(f"{t:.3f}" for t in times), ", ".join(f"{t:.3f}" for t in cpu),
        os.getloadavg()[0]))
    print(f"cumulative: mean_ttr {cum.mean_ttr:.3f} mattr_50 {cum.mattr_50:.3f} corpus_ttr {cum.corpus_ttr:.4f} "
          f"overlap {cum.ngram_overlap:.4f} nn>30% {cum.share_nn_over_30:.4f} verbs {cum.unique_verbs} "
          f"topics {cum.unique_topics}")

    if args.write:
        write_notes(args, words, (rebuild_s, rebuild_cpu), (rss_before, rss_after), (times, cpu), result)


def write_notes(args, words, rebuild, rss, timing, result) -> None:
    (rebuild_s, rebuild_cpu), (rss_before, rss_after), (times, cpu) = rebuild, rss, timing
    cum = result.cumulative
    median = statistics.median(times)
    lines = [
        "## Diversity metrics (agent/audit/diversity.py)",
        "",
        f"What: `DiversityTracker.add_batch()` on {args.batch_size} new examples with {args.examples:,} already "
        "held (every metric, batch and cumulative, incl. tagging the user texts and the exact 3-gram "
        f"overlap index); and `DiversityTracker.from_examples()` over {args.examples:,} stored examples.",
        f"Data: seeded synthetic English ({words / args.examples:.0f} words per example; user 5-200 words, "
        "responses 50-800 at the seed's 30/50/20 % bands; Zipf word frequencies; stock phrases in 20 % of "
        "sentences).",
        "",
        f"Command: `.venv/bin/python bench/bench_diversity.py --examples {args.examples} "
        f"--batches {args.batches} --write`",
        f"Machine: 2 cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{datetime.date.today().isoformat()}; load average {os.getloadavg()[0]:.1f} at the end (other "
        "engineers' jobs share the 2 cores: wall times vary, CPU times less).",
        "",
        "| measure | figure | target |",
        "|---|---|---|",
        f"| add_batch({args.batch_size}) at {args.examples:,} held, median of {len(times)} | {median:.3f} s "
        f"(max {max(times):.3f} s; CPU median {statistics.median(cpu):.3f} s) | well under 1 s: "
        f"{'met' if max(times) < 0.5 else 'NOT met'} |",
        f"| rebuild from {args.examples:,} examples | {rebuild_s:.1f} s ({rebuild_cpu:.1f} s CPU, "
        f"{1000 * rebuild_s / args.examples:.2f} ms per example) | (resume, once per run) |",
        f"| peak RSS after rebuild | {rss_after:.0f} MB ({rss_before:.0f} MB held by the test data itself) | |",
        "",
        f"Cumulative figures on this synthetic data: mean TTR {cum.mean_ttr:.3f}, MATTR(50) {cum.mattr_50:.3f}, "
        f"corpus TTR {cum.corpus_ttr:.4f}, pooled 3-gram overlap {cum.ngram_overlap:.4f}, "
        f"share with a >30 % neighbour {cum.share_nn_over_30:.4f}, distinct-3 {cum.distinct_3:.3f}.",
        "",
        "Notes:",
        "- Where the time goes: tokens, word ids and n-gram keys (~0.35 ms per example), the cumulative 3-gram "
        "index (~0.35 ms: a numpy hash table of keys and one int32 posting arena, a batch at a time; "
        "n-grams held by many examples are skipped through an upper bound unless they could change a flag), "
        "POS tags read through per-token caches.",
        "- Memory: this synthetic text is a worst case for distinct 3-grams (random Zipf words: about "
        "70 % of an example's 3-grams are new); real model output repeats far more.",
        "- No pauses: table resizes and posting compactions copy in slices of 1M keys.",
        "- Rebuild cost is linear: about the per-example cost above times the examples, which is why the "
        "engine saves the tracker in the ledger in its own data format (agent/audit/state.py) and rebuilds "
        "only what was accepted after the snapshot.",
        "",
    ]
    path = ROOT / "bench" / "notes" / "diversity.md"
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
