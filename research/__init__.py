"""Research-only scripts of pywavernn's studies (run from the checkout's root: `python -m research.NAME`).

What it is: the scripts behind research/experiments.md (research.compare, research.linear_headroom), beside that
lab diary, the study configs (research/configs/) and their benchmark results (research/results/).
What it is not: part of the pywavernn package or its wheel; nothing under pywavernn/ imports this (a test checks).
"""
