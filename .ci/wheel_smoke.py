"""Smoke test of an *installed* pywavernn (a wheel in a fresh virtual environment), run from outside the checkout.

What it checks: `import pywavernn` comes from site-packages, not from a checkout; the compiled kernels load and
report their ISA and OpenMP; the bundled model ships and vocodes (same seed, same samples); the `pywavernn`
command resynthesises a speech file and `pywavernn doctor` runs. What it is not: the test suite (that is
`python -m pytest` in a checkout); it proves the wheel works where no compiler and no source tree are at hand.

Run it with the venv's interpreter from a folder outside the checkout (.ci/run and cibuildwheel's test-command do):

    cd "$(mktemp -d)" && /path/to/venv/bin/python /path/to/checkout/.ci/wheel_smoke.py [SPEECH_FILE]

SPEECH_FILE defaults to ../shared/data/asterisk-en/digits_1.flac beside the checkout, or a generated 1-second
tone where that is absent (cibuildwheel's containers have no ../shared). Exit status 0 on success.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
DEFAULT_SPEECH = CHECKOUT.parent / "shared" / "data" / "asterisk-en" / "digits_1.flac"


def check(condition: bool, message: str) -> None:
    if not condition:
        print(f"wheel_smoke: FAILED: {message}", file=sys.stderr)
        sys.exit(1)


def speech_file(argv: list[str], tmp: Path) -> Path:
    if argv:
        return Path(argv[0]).resolve()
    if DEFAULT_SPEECH.is_file():
        return DEFAULT_SPEECH
    import numpy as np
    import soundfile as sf

    t = np.arange(16000) / 16000.0
    path = tmp / "tone.wav"
    sf.write(path, (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32), 16000)
    return path


def main(argv: list[str]) -> int:
    import numpy as np
    import soundfile as sf

    import pywavernn
    from pywavernn._kernels import _engine

    where = Path(pywavernn.__file__).resolve()
    check(CHECKOUT not in where.parents, f"pywavernn imported from the checkout ({where}), not the installed wheel")
    check(CHECKOUT not in Path(_engine.__file__).resolve().parents, "the compiled module came from the checkout")
    print(f"pywavernn {pywavernn.__version__} from {where.parent}")
    print(f"kernels: isa {pywavernn.selected_isa()}, openmp {pywavernn.openmp_enabled()}")

    voc = pywavernn.Vocoder()  # the bundled model, from the wheel's package data
    mel = np.random.default_rng(0).normal(-4.0, 1.0, size=(8, voc.model_config.n_mels)).astype(np.float32)
    a, b = voc.vocode(mel, seed=1), voc.vocode(mel, seed=1)
    check(a.dtype == np.int16 and a.shape == (8 * voc.hop_length,), f"vocode gave {a.dtype} {a.shape}")
    check(np.array_equal(a, b), "the same seed gave different samples")

    exe = Path(sys.executable).parent / "pywavernn"  # the console script of this venv
    check(exe.is_file(), f"no console script at {exe}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        src = speech_file(argv, tmp)
        out = tmp / "out" / "resynth.wav"
        (tmp / "out").mkdir()
        run = subprocess.run([str(exe), "resynth", str(src), "-o", str(out), "-q"], capture_output=True, text=True)
        check(run.returncode == 0, f"pywavernn resynth exited {run.returncode}: {run.stderr.strip()}")
        data, rate = sf.read(out, dtype="int16")
        expected = round(sf.info(src).frames * 24000 / sf.info(src).samplerate)
        check(rate == 24000 and abs(data.shape[0] - expected) <= 1, f"resynth wrote {data.shape} at {rate} Hz")
        check(np.abs(data.astype(np.int32)).max() > 0, "resynth wrote silence")
        print(f"pywavernn resynth {src.name}: {data.shape[0] / rate:.2f} s written")
        doctor = subprocess.run([str(exe), "doctor", "--seconds", "0.5"], capture_output=True, text=True)
        check(doctor.returncode == 0, f"pywavernn doctor exited {doctor.returncode}: {doctor.stderr.strip()}")
        print(doctor.stdout.rstrip())
    print("wheel_smoke: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
