"""Coverage of a grounded run's documents: which sources and passages the accepted examples came from, and
how often answers stated something their passage did not say. Read from the ledger only; shown by
`datagen status`, dataset_info.txt and report.html."""

from __future__ import annotations

from typing import Any

from agent.ledger import Ledger


def coverage(ledger: Ledger) -> dict[str, Any] | None:
    """None for a run without sources."""
    rows = ledger.passage_rows()
    if not rows:
        return None
    sources: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = sources.setdefault(r["source"], {"source": r["source"], "hash": r["source_hash"], "passages": 0,
                                             "used": 0, "examples": 0, "removed": True})
        s["removed"] = s["removed"] and r["removed"]
        if not r["removed"]:
            s["passages"] += 1
            s["used"] += r["examples"] > 0
        s["examples"] += r["examples"]
    live = [r for r in rows if not r["removed"]]
    batches = ledger.batches()
    grounding = next((b.grounding["run"] for b in reversed(batches) if b.grounding), None)
    return {"sources": list(sources.values()), "passages": len(live), "used": sum(r["examples"] > 0 for r in live),
            "unused": [r["id"] for r in live if not r["examples"]], "grounding": grounding}


def lines(cov: dict[str, Any] | None) -> list[str]:
    """Plain-text lines (dataset_info.txt, `datagen status`)."""
    if cov is None:
        return []
    out = [f"Sources: {len(cov['sources'])} documents, {cov['passages']} passages, {cov['used']} used by accepted "
           f"examples, {len(cov['unused'])} unused"]
    for s in cov["sources"]:
        state = "removed since, " if s["removed"] else ""
        out.append(f"- {s['source']} (sha256 {s['hash']}): {state}{s['used']}/{s['passages']} passages used, "
                   f"{s['examples']:,} examples")
    if cov["unused"]:
        more = f" (+{len(cov['unused']) - 10} more)" if len(cov["unused"]) > 10 else ""
        out.append("- unused passages: " + ", ".join(cov["unused"][:10]) + more)
    g = cov["grounding"]
    if g:
        out.append(f"Grounding check: {g['unsupported']:,} of {g['checked']:,} answers stated a claim their passage "
                   f"does not support ({g['share']:.1%}); rejected")
        for cat, t in g["by_category"].items():
            out.append(f"- {cat}: {t['unsupported']:,}/{t['checked']:,} ({t['share']:.1%})")
    return out
