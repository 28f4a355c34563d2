"""A fuzz test of the model loader: mutated copies of the bundled model file either load and vocode, or are refused
with a clear error; none crashes the process.

What it is: deterministic mutations (numbered seeds) of two base files, the bundled model (pywavernn/data/
default.safetensors, gru.R block-sparse) and the same weights with every step matrix block-sparse (so the index
checks of O1..O4 are reached too). Each mutation edits the raw safetensors bytes: block indices and row pointers
(out of range, negative, decreasing, repeated), weight values (NaN, inf, huge), the header's shapes, dtypes,
data offsets and names, the metadata's fields (model and feature configs, the sparse table, the format version,
provenance, unknown keys, broken JSON), and random bytes anywhere or a truncated or extended file. The files
are checked in a separate Python (tests/loader_fuzz_worker.py), in batches: when the worker dies, the case it
had begun is the one that crashed it, and the test names it and carries on with the rest. A case passes when
load_model raises a ValueError naming the file, or when the model loads and the C engine vocodes a 2-frame mel
into int16 samples of the right length, the same on one and two threads.
What it is not: a proof (the cases are a sample), nor a test of the messages' wording (tests/test_format.py).

Run: python -m pytest tests/test_loader_fuzz.py -q          (40 cases; -m slow adds the 300-case run)
"""

import json
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pywavernn.common import STEP_MATRICES
from pywavernn.modelfile import load_model, save_model
from pywavernn.vocoder import bundled_model_path

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "loader_fuzz_worker.py"
I32_EDGES = (-(2 ** 31), -1, 2 ** 31 - 1)
FLOAT_EDGES = (np.nan, np.inf, -np.inf, 3.0e38, -3.0e38, 1.0e20, 1.0e-45)
JSON_POOL = (0, -1, 1, 2, 3, 7, 16, 2 ** 31, 1.5, -0.5, "x", "", None, True, [], [1], [16, 1], {}, 1e308)
DTYPES = ("F16", "BF16", "F64", "I32", "I64", "U8", "I8", "BOOL", "F8_E4M3", "F32", "Q4")


# --------------------------------------------------------------------------------------------- the raw file

def split(blob: bytes) -> tuple[dict, bytes]:
    """(header dict, data buffer) of a safetensors file."""
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def tensor_names(header: dict, suffix: str = "") -> list[str]:
    return sorted(k for k in header if k != "__metadata__" and k.endswith(suffix))


def edit_tensor(header: dict, data: bytes, name: str, dtype, edit) -> bytes:
    """data with tensor `name`'s bytes replaced by edit(array) (an int32 or float32 copy, edited in place)."""
    a, b = header[name]["data_offsets"]
    arr = np.frombuffer(data[a:b], dtype=dtype).copy()
    edit(arr)
    return data[:a] + arr.tobytes() + data[b:]


# ------------------------------------------------------------------------------------------------ mutations
# Each takes (rng, header, data) of a base file and returns (label, bytes of the mutated file).

def mutate_indices(rng, header, data):
    name = str(rng.choice(tensor_names(header, ".row_ptr") + tensor_names(header, ".col_idx")))
    sparse = json.loads(header["__metadata__"]["sparse"])[name.rsplit(".", 1)[0]]
    n_cols = sparse["shape"][1] // sparse["block"][1]
    kind = str(rng.choice(["edge", "neighbour", "out_of_range", "swap", "random"]))

    def edit(arr):
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(arr.size))
            if kind == "edge":
                arr[i] = rng.choice(I32_EDGES)
            elif kind == "neighbour":
                arr[i] = arr[max(i - 1, 0)] + int(rng.integers(-1, 2))
            elif kind == "out_of_range":
                arr[i] = n_cols if name.endswith("col_idx") else arr[-1] + int(rng.integers(1, 4))
            elif kind == "swap" and arr.size > 1:
                j = int(rng.integers(arr.size))
                arr[i], arr[j] = arr[j], arr[i]
            else:
                arr[i] = int(rng.integers(-8, n_cols + 8))

    return f"indices {name} {kind}", join(header, edit_tensor(header, data, name, np.int32, edit))


