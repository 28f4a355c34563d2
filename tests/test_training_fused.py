"""Tests of the PyTorch Fused Subscale WaveRNN 2x twin (training/fused_model.py, docs/format.md §12) and of training
it through training.trainer.

What it is: parity of the twin with the NumPy reference (pywavernn/reference/fused.py) -- teacher-forced logits
within TOL = 1e-4 (measured: ~3e-6; the twin sums the 14 inputs and the conditioning in a matmul, the reference
left to right, and interpolates the conditioning before projecting it), the NLL within rel 1e-5, and free-running
generation sample for sample (uniforms first moved off class edges under the reference, so rounding cannot flip
a draw), for an even and an odd number of samples; leak tests (changing a sample, or one nibble of it, never
changes the logits of a nibble that may not see it, exactly, and does change those whose inputs carry it); the
structural input mask (no gradient, zero after an optimizer step); the fast recurrence (training.fast_gru, idle
halves held by a saturated update gate) against the torch loop, loss and every gradient; the window loss against
the utterance NLL; the config checks of a fused run; per-head block pruning; and a tiny pruned run that trains,
is interrupted after a checkpoint and resumed to bit-identical parameters, and exports a block-sparse fused file
that pywavernn.modelfile.load_model accepts and the reference generates from.
What it is not: a quality test (all audio synthetic), nor a test of the C engine.

Run: python -m pytest tests/test_training_fused.py -q          (about a minute on one CPU thread)
Letters: T samples, H hidden units, P = H / 8 units per part, K head hidden units, W window frames, hop.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")

from pywavernn import fused  # noqa: E402
from pywavernn import modelfile as fmt  # noqa: E402
from pywavernn.config import FeatureConfig, ModelConfig  # noqa: E402
from pywavernn.reference import fused as rf  # noqa: E402
from pywavernn.testing import uniforms_clear_of_class_edges  # noqa: E402
from training import data as tdata  # noqa: E402
from training import trainer as ttrainer  # noqa: E402
from training.checkpoint import load_checkpoint  # noqa: E402
from training.cli import main  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.fused_model import HISTORY, FusedWaveRNN  # noqa: E402
from training.losses import FusedWindowedNLL, batch_inputs, loss_module  # noqa: E402
from training.nets import build_net, history_samples  # noqa: E402
from training.pruning import Pruner, resolve_targets  # noqa: E402
from training.trainer import train  # noqa: E402

TOL = 1e-4
REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "training" / "configs"
TINY = TrainConfig.from_json_file(CONFIGS / "tiny.json")
FEATURES = TINY.features
FUSED_MODEL = {**TINY.model.to_dict(), "hidden_size": 32, "subscale_factor": 2, "subscale_horizon": 2,
               "subscale_fused": True}  # H = 32: P = 4, so the heads prune in 4x4 blocks
STEPS, INTERRUPT_AT = 12, 8
# (hop, frames): T = 1200 (even) and T = 375 (odd: half 1's last position is padded, the last step idle)
LENGTHS = [(300, 4), (75, 5)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def model_config(**changes) -> ModelConfig:
    return ModelConfig(**{**dict(hidden_size=64, out_hidden=32, cond_channels=16, cond_kernels=(3, 3),
                                 subscale_factor=2, subscale_horizon=2, subscale_fused=True), **changes})


def make_net(hop: int = 300, seed: int = 0) -> FusedWaveRNN:
    """Default init scaled up (x2, x3 for the heads) so the distributions are far from uniform."""
    torch.manual_seed(seed)
    net = FusedWaveRNN(model_config(), FeatureConfig(hop_length=hop))
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.mul_(3.0 if name in ("O1", "b1", "O2", "b2") else 2.0)
    return net


def utterance(hop: int, frames: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    n = hop * frames
    mel = rng.normal(-5.0, 1.5, (frames, 80)).astype(np.float32)
    t = np.arange(n)
    audio = (8000 * np.sin(2 * np.pi * 140 * t / 24000) + rng.normal(0, 300, n)).astype(np.int16)
    return mel, audio, rng.random((n, fused.N_NIBBLES), dtype=np.float32)


def twin_logits(net: FusedWaveRNN, mel: np.ndarray, audio: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None])[0].numpy()


# ------------------------------------------------------------------------------------------------- parity

@pytest.mark.parametrize("hop, frames", LENGTHS)
def test_teacher_forced_logits_match_reference(hop, frames):
    mel, audio, _ = utterance(hop, frames)
    net = make_net(hop)
    model = net.to_model()
    got, want = twin_logits(net, mel, audio), rf.teacher_forced_logits_fused_ref(model, mel, audio)
    assert got.shape == want.shape == (hop * frames, fused.N_NIBBLES, fused.NIBBLE_CLASSES)
    assert np.abs(want).max() > 3.0  # the comparison means something only if the logits are not all near zero
    assert np.abs(got - want).max() < TOL
    with torch.no_grad():
        bits = float(net.nll_bits(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None]))
    assert bits == pytest.approx(rf.nll_fused_ref(model, mel, audio), rel=1e-5)


@pytest.mark.parametrize("hop, frames", LENGTHS)
def test_free_running_generation_is_identical(hop, frames):
    mel, _, uniforms = utterance(hop, frames)
    net = make_net(hop, seed=1)
    model = net.to_model()
    uniforms = uniforms_clear_of_class_edges(lambda u: rf.generate_fused_ref(model, mel, u, trace=True), uniforms,
                                             1e-5)
    samples_t, trace_t = net.generate(mel, uniforms, trace=True)
    samples_r, trace_r = rf.generate_fused_ref(model, mel, uniforms, trace=True)
    assert samples_t.dtype == np.int16 and samples_t.shape == (hop * frames,)
    first = np.flatnonzero(samples_t != samples_r)
    assert first.size == 0, f"samples differ first at t = {first[0]} of {samples_t.size}"
    assert len(np.unique(samples_t)) > samples_t.size // 4  # a live trajectory, not a stuck one
    np.testing.assert_array_equal(trace_t["step"], trace_r["step"])
    for key in ("h", "logits"):
        assert np.abs(trace_t[key] - trace_r[key]).max() < TOL, key


def test_export_load_round_trip(tmp_path):
    mel, audio, _ = utterance(300, 2)
    net = make_net(seed=2)
    path = tmp_path / "fused.safetensors"
    fmt.save_model(net.to_model(provenance={"test": "round trip"}), path)
    loaded = fmt.load_model(path)
    assert loaded.model_config == net.model_config and loaded.model_config.kind == "fused"
    back = FusedWaveRNN.from_model(loaded)
    for (name, a), b in zip(net.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), name
    np.testing.assert_array_equal(twin_logits(back, mel, audio), twin_logits(net, mel, audio))


def test_other_twins_refuse_a_fused_config():
    from training.model import WaveRNN
    from training.subscale_model import SubscaleWaveRNN

    for cls in (WaveRNN, SubscaleWaveRNN):
        with pytest.raises(ValueError):
            cls(model_config())
    with pytest.raises(ValueError, match="fused model"):
        FusedWaveRNN(ModelConfig(subscale_factor=2, subscale_horizon=2))


# ---------------------------------------------------------------------------------------------------- leaks

def may_see(t: np.ndarray, t0: int) -> np.ndarray:
    """§12's dependency rule: whether sample t (any nibble) may depend on sample t0 != t."""
    i, s, k, z = t // 2, t % 2, t0 // 2, t0 % 2
    own = (z == s) & (k < i)
    other = np.where(s == 0, k <= i - 4, k <= i + 2) & (z != s)
    return own | other


