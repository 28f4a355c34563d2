"""Training data: audio folders to cached features to random windows of whole frames.

What it is: finding the audio (`find_audio_files`, `split_files`: any folder of *.wav/*.flac/*.ogg, searched
recursively, or the LJSpeech layout: `metadata.csv` beside `wavs/` or the audio itself, with optional
train.txt / valid.txt / test.txt id lists); loading each file exactly as inference does
(`pywavernn.audio.load_audio`: 24 kHz mono, any rate >= 8 kHz resampled, channels averaged) and computing its
features with `pywavernn.features.log_mel`, the code inference uses, cached on disk (`FeatureCache`, one .npz per
file); skipping unreadable, silent and too-short files with a warning; and drawing training windows
(`WindowSampler`) and the fixed validation windows (`fixed_windows`).
What it is not: a torch DataLoader (the whole split is held in memory as int16 audio plus float32 mel: about
170 MB + 110 MB per hour of audio at the default hop; batches are cut from it by index, which is faster than
any worker process), nor augmentation.

Windows. A window of W frames starting at frame j0 trains on the samples [j0 * hop, (j0 + W) * hop). The
conditioning of those samples needs mel frames j0 .. j0 + W (frame j0 + W for the interpolation towards the next
frame, docs/format.md §2) plus the conditioning network's lookahead `pad` frames on each side, so a window carries
the frames [j0 - pad, j0 + W + 1 + pad) clipped to the utterance, and `crop` = the position of frame j0 in them.
Where the window touches an utterance edge the clipped frames are exactly what inference sees there (the network's
own replicate padding then acts at the true edge), so the conditioning in training equals the conditioning at
inference for every window. What still differs from inference, as in every WaveRNN trained on windows: the GRU
state starts at h = 0 at each window start (it is given the true previous sample, `prev`; a model with linear
prediction of order P, docs/format.md §11, the P previous samples: `WindowSet(history=P)`).

Feature cache. Entries live in `CACHE_DIR/features-<hash of the FeatureConfig JSON and the cache version>/`, one
`<hash of resolved path, mtime, size>.npz` per file holding `audio` (int16, T) and `mel` (float32, F x n_mels),
written atomically; a changed file or feature config therefore never reads a stale entry, and a damaged entry is
recomputed. Features are computed from the int16 samples the network is trained to predict.

Letters: T samples, F = 1 + T // hop frames, W window frames, N batch, pad = ModelConfig.cond_lookahead.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pywavernn.atomic import atomic_write
from pywavernn.audio import float_to_int16, int16_to_float, load_audio, preemphasis
from pywavernn.config import FeatureConfig
from pywavernn.features import log_mel

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
SPLIT_LISTS = ("train.txt", "valid.txt", "test.txt")
CACHE_VERSION = 1
VALID_SEED_TAG = 0x5EED  # keeps the validation windows' random stream apart from the training streams


# --------------------------------------------------------------------------------------------- finding files

def find_audio_files(root: Path) -> list[Path]:
    """Every *.wav / *.flac / *.ogg under root (any case, recursive, hidden folders skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if Path(f).suffix.lower() in AUDIO_EXTENSIONS]
    return sorted(found)