def mutate_values(rng, header, data):
    name = str(rng.choice([k for k in tensor_names(header) if header[k]["dtype"] == "F32"]))
    value = float(rng.choice(FLOAT_EDGES))
    count = int(rng.choice([1, 3, 1000]))

    def edit(arr):
        arr[rng.integers(arr.size, size=count)] = value

    return f"values {name} {count} x {value:g}", join(header, edit_tensor(header, data, name, np.float32, edit))


def mutate_header_shape(rng, header, data):
    name = str(rng.choice(tensor_names(header)))
    shape = list(header[name]["shape"])
    kind = str(rng.choice(["permute", "flatten", "unsqueeze", "plus_one", "zero", "huge", "negative", "drop"]))
    if kind == "permute":
        shape = shape[::-1]
    elif kind == "flatten":
        shape = [int(np.prod(shape))]
    elif kind == "unsqueeze":
        shape = [1] + shape
    elif kind == "plus_one":
        shape[int(rng.integers(len(shape)))] += 1
    elif kind == "zero":
        shape[int(rng.integers(len(shape)))] = 0
    elif kind == "huge":
        shape[int(rng.integers(len(shape)))] = 2 ** 40
    elif kind == "negative":
        shape[int(rng.integers(len(shape)))] = -1
    else:
        shape = shape[1:]
    header[name]["shape"] = shape
    return f"header shape {name} {kind} {shape}", join(header, data)


def mutate_header_dtype(rng, header, data):
    name = str(rng.choice(tensor_names(header)))
    dtype = str(rng.choice(DTYPES))
    header[name]["dtype"] = dtype
    if rng.random() < 0.5 and header[name]["shape"]:  # keep the byte count where the new size allows it
        widths = {"F16": 2, "BF16": 2, "F64": 8, "I64": 8, "U8": 1, "I8": 1, "BOOL": 1, "F8_E4M3": 1}
        if dtype in widths:
            header[name]["shape"][-1] = header[name]["shape"][-1] * 4 // widths[dtype]
    return f"header dtype {name} {dtype} {header[name]['shape']}", join(header, data)


def mutate_header_layout(rng, header, data):
    names = tensor_names(header)
    name = str(rng.choice(names))
    kind = str(rng.choice(["shift", "swap", "beyond", "reversed", "rename", "delete", "extra"]))
    a, b = header[name]["data_offsets"]
    if kind == "shift":
        d = int(rng.choice([-4, 4, 1]))
        header[name]["data_offsets"] = [a + d, b + d]
    elif kind == "swap":
        other = str(rng.choice(names))
        header[name]["data_offsets"], header[other]["data_offsets"] = header[other]["data_offsets"], [a, b]
    elif kind == "beyond":
        header[name]["data_offsets"] = [a, len(data) + 4]
    elif kind == "reversed":
        header[name]["data_offsets"] = [b, a]
    elif kind == "rename":
        header[name.upper()] = header.pop(name)
    elif kind == "delete":
        del header[name]
    else:
        header["gru.extra"] = dict(header[name])
    return f"header layout {name} {kind}", join(header, data)


def _json_edit(rng, text: str, label: str) -> tuple[str, str]:
    """A mutated copy of a JSON object's text: a field set from JSON_POOL, deleted or added, or broken JSON."""
    obj = json.loads(text)
    kind = str(rng.choice(["set", "set", "set", "delete", "add", "broken", "not_object"]))
    if kind == "broken":
        return f"{label} broken JSON", text[: int(rng.integers(len(text)))]
    if kind == "not_object":
        return f"{label} not an object", json.dumps([obj])
    if kind == "add":
        obj["unexpected_field"] = 1
        return f"{label} unknown field", json.dumps(obj)
    key = str(rng.choice(sorted(obj))) if obj else "x"
    if kind == "delete":
        obj.pop(key, None)
        return f"{label} without {key}", json.dumps(obj)
    value = JSON_POOL[int(rng.integers(len(JSON_POOL)))]
    if isinstance(obj.get(key), (int, float)) and not isinstance(obj.get(key), bool) and rng.random() < 0.4:
        value = obj[key] * 2  # a plausible but wrong number (a doubled size, a doubled hop)
    obj[key] = value
    return f"{label} {key} = {value!r}", json.dumps(obj)