def test_twin_teacher_forcing_is_leak_free():
    """Changing sample t0 changes no logits of a sample that may not see it (exactly), and does change those of
    the samples whose step input carries it: (k + 1, 0) and (k - 2, 1) for t0 = (k, 0); (k + 4, 0) and
    (k + 1, 1) for t0 = (k, 1)."""
    hop, frames = 300, 2
    mel, audio, _ = utterance(hop, frames)
    net = make_net(hop, seed=3)
    base = twin_logits(net, mel, audio)
    t = np.arange(audio.size)
    for t0 in (0, 1, 8, 9, 301, 444, 595, 598, 599):
        changed = audio.copy()
        changed[t0] = np.int16(-int(audio[t0]) - 1)  # flips every bit: every nibble changes
        got = twin_logits(net, mel, changed)
        hidden = ~may_see(t, t0) & (t != t0)
        np.testing.assert_array_equal(got[hidden], base[hidden], err_msg=f"t0 = {t0}")
        np.testing.assert_array_equal(got[t0, 0], base[t0, 0])  # nibble 0 sees nothing of its own sample
        assert np.abs(got[t0, 1:] - base[t0, 1:]).max() > 1e-4
        k, z = t0 // 2, t0 % 2
        carriers = [(k + 1) * 2, 2 * (k - 2) + 1] if z == 0 else [(k + 4) * 2, 2 * (k + 1) + 1]
        for t1 in (c for c in carriers if 0 <= c < audio.size):
            assert np.abs(got[t1] - base[t1]).max() > 1e-6, (t0, t1)


