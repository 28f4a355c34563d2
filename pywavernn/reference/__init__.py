"""pywavernn.reference: the readable models, in NumPy: the definition-by-code of what a model file computes.

What it is: plain.py (the WaveRNN, docs/format.md §1-5) and subscale.py (the Subscale WaveRNN, §9), written to
be read and used as the yardstick every engine is tested against. The conditioning network they share with every
engine is pywavernn/conditioning.py; the index arithmetic of subscale models, pywavernn/fold.py.
What it is not: fast (no SIMD, no threads, nothing compiled), nor an engine: pywavernn/engines/reference.py gives
them the engine interface, as the `reference` backend of pywavernn.Vocoder.

    from pywavernn.reference import plain, subscale
    samples = plain.generate_ref(model, mel, uniforms)

Tests: `python -m pytest tests/test_reference.py tests/test_subscale.py -q`.
"""