def mutate_metadata(rng, header, data):
    meta = header["__metadata__"]
    key = str(rng.choice(["model_config", "model_config", "feature_config", "feature_config", "sparse",
                          "sparse_entry", "provenance", "format_version", "format", "unknown", "delete"]))
    if key in ("model_config", "feature_config", "sparse", "provenance"):
        label, meta[key] = _json_edit(rng, meta[key], key)
    elif key == "sparse_entry":  # a block or shape in the sparse table other than the stored matrix's
        sparse = json.loads(meta["sparse"])
        name = str(rng.choice(sorted(sparse)))
        field, value = [("block", [4, 4]), ("block", [8, 1]), ("block", [16, 2]), ("block", [0, 1]),
                        ("block", [1, 1]), ("shape", [256, 256]), ("shape", [768])][int(rng.integers(7))]
        sparse[name][field] = value
        meta["sparse"] = json.dumps(sparse)
        label = f"sparse {name} {field} {value}"
    elif key == "format_version":
        meta[key] = str(rng.choice(["0", "2", "01", "", "1.0", "x", "-1", "99999999999999999999"]))
        label = f"format_version {meta[key]!r}"
    elif key == "format":
        meta[key] = str(rng.choice(["pt", "", "PYWAVERNN"]))
        label = f"format {meta[key]!r}"
    elif key == "unknown":
        meta["comment"] = "x"
        label = "unknown metadata key"
    else:
        gone = str(rng.choice(sorted(meta)))
        del meta[gone]
        label = f"metadata without {gone}"
    return f"metadata {label}", join(header, data)


def mutate_bytes(rng, header, data):
    blob = bytearray(join(header, data))
    kind = str(rng.choice(["flip", "flip", "flip_header", "truncate", "append", "length"]))
    n_header = 8 + struct.unpack("<Q", blob[:8])[0]
    if kind in ("flip", "flip_header"):
        hi = n_header if kind == "flip_header" else len(blob)
        for i in rng.integers(0, hi, size=int(rng.integers(1, 17))):
            blob[int(i)] = int(rng.integers(256))
        return f"bytes {kind}", bytes(blob)
    if kind == "truncate":
        return "bytes truncate", bytes(blob[: int(rng.integers(len(blob)))])
    if kind == "append":
        return "bytes append", bytes(blob) + rng.bytes(int(rng.integers(1, 64)))
    blob[:8] = struct.pack("<Q", int(rng.choice([0, 1, n_header, len(blob), 2 ** 63 - 1])))
    return "bytes header length", bytes(blob)


MUTATIONS = (mutate_indices, mutate_values, mutate_header_shape, mutate_header_dtype, mutate_header_layout,
             mutate_metadata, mutate_metadata, mutate_bytes, mutate_bytes)


# ---------------------------------------------------------------------------------------------- the harness

@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> list[bytes]:
    """The bundled file as shipped, and its weights with every step matrix block-sparse in its block shape."""
    bundled = bundled_model_path()
    all_sparse = tmp_path_factory.mktemp("fuzz_base") / "all_sparse.safetensors"
    save_model(load_model(bundled).to_sparse(STEP_MATRICES), all_sparse)
    return [bundled.read_bytes(), all_sparse.read_bytes()]