@pytest.mark.parametrize("nibble", range(fused.N_NIBBLES))
def test_a_nibble_reaches_only_the_later_nibbles_of_its_sample(nibble):
    """Within a step, nibble j of a sample sees nibbles m < j of that sample and nothing of the other half's."""
    hop, frames = 300, 2
    mel, audio, _ = utterance(hop, frames)
    net = make_net(hop, seed=4)
    base = twin_logits(net, mel, audio)
    for t0 in (20, 21, 300, 301):
        u = int(audio[t0]) + fused.SILENCE
        shift = 4 * (fused.N_NIBBLES - 1 - nibble)
        changed = audio.copy()
        changed[t0] = np.int16((u ^ (0xA << shift)) - fused.SILENCE)  # nibble `nibble` changes, the others not
        got = twin_logits(net, mel, changed)
        np.testing.assert_array_equal(got[t0, :nibble + 1], base[t0, :nibble + 1])
        if nibble < fused.N_NIBBLES - 1:
            assert np.abs(got[t0, nibble + 1:] - base[t0, nibble + 1:]).max() > 1e-6
        # the sample the same step generates in the other half: t0 = (i, 0) steps with (i - 3, 1) and vice versa
        partner = 2 * (t0 // 2 - fused.LAG) + 1 if t0 % 2 == 0 else 2 * (t0 // 2 + fused.LAG)
        np.testing.assert_array_equal(got[partner], base[partner])


# -------------------------------------------------------------------------------------- mask and recurrences

def test_input_mask_is_structural_and_survives_an_optimizer_step():
    mel, audio, _ = utterance(300, 2)
    net = make_net(seed=5)
    masked = net.input_mask == 0
    assert int(masked.sum()) == int((~fused.input_mask(64)).sum())
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    with torch.no_grad():
        net.gru.weight_ih_l0[masked] = 1.0  # set from outside: the pre-hook re-zeroes them
    loss = net.nll_bits(torch.from_numpy(mel)[None], torch.from_numpy(audio)[None])
    loss.backward()
    grad = net.gru.weight_ih_l0.grad
    assert torch.all(grad[masked] == 0) and grad[~masked].abs().sum() > 0
    opt.step()
    assert torch.all(net.gru.weight_ih_l0.detach()[masked] == 0)
    fmt_w = net.to_model().weights["gru.W_in"]
    assert np.all(fmt_w[~fused.input_mask(64)] == 0)


def test_fast_recurrence_matches_the_torch_loop():
    """training.fast_gru.gru_scan with the saturated update gate gives the torch loop's loss and gradients."""
    net = make_net(seed=6)
    rng = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 600, 16, generator=rng)
    unsigned = torch.randint(0, 65536, (2, 600), generator=rng)
    history = torch.randint(0, 65536, (2, HISTORY), generator=rng)
    results = []
    for dtype in (None, torch.float32):
        net.zero_grad()
        loss = net.window_nll_bits(feats, unsigned, history, dtype)
        loss.backward()
        results.append((float(loss.detach()), {n: p.grad.clone() for n, p in net.named_parameters()
                                                if p.grad is not None}))
    (a, grads_a), (b, grads_b) = results
    assert a == pytest.approx(b, rel=1e-6) and set(grads_a) == set(grads_b)
    for name, g in grads_a.items():
        assert (g - grads_b[name]).abs().max() <= 1e-5 * max(1.0, float(g.abs().max())), name