def _read_ids(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _metadata_ids(path: Path) -> list[str]:
    """ids of an LJSpeech metadata.csv (`id|text|normalised text`, no header)."""
    return [line.split("|", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _holdout(files: list[Path], root: Path, fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, valid): the round(fraction * n) files (at least 1) with the smallest hash of their relative path.

    Hashing names (not a seeded shuffle) keeps each file on the same side when files are added or removed.
    """
    if len(files) < 2 or fraction <= 0:
        return files, []
    n_valid = max(1, round(fraction * len(files)))
    key = {f: hashlib.sha256(str(f.relative_to(root)).encode()).hexdigest() for f in files}
    valid = set(sorted(files, key=key.__getitem__)[:n_valid])
    return [f for f in files if f not in valid], [f for f in files if f in valid]


@dataclass
class Split:
    """The files of a data folder: training and validation lists, the layout found, and ids without a file."""

    root: Path
    layout: str  # "ljspeech" or "folder"
    train: list[Path]
    valid: list[Path]
    missing: list[str] = field(default_factory=list)
    others: list[Path] | None = None  # the further roots of a merged split (merge_splits)


def split_files(root, valid_fraction: float = 0.05) -> Split:
    """Find the audio of a data folder and split it into training and validation files.

    LJSpeech layout (root/metadata.csv): the ids of metadata.csv, audio in root/wavs/ or root itself as
    ID.wav/.flac/.ogg; train.txt / valid.txt / test.txt (one id a line) choose the splits where present (test ids
    are never used). Otherwise every audio file under root. Without a valid list, `valid_fraction` of the
    training files is held out. ValueError naming the folder when it holds no audio.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: data folder not found (expected a folder of audio files)")
    meta = root / "metadata.csv"
    if not meta.is_file():
        files = find_audio_files(root)
        if not files:
            raise ValueError(f"{root}: no audio files found (looked recursively for {', '.join(AUDIO_EXTENSIONS)})")
        train, valid = _holdout(files, root, valid_fraction)
        return Split(root, "folder", train, valid)

    audio_dir = root / "wavs" if (root / "wavs").is_dir() else root
    by_id = {}
    for f in find_audio_files(audio_dir):
        by_id.setdefault(f.stem, f)
    ids = _metadata_ids(meta)
    lists = {name: _read_ids(root / name) for name in SPLIT_LISTS if (root / name).is_file()}
    test = set(lists.get("test.txt", []))
    valid_ids = lists.get("valid.txt", [])
    train_ids = lists.get("train.txt") or [i for i in ids if i not in test and i not in set(valid_ids)]
    missing = sorted({i for i in train_ids + valid_ids if i not in by_id})
    train = [by_id[i] for i in train_ids if i in by_id]
    valid = [by_id[i] for i in valid_ids if i in by_id]
    if not train and not valid:
        raise ValueError(f"{root}: no audio files found for the ids of {meta.name} "
                         f"(looked for ID{{{','.join(AUDIO_EXTENSIONS)}}} in {audio_dir})")
    if "valid.txt" not in lists:
        train, valid = _holdout(train, root, valid_fraction)
    return Split(root, "ljspeech", train, valid, missing)


def _data_dirs(data_dir) -> list:
    """One folder (str or Path) or a sequence of them, as a non-empty list."""
    if isinstance(data_dir, (str, os.PathLike)):
        return [data_dir]
    dirs = list(data_dir)
    if not dirs:
        raise ValueError("data: expected at least one data folder, found none")
    return dirs


def merge_splits(splits: Sequence[Split]) -> Split:
    """Several data folders trained on together: their training, validation and missing lists concatenated
    (each folder split by its own lists or hash holdout, so adding a folder never moves another's files)."""
    if len(splits) == 1:
        return splits[0]
    roots = [s.root.resolve() for s in splits]
    if len(set(roots)) != len(roots):
        raise ValueError(f"data: the same folder is given twice ({[str(s.root) for s in splits]})")
    layouts = sorted({s.layout for s in splits})
    return Split(splits[0].root, "+".join(layouts), [f for s in splits for f in s.train],
                 [f for s in splits for f in s.valid], [m for s in splits for m in s.missing],
                 others=[s.root for s in splits[1:]])


# ------------------------------------------------------------------------------------------------ the cache

@dataclass
class Utterance:
    """One usable file: int16 samples at 24 kHz (T,) and its log-mel (F, n_mels), F = 1 + T // hop."""

    path: Path
    audio: np.ndarray
    mel: np.ndarray


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pywavernn"


class FeatureCache:
    """Per-file audio + features on disk, keyed by the FeatureConfig and each file's path, mtime and size."""

    def __init__(self, cache_dir, feature_config: FeatureConfig):
        self.feature_config = feature_config
        key = hashlib.sha256(f"{CACHE_VERSION}\n{feature_config.to_json()}".encode()).hexdigest()[:16]
        self.dir = Path(cache_dir) / f"features-{key}"
        self.dir.mkdir(parents=True, exist_ok=True)
        info = self.dir / "feature_config.json"
        if not info.exists():  # for people looking at the cache; never read back
            with atomic_write(info) as fh:
                fh.write(feature_config.to_json().encode())

    def entry_path(self, path: Path) -> Path:
        st = path.stat()
        ident = f"{path.resolve()}\n{st.st_mtime_ns}\n{st.st_size}"
        return self.dir / (hashlib.sha256(ident.encode()).hexdigest()[:32] + ".npz")

    def load(self, path: Path) -> Utterance:
        """The file's samples and features, from the cache or computed (and cached). ValueError if unreadable."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"{path}: audio file not found")
        entry = self.entry_path(path)
        if entry.exists():
            try:
                with np.load(entry, allow_pickle=False) as z:
                    audio, mel = z["audio"], z["mel"]
                if audio.dtype == np.int16 and mel.dtype == np.float32 and \
                        mel.shape == (self.feature_config.n_frames(audio.shape[0]), self.feature_config.n_mels):
                    return Utterance(path, audio, mel)
            except (OSError, ValueError, KeyError, EOFError):
                pass  # damaged or foreign entry: recompute and replace it
        audio = float_to_int16(load_audio(path, self.feature_config.sample_rate))
        mel = log_mel(int16_to_float(audio), self.feature_config)
        with atomic_write(entry) as fh:
            np.savez(fh, audio=audio, mel=mel)
        return Utterance(path, audio, mel)


# ------------------------------------------------------------------------------------------- usable files

@dataclass(frozen=True)
class FileStatus:
    status: str  # "ok", "unreadable", "silent" or "short"
    detail: str = ""


def check_file(cache: FeatureCache, path: Path, min_peak: float, min_samples: int) -> FileStatus:
    """Load (and cache) one file and say whether it can be trained on."""
    try:
        utt = cache.load(path)
    except ValueError as exc:
        return FileStatus("unreadable", str(exc))
    peak = float(np.abs(utt.audio.astype(np.int32)).max()) / 32768.0
    if peak < min_peak:
        return FileStatus("silent", f"{path}: peak {peak:.3g} below {min_peak:g} (silent)")
    if utt.audio.shape[0] < min_samples:
        return FileStatus("short", f"{path}: {utt.audio.shape[0]} samples, shorter than one window "
                                   f"({min_samples} samples)")
    return FileStatus("ok")


def check_files(cache: FeatureCache, files: Sequence[Path], min_peak: float, min_samples: int, rank: int = 0,
                world_size: int = 1, gather: Callable | None = None) -> list[FileStatus]:
    """FileStatus of every file. With world_size > 1 each rank checks files i % world_size == rank (building
    their cache entries in parallel) and `gather` (an all_gather_object over ranks) shares the results."""
    mine = {i: check_file(cache, files[i], min_peak, min_samples) for i in range(rank, len(files), world_size)}
    if world_size > 1:
        merged: dict[int, FileStatus] = {}
        for part in gather(mine):
            merged.update(part)
        mine = merged
    return [mine[i] for i in range(len(files))]


def usable(files: Sequence[Path], statuses: Sequence[FileStatus], what: str, warn: bool = True) -> list[Path]:
    """The files whose status is ok; a warning per skipped file (when warn) and a count per kind."""
    skipped: dict[str, int] = {}
    for f, s in zip(files, statuses):
        if s.status != "ok":
            skipped[s.status] = skipped.get(s.status, 0) + 1
            if warn:
                warnings.warn(f"skipping {what} file: {s.detail}", stacklevel=2)
    if skipped and warn:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        warnings.warn(f"{what}: skipped {sum(skipped.values())} of {len(files)} files ({counts})", stacklevel=2)
    return [f for f, s in zip(files, statuses) if s.status == "ok"]


# ---------------------------------------------------------------------------------------------------- windows

@dataclass
class Batch:
    """N windows of W frames (NumPy; training.losses.batch_inputs moves them to the device).

    mel    (N, W + 1 + 2 pad, n_mels) float32: frames [j0 - pad, j0 + W + 1 + pad) clipped to the utterance,
           left-aligned; entries past `length` are zero and unused.
    crop   (N,) int64: index of frame j0 in `mel`.   length (N,) int64: valid frames in `mel`.
    audio  (N, W * hop) int16: samples [j0 * hop, (j0 + W) * hop).
    prev   (N,) int16: the sample before the window (0 at an utterance start, as at inference); with a history
           L > 1 (WindowSet(history=L), for linear prediction of order L, docs/format.md §11) (N, L): the L samples
           before the window, oldest first (prev[:, -1] the one just before), 0 before an utterance's start.
    """

    mel: np.ndarray
    crop: np.ndarray
    length: np.ndarray
    audio: np.ndarray
    prev: np.ndarray


class WindowSet:
    """The windows of a list of utterances: every (utterance, j0) with 0 <= j0 <= T // hop - W, equally likely.
    history: how many samples before each window a batch carries (Batch.prev)."""

    def __init__(self, utterances: Sequence[Utterance], hop: int, window_frames: int, pad: int, history: int = 1):
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"history: expected an integer >= 1 (samples before each window), found {history!r}")
        self.utterances = list(utterances)
        self.hop, self.window_frames, self.pad, self.history = hop, window_frames, pad, history
        counts = np.array([u.audio.shape[0] // hop - window_frames + 1 for u in self.utterances], dtype=np.int64)
        if not self.utterances or (counts < 1).any():
            raise ValueError("WindowSet: expected utterances of at least one window each")
        self.offsets = np.concatenate([[0], np.cumsum(counts)])

    @property
    def n_windows(self) -> int:
        return int(self.offsets[-1])

    def batch(self, window_ids: np.ndarray) -> Batch:
        w, hop, pad = self.window_frames, self.hop, self.pad
        n = len(window_ids)
        n_mels = self.utterances[0].mel.shape[1]
        mel = np.zeros((n, w + 1 + 2 * pad, n_mels), dtype=np.float32)
        crop, length = np.empty(n, np.int64), np.empty(n, np.int64)
        audio, prev = np.empty((n, w * hop), np.int16), np.zeros((n, self.history), np.int16)
        utt_index = np.searchsorted(self.offsets, window_ids, side="right") - 1
        for b, (k, i) in enumerate(zip(window_ids, utt_index)):
            utt = self.utterances[i]
            j0 = int(k - self.offsets[i])
            lo, hi = max(0, j0 - pad), min(utt.mel.shape[0], j0 + w + 1 + pad)
            mel[b, :hi - lo] = utt.mel[lo:hi]
            crop[b], length[b] = j0 - lo, hi - lo
            audio[b] = utt.audio[j0 * hop:(j0 + w) * hop]
            before = utt.audio[max(0, j0 * hop - self.history):j0 * hop]  # zeros before the utterance stay
            prev[b, self.history - before.shape[0]:] = before
        return Batch(mel, crop, length, audio, prev[:, 0] if self.history == 1 else prev)


class WindowSampler:
    """Random training batches, a pure function of (seed, rank, step): resuming at a step draws what an
    uninterrupted run draws there, and each rank of a distributed run draws its own windows."""

    def __init__(self, windows: WindowSet, batch_size: int, seed: int, rank: int = 0):
        self.windows, self.batch_size, self.seed, self.rank = windows, batch_size, seed, rank

    def batch(self, step: int) -> Batch:
        rng = np.random.default_rng([self.seed, self.rank, step])
        return self.windows.batch(rng.integers(0, self.windows.n_windows, size=self.batch_size))

    def state_dict(self, next_step: int) -> dict:
        return {"kind": "stateless", "seed": self.seed, "rank": self.rank, "batch_size": self.batch_size,
                "next_step": int(next_step), "n_windows": self.windows.n_windows}


def fixed_windows(windows: WindowSet, n_batches: int, batch_size: int, seed: int) -> list[Batch]:
    """The validation set: the same n_batches batches for every evaluation of a run (and every rank)."""
    rng = np.random.default_rng([seed, VALID_SEED_TAG])
    ids = rng.integers(0, windows.n_windows, size=(n_batches, batch_size))
    return [windows.batch(row) for row in ids]


# -------------------------------------------------------------------------------------------------- building

@dataclass
class Datasets:
    train: WindowSet  # this rank's shard
    valid: WindowSet
    summary: dict  # counts for the log and the checkpoint


def _emphasised(utt: Utterance, coef: float) -> Utterance:
    return utt if not coef else Utterance(utt.path, preemphasis(utt.audio, coef), utt.mel)


def build_datasets(data_dir, feature_config: FeatureConfig, window_frames: int, pad: int, cache_dir,
                   valid_fraction: float = 0.05, min_peak: float = 1e-4, rank: int = 0, world_size: int = 1,
                   gather: Callable | None = None, preemphasis: float = 0.0, history: int = 1) -> Datasets:
    """Find, check, cache and load the data of `data_dir` for one rank.

    Unreadable, silent (peak < min_peak) and too-short (under one window) files are skipped with a warning
    (from rank 0) and counted; ValueError if no training file is usable. Without usable validation files the
    training files are used for validation, with a warning. Training files are sharded over ranks
    (file i to rank i % world_size) when there are at least world_size of them. preemphasis > 0: the audio the
    windows carry (the samples predicted, and `prev`) is pywavernn.audio.preemphasis of the file's samples; the
    mel stays the file's own, as at inference. history: samples before each window its batch carries (Batch.prev;
    the model's linear_order, at least 1).
    """
    split = merge_splits([split_files(d, valid_fraction) for d in _data_dirs(data_dir)])
    warn = rank == 0
    if split.missing and warn:
        warnings.warn(f"{split.root}: {len(split.missing)} listed id(s) have no audio file, e.g. "
                      f"{split.missing[:3]}", stacklevel=2)
    hop = feature_config.hop_length
    cache = FeatureCache(cache_dir, feature_config)
    files = split.train + [f for f in split.valid if f not in set(split.train)]
    statuses = check_files(cache, files, min_peak, window_frames * hop, rank, world_size, gather)
    status_of = dict(zip(files, statuses))
    train = usable(split.train, [status_of[f] for f in split.train], "training", warn)
    valid = usable(split.valid, [status_of[f] for f in split.valid], "validation", warn)
    if not train:
        kinds = {}
        for s in statuses:
            kinds[s.status] = kinds.get(s.status, 0) + 1
        raise ValueError(f"{split.root}: no usable training audio: of {len(split.train)} training files "
                         f"{kinds.get('unreadable', 0)} unreadable, {kinds.get('silent', 0)} silent, "
                         f"{kinds.get('short', 0)} shorter than one window of {window_frames * hop} samples")
    valid_is_train = not valid
    if valid_is_train:
        if warn:
            warnings.warn(f"{split.root}: no usable validation files; validating on the training files "
                          f"(the reported NLL is not held out)", stacklevel=2)
        valid = train
    shard = train[rank::world_size] if len(train) >= world_size else train
    train_utts = [_emphasised(cache.load(f), preemphasis) for f in shard]
    valid_utts = [_emphasised(cache.load(f), preemphasis) for f in valid]
    summary = {
        "layout": split.layout, "data_dir": str(split.root) if split.others is None else
        [str(split.root), *map(str, split.others)],
        "train_files": len(train), "valid_files": len(valid), "valid_is_train": valid_is_train,
        "skipped": {k: sum(1 for s in statuses if s.status == k) for k in ("unreadable", "silent", "short")},
        "missing_ids": len(split.missing),
        "shard_hours": sum(u.audio.shape[0] for u in train_utts) / feature_config.sample_rate / 3600,
        "cache_dir": str(cache.dir),
    }
    return Datasets(WindowSet(train_utts, hop, window_frames, pad, history),
                    WindowSet(valid_utts, hop, window_frames, pad, history), summary)