def make_cases(bases: list[bytes], seeds: range, folder: Path) -> list[tuple[str, str]]:
    """(label, path) of one mutated file per seed: base and mutation chosen by the seed."""
    cases = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        base = int(rng.integers(len(bases)))
        header, data = split(bases[base])
        mutation = MUTATIONS[int(rng.integers(len(MUTATIONS)))]
        label, blob = mutation(rng, header, data)
        path = folder / f"case{seed}.safetensors"
        path.write_bytes(blob)
        cases.append((f"seed {seed} base {base}: {label}", str(path)))
    return cases


def run_worker(cases: list[tuple[str, str]], folder: Path, timeout: float = 600) -> dict[int, tuple[str, str]]:
    """{case index: (outcome, detail)}; a case during which the worker died is ('crashed', how), and the worker
    is started again after it."""
    manifest = folder / "manifest.json"
    results: dict[int, tuple[str, str]] = {}
    start = 0
    while start < len(cases):
        manifest.write_text(json.dumps({"files": [p for _, p in cases], "start": start}))
        proc = subprocess.run([sys.executable, str(WORKER), str(manifest)], cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)
        begun = None
        for line in proc.stdout.splitlines():
            parts = line.split(" ", 3)
            if parts[0] == "BEGIN":
                begun = int(parts[1])
            elif parts[0] == "END":
                results[int(parts[1])] = (parts[2], json.loads(parts[3]))
                begun = None
        if proc.returncode == 0 and begun is None:
            break
        if begun is None:  # died between cases, or before the first: a harness problem, not a case
            raise AssertionError(f"loader_fuzz_worker exited {proc.returncode} outside a case: {proc.stderr[-2000:]}")
        results[begun] = ("crashed", f"worker exit status {proc.returncode}; {proc.stderr[-500:]}")
        start = begun + 1
    return results


def check(cases, results) -> Counter:
    assert sorted(results) == list(range(len(cases)))
    bad = [f"{cases[i][0]} -> {outcome}: {detail}" for i, (outcome, detail) in sorted(results.items())
           if outcome not in ("refused", "vocoded")]
    assert not bad, "mutated model files that crashed the process or failed unclearly:\n" + "\n".join(bad)
    return Counter(outcome for outcome, _ in results.values())


def test_mutated_bundled_files_load_and_vocode_or_are_refused_clearly(bases, tmp_path):
    """A few dozen cases: every kind of mutation, in the fast selection."""
    cases = make_cases(bases, range(40), tmp_path)
    counts = check(cases, run_worker(cases, tmp_path))
    assert counts["refused"] >= 10 and counts["vocoded"] >= 3, counts  # both sides of the check were reached


@pytest.mark.slow
def test_mutated_bundled_files_many_cases(bases, tmp_path):
    """The same over 300 further seeds."""
    cases = make_cases(bases, range(1000, 1300), tmp_path)
    counts = check(cases, run_worker(cases, tmp_path))
    assert counts["refused"] >= 100 and counts["vocoded"] >= 20, counts


def test_a_crash_in_the_worker_is_caught_and_named(tmp_path, monkeypatch):
    """The harness could fail: a file during which the worker dies is reported as crashed, and the cases after it
    still run (the worker is made to abort on a file whose name asks for it)."""
    good = bundled_model_path()
    crash = tmp_path / "crash.safetensors"
    crash.write_bytes(b"not read")
    fake = tmp_path / "worker.py"
    fake.write_text(WORKER.read_text().replace(
        "    from pywavernn.modelfile import load_model\n",
        "    import os\n    if path.endswith('crash.safetensors'):\n        os.abort()\n"
        "    from pywavernn.modelfile import load_model\n"))
    monkeypatch.setattr(sys.modules[__name__], "WORKER", fake)
    cases = [("good", str(good)), ("crash", str(crash)), ("good again", str(good))]
    results = run_worker(cases, tmp_path)
    assert results[0][0] == "vocoded" and results[2][0] == "vocoded"
    assert results[1][0] == "crashed" and "exit status -6" in results[1][1]
    with pytest.raises(AssertionError, match="crash -> crashed"):
        check(cases, results)