def test_window_loss_is_the_utterance_nll_at_an_utterance_start():
    """A window at an utterance's start (prev: silence) with the utterance's own conditioning is the utterance:
    FusedWindowedNLL equals FusedWaveRNN.nll_bits; true samples before a window change its loss."""
    hop, frames = 100, 4
    net = make_net(hop, seed=7)
    with torch.no_grad():
        for conv in net.cond_convs:  # the conditioning then does not depend on which frames the window carries
            conv.weight.zero_()
    mel, audio, _ = utterance(hop, frames)
    mel_t, audio_t = torch.from_numpy(mel)[None], torch.from_numpy(audio)[None]
    module = FusedWindowedNLL(net)
    silence = torch.zeros(1, HISTORY, dtype=torch.int16)
    with torch.no_grad():
        windowed = module(mel_t, [0], [frames], audio_t, silence)
        direct = net.nll_bits(mel_t, audio_t)
        other = module(mel_t, [0], [frames], audio_t, torch.full((1, HISTORY), 9000, dtype=torch.int16))
    assert float(windowed) == pytest.approx(float(direct), rel=1e-6)
    assert abs(float(other) - float(windowed)) > 1e-6
    with pytest.raises(ValueError, match="7 samples before each window"):
        module(mel_t, [0], [frames], audio_t, torch.zeros(1, dtype=torch.int16))


# ---------------------------------------------------------------------------------------------------- pruning

