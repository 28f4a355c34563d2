"""Prune a recurrent matrix in 16x1 and 4x4 blocks, plot the pattern, and time the block-sparse kernel against dense.

What it teaches (Sparse WaveRNN, paper §3): the GRU's recurrent matrix R (3H x H, the u, r and e gates stacked)
is pruned in blocks, each gate separately: split a gate's rows into BH x BW blocks, rank the blocks by their mean
|w|, keep the largest (1 - sparsity) of them. What stays is stored as block-CSR (`pack_block_sparse`,
docs/format.md) and multiplied by a kernel named for its block shape; it skips the pruned blocks, so at 90 %
sparsity it streams a tenth of the weights. The figure shows which blocks survive in the top-left corner of
each gate; the table times y = R x through `pywavernn.kernels.gemv` (one thread, the selected ISA) against the
same kernel on the dense matrix and NumPy's `R @ x`.
What it is not: training-time pruning (training/pruning.py ramps the sparsity up gradually, Zhu & Gupta, while
the network adapts); here a random matrix is pruned once, which shows the layout and the speed, not the quality.
Timings include the Python wrapper's input checks (a few microseconds per call), which the vocoder's sampling
loop, running wholly in C, does not pay.

    python examples/prune_blocks.py [--hidden 896] [--sparsity 0.9] [--out examples/output]

Needs matplotlib. Writes OUT/prune_blocks.png. Runs in a few seconds. Letters: H hidden units, BH x BW blocks.
"""

import argparse
import timeit
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pywavernn  # noqa: E402
from pywavernn import kernels  # noqa: E402
from pywavernn.modelfile import pack_block_sparse  # noqa: E402

HERE = Path(__file__).resolve().parent


def prune_blocks(w: np.ndarray, bh: int, bw: int, sparsity: float) -> np.ndarray:
    """w with the smallest `sparsity` fraction of its BH x BW blocks (by mean |w|) set to zero."""
    m, n = w.shape
    blocks = np.abs(w).reshape(m // bh, bh, n // bw, bw).mean(axis=(1, 3))  # (M/BH, N/BW) block magnitudes
    n_keep = int(round(blocks.size * (1.0 - sparsity)))
    keep = np.zeros(blocks.size, bool)
    keep[np.argsort(blocks, axis=None)[blocks.size - n_keep:]] = True  # the largest n_keep blocks
    mask = np.kron(keep.reshape(blocks.shape), np.ones((bh, bw), bool))  # back to one flag per weight
    return np.where(mask, w, 0.0).astype(np.float32)


def prune_per_gate(r: np.ndarray, bh: int, bw: int, sparsity: float) -> np.ndarray:
    """Each gate's H x H block of rows (u, r, e) pruned on its own, as the paper does."""
    return np.concatenate([prune_blocks(gate, bh, bw, sparsity) for gate in np.split(r, 3)])


def time_us(fn, repeat: int = 7) -> float:
    """Median time of one call in microseconds (timeit picks the loop count so each measurement is ~0.2 s)."""
    timer = timeit.Timer(fn)
    loops, _ = timer.autorange()
    return 1e6 * float(np.median(timer.repeat(repeat=repeat, number=loops))) / loops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=896, help="H (default 896, the paper's WaveRNN-896)")
    ap.add_argument("--sparsity", type=float, default=0.9, help="fraction of blocks pruned (default 0.9)")
    ap.add_argument("--out", default=str(HERE / "output"), help="output folder (default: %(default)s)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    h = args.hidden
    if h % 16:
        ap.error(f"--hidden: expected a multiple of 16 (the block shapes must tile each gate), found {h}")

    rng = np.random.default_rng(0)
    r_dense = (rng.standard_normal((3 * h, h)) / np.sqrt(h)).astype(np.float32)  # R: gates u, r, e stacked
    x = rng.standard_normal(h).astype(np.float32)  # the hidden state h_{t-1}
    expected = r_dense.astype(np.float64) @ x

    dense = kernels.KernelMatrix(r_dense)  # the same kernels on a dense matrix: the fair baseline
    rows = [("dense, C kernel", r_dense.size, time_us(lambda: kernels.gemv(dense, x))),
            ("dense, NumPy R @ x", r_dense.size, time_us(lambda: r_dense @ x))]
    np.testing.assert_allclose(kernels.gemv(dense, x), expected, rtol=1e-4, atol=1e-4)

    patterns = {}
    for bh, bw in ((16, 1), (4, 4)):
        pruned = prune_per_gate(r_dense, bh, bw, args.sparsity)
        sparse = kernels.KernelMatrix(pack_block_sparse(pruned, bh, bw))  # block-CSR: only kept blocks stored
        y = kernels.gemv(sparse, x)
        np.testing.assert_allclose(y, pruned.astype(np.float64) @ x, rtol=1e-4, atol=1e-4)  # same maths
        rows.append((f"{bh}x{bw} blocks, bsr_sgemv_{bh}x{bw}", sparse.nnz, time_us(lambda: kernels.gemv(sparse, x))))
        patterns[f"{bh}x{bw}"] = pruned != 0

    print(f"R = {3 * h} x {h} (H = {h}), {args.sparsity:.0%} of blocks pruned per gate; "
          f"kernels: {pywavernn.selected_isa()}, one thread")
    print(f"{'matrix product y = R x':<34} {'weights':>10} {'us/call':>9} {'vs dense C':>11}")
    for name, nnz, us in rows:
        print(f"{name:<34} {nnz:>10,} {us:>9.1f} {rows[0][2] / us:>10.1f}x")

    corner = min(h, 64)
    fig, axes = plt.subplots(2, 3, figsize=(9, 6.4), constrained_layout=True)
    for i, (shape, mask) in enumerate(patterns.items()):
        for j, gate in enumerate("ure"):
            ax = axes[i, j]
            ax.imshow(mask[j * h: j * h + corner, :corner], cmap="Greys", interpolation="nearest")
            ax.set_title(f"{shape}: gate {gate}, top-left {corner}x{corner}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"kept weights (black) after pruning {args.sparsity:.0%} of the blocks of each gate")
    fig.savefig(out / "prune_blocks.png", dpi=100)
    print(f"wrote {out / 'prune_blocks.png'}")


if __name__ == "__main__":
    main()
