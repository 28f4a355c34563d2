"""The subprocess half of tests/test_loader_fuzz.py: load each model file it is given and vocode a short mel.

What it is: a worker that a test runs in its own Python, so that a file which crashed the process (a segfault in
a kernel, an abort) would end this process only and be named by the test, never take pytest down with it. For
each file of the manifest it prints `BEGIN i` before touching it and `END i OUTCOME DETAIL` after, flushed:
OUTCOME is `vocoded` (load_model accepted it and the C engine, one and two threads, made int16 samples of the
expected length), `refused` (a ValueError naming the file: the clear error load_model promises; or a ValueError
from vocode, e.g. for weights so large that the conditioning network overflows), or `unclear`
(any other exception, or a wrong output: the test fails on it).
What it is not: a test by itself, nor collected by pytest (no test_ prefix).

    python tests/loader_fuzz_worker.py MANIFEST.json     # {"files": [path, ...], "start": i0}
"""

import json
import sys
import traceback

import numpy as np


def check_one(path: str) -> tuple[str, str]:
    from pywavernn.modelfile import load_model
    from pywavernn.vocoder import Vocoder

    try:
        model = load_model(path)
    except ValueError as exc:
        msg = str(exc)
        if not msg.startswith(f"{path}: ") or len(msg) <= len(path) + 2:
            return "unclear", f"ValueError without the file's name and a reason: {msg!r}"
        return "refused", msg.splitlines()[0][:300]
    except Exception as exc:  # noqa: BLE001 -- anything but the promised ValueError is what the test looks for
        return "unclear", f"load_model raised {type(exc).__name__}: {exc}"[:300]
    n_frames, hop = 2, model.feature_config.hop_length
    mel = np.random.default_rng(0).normal(-5.0, 1.5, (n_frames, model.model_config.n_mels)).astype(np.float32)
    outputs = []
    for threads in (1, 2):
        try:
            samples = Vocoder(model, threads=threads).vocode(mel, seed=0)
        except ValueError as exc:  # e.g. weights so large that the conditioning network overflows: said clearly
            return "refused", f"loaded, then vocode refused it: {exc}"[:300]
        except Exception as exc:  # noqa: BLE001
            return "unclear", f"loaded, then vocode (threads={threads}) raised {type(exc).__name__}: {exc}"[:300]
        if samples.dtype != np.int16 or samples.shape != (n_frames * hop,):
            return "unclear", f"loaded, then vocode gave {samples.dtype} {samples.shape}, not int16 ({n_frames * hop},)"
        outputs.append(samples)
    if not np.array_equal(outputs[0], outputs[1]):
        return "unclear", "loaded, then vocode gave other samples on two threads than on one"
    return "vocoded", f"{n_frames * hop} samples"


def main(argv) -> int:
    with open(argv[1]) as fh:
        manifest = json.load(fh)
    for i, path in enumerate(manifest["files"][manifest["start"]:], start=manifest["start"]):
        print(f"BEGIN {i}", flush=True)
        try:
            outcome, detail = check_one(path)
        except BaseException:  # noqa: BLE001 -- e.g. MemoryError, RecursionError
            outcome, detail = "unclear", traceback.format_exc(limit=3)[-300:]
        print(f"END {i} {outcome} {json.dumps(detail)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