def test_heads_are_pruned_head_by_head_in_whole_blocks():
    torch.manual_seed(0)
    net = FusedWaveRNN(ModelConfig(hidden_size=64, out_hidden=32, cond_channels=16, cond_kernels=(3, 3),
                                   subscale_factor=2, subscale_horizon=2, subscale_fused=True, block_shape=(4, 4)))
    with torch.no_grad():
        net.O1[:32] *= 10.0  # head 0 much larger: ranked together, it would keep every block
    z = resolve_targets(0.5, True, {"fused.O2": 0.75}, kind="fused")
    assert z == {"gru.R_u": 0.5, "gru.R_r": 0.5, "gru.R_e": 0.5, "fused.O1": 0.5, "fused.O2": 0.75}
    targets = net.prune_targets(z, (4, 4))
    assert [t.name for t in targets][3:] == [f"fused.O1[{p}]" for p in range(8)] + [f"fused.O2[{p}]" for p in range(8)]
    pruner = Pruner(dict(net.named_parameters()), targets, t0=0, duration=2, prune_every=1, block=(4, 4))
    for step in (1, 2):
        pruner.update(step)
    for name, rows, zeta in (("O1", 32, 0.5), ("O2", 16, 0.75)):
        w = getattr(net, name).detach()
        for p in range(8):
            head = w[p * rows:(p + 1) * rows]
            blocks = head.reshape(rows // 4, 4, head.shape[1] // 4, 4).abs().sum(dim=(1, 3))
            assert float((blocks == 0).float().mean()) == zeta, (name, p)
            assert torch.all((head == 0) == (blocks == 0).repeat_interleave(4, 0).repeat_interleave(4, 1))
    model = net.to_model().to_sparse(fmt.FUSED_SPARSE_CAPABLE, block=(4, 4))
    assert model.sparsity()["fused.O1"] == 0.5 and model.sparsity()["fused.O2"] == 0.75
    with pytest.raises(ValueError, match="straddles two heads"):
        net.prune_targets(z, (64, 1))


# ---------------------------------------------------------------------------------------------------- configs

def fused_config(**changes) -> TrainConfig:
    d = TINY.to_dict()
    d.update({"model": FUSED_MODEL, "window_frames": 4, "steps": STEPS, "checkpoint_every": 4})
    d.update(changes)
    return TrainConfig.from_dict(d)


PRUNING = {"target_sparsity": 0.5, "t0": 2, "S": 6, "prune_every": 2, "block": [4, 4]}


@pytest.mark.parametrize("change, match", [
    ({"window_frames": 3, "features": {**FEATURES.to_dict(), "hop_length": 75}}, "even number of samples"),
    ({"pruning": {**PRUNING, "subscale_proj": 0.5}}, "only a subscale model"),
    ({"pruning": {**PRUNING, "per_matrix": {"out.O1": 0.5}}}, "unknown matrix 'out.O1'"),
    ({"model": TINY.model.to_dict(), "pruning": {**PRUNING, "per_matrix": {"fused.O2": 0.5}}},
     "unknown matrix 'fused.O2'"),
    ({"model": {**FUSED_MODEL, "out_hidden": 18}, "pruning": {**PRUNING, "prune_outputs": True}},
     "block 4x4 does not divide fused.O1"),
    ({"input_noise": 2.0}, "plain model only"),
    ({"model": {**FUSED_MODEL, "subscale_channels": 8}}, "no context network"),
])
def test_impossible_fused_configs_are_value_errors(change, match):
    with pytest.raises(ValueError, match=match):
        fused_config(**change)


def test_fused_small_config():
    cfg = TrainConfig.from_json_file(CONFIGS / "fused_small.json")
    assert cfg.model.kind == "fused" and cfg.model.hidden_size == 512
    assert (cfg.window_frames * cfg.features.hop_length) % 2 == 0
    z = cfg.pruning.sparsities_for("fused")
    assert z["gru.R_u"] > 0 and z["fused.O1"] > 0 and z["fused.O2"] > 0
    assert isinstance(build_net(cfg), FusedWaveRNN)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert isinstance(loss_module(FusedWaveRNN(model_config()), "auto"), FusedWindowedNLL)


# ------------------------------------------------------------------------------- train, resume, export

def write_tone(path: Path, seconds: float, freq: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 24000)) / 24000
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)
    sf.write(str(path), x.astype(np.float32), 24000, subtype="PCM_16")


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audio")
    for i in range(4):
        write_tone(d / f"utt{i}.wav", 0.3 + 0.05 * i, 180.0 + 40 * i, i)
    return d


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def pruned_config(**changes) -> TrainConfig:
    return fused_config(pruning={**PRUNING, "prune_outputs": True}, **changes)


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory, speech_dir, cache_dir) -> Path:
    out = tmp_path_factory.mktemp("run") / "run"
    result = train(pruned_config(), speech_dir, out, cache_dir=cache_dir, progress=False)
    assert result["step"] == STEPS and np.isfinite(result["valid_bits"])
    return out


