"""Check the block-sparse kernel against the dense NumPy reference with hypothesis: property-based testing, taught.

What it teaches: instead of a few hand-picked cases, hypothesis draws hundreds (block shape, matrix size, which
blocks are kept, the values, the vector) and checks one property on each: the C kernel's y = W x, on every ISA
this machine runs, equals NumPy's dense product within a rounding bound that is derived, not guessed. A float32
sum of L products, in any order and with or without FMA, is within gamma_L * sum_k |w_k x_k| of the exact sum,
gamma_L ~ L * 2^-24 (Higham, Accuracy and Stability of Numerical Algorithms, §3.1); the reference is computed in
float64, so (L + 2) * 2^-24 * (|W| |x|) is the tolerance. The second half plants a bug (a "kernel" that skips its
last block row) and shows hypothesis finding it and shrinking the failure to a minimal case, which is what makes a
failing property test easy to debug.
What it is not: the test suite; tests/test_kernels.py runs this property and more (W X with B right-hand sides,
fp16 storage, row ranges, the GRU gates, softmax sampling, input validation) under explicit profiles.

    python examples/check_kernel_hypothesis.py [--examples 200]

Needs hypothesis (pip install hypothesis, or the [dev] extra). Runs in a few seconds. Letters: M x N matrix,
BH x BW blocks, L terms in a row's sum.
"""

import argparse

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pywavernn import kernels
from pywavernn.modelfile import pack_block_sparse

EPS32 = 2.0**-24  # unit roundoff of float32


@st.composite
def sparse_problems(draw):
    """(W dense float32 with whole blocks zeroed, x float32, (BH, BW)): what the kernel gets, and the answer key."""
    bh, bw = draw(st.sampled_from([(16, 1), (4, 4), (1, 1)]), label="block")
    mb, nb = draw(st.integers(1, 6), label="block rows"), draw(st.integers(1, 24), label="block cols")
    kept = draw(arrays(np.bool_, (mb, nb)), label="kept blocks")
    values = st.floats(-100, 100, width=32, allow_subnormal=False)
    w = draw(arrays(np.float32, (mb * bh, nb * bw), elements=values), label="W")
    w *= np.kron(kept, np.ones((bh, bw), np.float32))  # pruned blocks are exactly zero
    x = draw(arrays(np.float32, nb * bw, elements=values), label="x")
    return w, x, (bh, bw)


def within_rounding(y: np.ndarray, w: np.ndarray, x: np.ndarray) -> bool:
    exact = w.astype(np.float64) @ x.astype(np.float64)
    terms = np.count_nonzero(w, axis=1).max(initial=0)
    bound = (terms + 2) * EPS32 * (np.abs(w.astype(np.float64)) @ np.abs(x.astype(np.float64))) + 1e-30
    return bool(np.all(np.abs(y.astype(np.float64) - exact) <= bound))


def correct_kernel(km: kernels.KernelMatrix, x: np.ndarray, isa: str) -> np.ndarray:
    return kernels.gemv(km, x, isa=isa)


def buggy_kernel(km: kernels.KernelMatrix, x: np.ndarray, isa: str) -> np.ndarray:
    return kernels.gemv(km, x, rows=(0, km.n_block_rows - 1), isa=isa)  # off by one: the last block row is skipped


def property_test(kernel, n_examples: int):
    """A hypothesis test of `kernel` against the dense NumPy product; returns (test, the cases it saw)."""
    seen = []

    @settings(max_examples=n_examples, deadline=None, derandomize=True, database=None)  # reproducible, no files
    @given(problem=sparse_problems())
    def test(problem):
        w, x, (bh, bw) = problem
        seen.append(problem)
        km = kernels.KernelMatrix(pack_block_sparse(w, bh, bw))  # block-CSR, as the vocoder stores R
        for isa in kernels.available_isas():  # generic C, and every SIMD variant this CPU runs
            y = kernel(km, x, isa)
            assert within_rounding(y, w, x), f"{isa}: y = {y} but W x = {w.astype(np.float64) @ x}"

    return test, seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=200, help="cases hypothesis draws (default 200)")
    args = ap.parse_args()

    test, seen = property_test(correct_kernel, args.examples)
    test()  # raises with a minimal failing case if any drawn case breaks the property
    blocks = sorted({f"{bh}x{bw}" for _, _, (bh, bw) in seen})
    sizes = [w.size for w, _, _ in seen]
    density = [np.count_nonzero(w) / w.size for w, _, _ in seen]
    print(f"bsr gemv == dense NumPy within the rounding bound: {len(seen)} drawn cases passed on "
          f"{', '.join(kernels.available_isas())} (blocks {', '.join(blocks)}; W of {min(sizes)} to {max(sizes)} "
          f"weights, {min(density):.0%} to {max(density):.0%} of them nonzero)")

    test, seen = property_test(buggy_kernel, args.examples)
    try:
        test()
    except AssertionError as exc:
        w, x, (bh, bw) = seen[-1]  # hypothesis replays the shrunk failing case last
        print(f"planted bug caught after {len(seen)} cases; hypothesis shrank the failure to: block {bh}x{bw}, "
              f"W {w.shape[0]}x{w.shape[1]} with {np.count_nonzero(w)} nonzero weight(s), x = {x.tolist()}")
        print("  " + str(exc).splitlines()[0])
    else:
        raise SystemExit("the planted bug went unnoticed: the property is too weak")


if __name__ == "__main__":
    main()
