"""The diversity tracker as it was at commit d825af4 (agent/audit/overlap.py, diversity.py, text_stats.py,
imports pointed here): the reference the faster tracker is tested equal to (tests/test_fast_paths.py).
Frozen: never edit these files to make a test pass."""