def _rows(path: Path) -> list[tuple]:
    with open(path, newline="") as fh:
        return [(r["step"], r["train_bits"], r["valid_bits"], r["sparsity_R"]) for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_run_is_pruned_and_logs_held_out_nll(uninterrupted_run):
    ckpt = load_checkpoint(uninterrupted_run / "checkpoint.pt")
    assert ckpt["step"] == STEPS and ckpt["config"]["model"]["subscale_fused"] is True
    assert set(ckpt["pruner"]["masks"]) == {"gru.weight_hh_l0", "O1", "O2"}
    assert float((ckpt["model"]["gru.weight_hh_l0"] == 0).float().mean()) == 0.5
    for name in ("O1", "O2"):
        assert float((ckpt["model"][name] == 0).float().mean()) == 0.5
    rows = _rows(uninterrupted_run / "log.csv")
    assert [r[0] for r in rows] == [str(s) for s in range(2, STEPS + 1, 2)]
    assert rows[-1][3] == "0.5" and rows[-1][2] != ""


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_interrupted_run_resumes_bit_identical(tmp_path, speech_dir, cache_dir, uninterrupted_run, monkeypatch):
    out = tmp_path / "run"
    real_save = ttrainer.save_checkpoint

    def save_then_die(path, state):
        real_save(path, state)
        if state["step"] == INTERRUPT_AT:
            raise Interrupted

    monkeypatch.setattr(ttrainer, "save_checkpoint", save_then_die)
    with pytest.raises(Interrupted):
        train(pruned_config(), speech_dir, out, cache_dir=cache_dir, progress=False)
    monkeypatch.setattr(ttrainer, "save_checkpoint", real_save)
    assert load_checkpoint(out / "checkpoint.pt")["step"] == INTERRUPT_AT
    assert train(None, speech_dir, out, resume=True, cache_dir=cache_dir, progress=False)["step"] == STEPS
    a, b = load_checkpoint(uninterrupted_run / "checkpoint.pt"), load_checkpoint(out / "checkpoint.pt")
    assert a["ranks"][0]["params_sha256"] == b["ranks"][0]["params_sha256"]
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert a["metrics"]["valid_bits"] == b["metrics"]["valid_bits"]
    assert _rows(out / "log.csv") == _rows(uninterrupted_run / "log.csv")


@pytest.mark.slow
def test_export_writes_a_sparse_fused_model_the_reference_runs(tmp_path, uninterrupted_run):
    path = tmp_path / "fused.safetensors"
    assert main(["export", str(uninterrupted_run / "checkpoint.pt"), "-o", str(path)]) == 0
    model = fmt.load_model(path)
    assert model.model_config.kind == "fused" and model.model_config.block_shape == (4, 4)
    assert all(model.is_sparse(n) for n in fmt.FUSED_SPARSE_CAPABLE)
    assert model.sparsity() == {"gru.R": 0.5, "fused.O1": 0.5, "fused.O2": 0.5}
    assert model.provenance["training"]["pruning"]["targets"]["fused.O1"] == 0.5
    # the file holds the checkpoint's weights: the reference gives the twin's logits back
    net = FusedWaveRNN(model.model_config, FEATURES)
    net.load_state_dict(load_checkpoint(uninterrupted_run / "checkpoint.pt")["model"])
    rng = np.random.default_rng(0)
    mel = rng.standard_normal((3, FEATURES.n_mels)).astype(np.float32)
    audio = rng.integers(-2000, 2000, 3 * FEATURES.hop_length).astype(np.int16)
    assert np.abs(twin_logits(net, mel, audio) - rf.teacher_forced_logits_fused_ref(model, mel, audio)).max() < TOL
    uniforms = rng.random((3 * FEATURES.hop_length, 4), dtype=np.float32)
    uniforms = uniforms_clear_of_class_edges(lambda u: rf.generate_fused_ref(model, mel, u, trace=True), uniforms,
                                             1e-5)
    np.testing.assert_array_equal(net.generate(mel, uniforms), rf.generate_fused_ref(model, mel, uniforms))
    dense = tmp_path / "dense.safetensors"
    assert main(["export", str(uninterrupted_run / "checkpoint.pt"), "-o", str(dense), "--dense"]) == 0
    assert not any(fmt.load_model(dense).is_sparse(n) for n in fmt.FUSED_SPARSE_CAPABLE)


@pytest.mark.slow
def test_fast_recurrence_trains(tmp_path, speech_dir, cache_dir):
    """gru_impl "scan" (training.fast_gru) trains a fused model through python -m training too."""
    out = tmp_path / "run"
    cfg = pruned_config(gru_impl="scan", steps=8, eval_every=8)
    result = train(cfg, speech_dir, out, cache_dir=cache_dir, progress=False)
    assert result["step"] == 8 and np.isfinite(result["valid_bits"])
    assert load_checkpoint(out / "checkpoint.pt")["runtime"]["gru_impl"] == "scan"


def test_window_batches_carry_the_fused_history(speech_dir, cache_dir):
    cfg = fused_config()
    assert history_samples(cfg) == HISTORY
    utt = tdata.FeatureCache(cache_dir, FEATURES).load(speech_dir / "utt1.wav")
    batch = tdata.WindowSet([utt], FEATURES.hop_length, cfg.window_frames, cfg.model.cond_lookahead,
                            HISTORY).batch(np.array([0, 5]))
    assert batch.prev.shape == (2, HISTORY) and np.all(batch.prev[0] == 0)
    np.testing.assert_array_equal(batch.prev[1], utt.audio[5 * FEATURES.hop_length - HISTORY:5 * FEATURES.hop_length])
    net = build_net(cfg)
    with torch.no_grad():
        bits = float(loss_module(net, cfg.gru_impl)(*batch_inputs(batch, torch.device("cpu"))))
    assert 8.0 < bits < 20.0  # an untrained model: about 16 bits (4 x 4) per sample


@pytest.mark.slow
def test_score_gives_the_exported_models_nll_from_the_checkpoint(tmp_path, speech_dir, uninterrupted_run):
    """training.score on a fused checkpoint and on its exported file: the same bits, split into the bytes
    (nibbles 0 + 1 and 2 + 3) and by half; training.evaluate.teacher_forced_bits is the reference's NLL."""
    from training.evaluate import teacher_forced_bits
    from training.score import score

    path = tmp_path / "fused.safetensors"
    assert main(["export", str(uninterrupted_run / "checkpoint.pt"), "-o", str(path)]) == 0
    a, b = (score(p, speech_dir, log=lambda m: None) for p in (uninterrupted_run / "checkpoint.pt", path))
    assert a["what"] == f"checkpoint at step {STEPS}" and b["what"] == "model file" and a["n_files"] == 4
    for key in ("nll_bits", "coarse", "fine"):
        assert abs(a["mean"][key] - b["mean"][key]) < 1e-4, key
    assert abs(a["mean"]["nll_bits"] - a["mean"]["coarse"] - a["mean"]["fine"]) < 1e-9
    assert len(a["by_subtensor"]["total"]) == 2
    model = fmt.load_model(path)
    rng = np.random.default_rng(1)
    mel = rng.standard_normal((3, FEATURES.n_mels)).astype(np.float32)
    audio = rng.integers(-3000, 3000, 3 * FEATURES.hop_length - 7).astype(np.int16)  # padded to whole frames
    bits = teacher_forced_bits(FusedWaveRNN.from_model(model), mel, audio)
    padded = np.concatenate([audio, np.zeros(7, np.int16)])
    want = rf.teacher_forced_logits_fused_ref(model, mel, padded)[:audio.size]
    nib = fused.split_nibbles(audio.astype(np.int64) + fused.SILENCE)
    logp = np.take_along_axis(rf.log_softmax_rows(want.astype(np.float64)), nib[..., None], -1)[..., 0]
    np.testing.assert_allclose(bits[0], -logp[:, :2].sum(1) / np.log(2), atol=1e-4)
    np.testing.assert_allclose(bits[1], -logp[:, 2:].sum(1) / np.log(2), atol=1e-4)
