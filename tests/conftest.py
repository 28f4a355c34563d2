"""Shared pytest configuration: hypothesis profiles, the location of the shared speech data, and the markers.

Profiles (choose with HYPOTHESIS_PROFILE): `ci` (derandomized, no deadline, the default under CI=true) and
`dev` (fewer examples, for quick local runs). The default outside CI is `dev`.

Markers (registered in pyproject.toml), put on at collection so that no test file has to remember them:
  torch  needs PyTorch (the train extra): the module holds `torch`, or the test asks pytest.importorskip("torch")
  data   reads ../shared/data (the `shared_data` fixture)
  gpu    needs a CUDA device (the `gpu` fixture of tests/test_cuda.py)
  slow   takes long on 2 cores: the modules and tests listed in SLOW below, or marked @pytest.mark.slow in place
`python -m pytest -m "not slow"` is the fast selection (1 min 36 s on 2 idle cores, 2026-12-07); `python -m pytest` runs all.
"""

import inspect
import os
import types
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=60, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PYWAVERNN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def forced_handover():
    """A function every -> None that makes the threaded C loops hand all their work to thread 0 for `every` steps
    every `every` steps (c/sampler.h: pwr_set_test_handover), as they do on their own when their barriers keep
    sleeping; switched off again after the test."""
    from pywavernn import _native

    _native.engine()._set_test_handover(0)
    yield _native.engine()._set_test_handover
    _native.engine()._set_test_handover(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the project's speech sets); tests that need it skip cleanly without it."""
    if not (SHARED_DATA / "piper-joe").is_dir():
        pytest.skip(f"shared speech data not found at {SHARED_DATA} (set PYWAVERNN_SHARED_DATA)")
    return SHARED_DATA


# ---------------------------------------------------------------------------------------------------- markers
# The slow ones: a module (every test in it), a test (every parametrisation) or one parametrisation, by node id
# relative to tests/. Chosen from a --durations run (CPU seconds on the 2-core VM, 2026-12-07): the whole suite
# costs ~215 CPU-s, what is left ~90 with collection (the first parametrisation of a test often carries its
# module's fixtures). A test whose file is free to edit is marked in place (@pytest.mark.slow) instead.
SLOW = {
    "test_examples.py",  # each example in a Python of its own, some training or plotting (36 s)
    "test_training.py::test_two_process_torchrun_ranks_stay_in_sync",  # two ranks over gloo (10 s)
    "test_training.py::test_killed_run_resumes_bit_identical",  # two training processes (9 s)
    "test_cuda.py::test_library_builds_and_reports_limits",  # nvcc builds the library (7 s; skipped without)
    "test_cli.py::test_mel_then_vocode_matches_resynth",  # the bundled model over real speech, three ways (7 s)
    "test_evaluate.py::test_evaluate_command_end_to_end",  # PESQ, STOI, pYIN and a figure (6 s)
    "test_subscale_parity.py::test_free_running_generation_is_identical",  # 12 cases (11 s; the teacher-forced
    # logits of the same models stay in the fast selection)
    "test_subscale_engine.py::test_thread_count_does_not_change_samples_or_trace",  # 11 cases (10 s)
    "test_engine.py::test_exact_mode_matches_reference_samples[0.2-block3]",  # 1x1 blocks (7 s)
    "test_engine.py::test_nll_matches_reference[0.4-block2]",  # (6 s)
    "test_engine.py::test_step_traces_match_reference[False-0.4-block2]",  # (2.4 s)
    "test_engine.py::test_step_traces_match_reference[True-0.4-block2]",  # (2.6 s)
    "test_subscale_engine.py::test_exact_mode_matches_reference_samples_and_steps[B8-F3-D3-d0.5-4x4-proj0.5]",
    "test_subscale_engine.py::test_exact_mode_matches_reference_samples_and_steps[B8-F3-D3-d0.5-4x4]",
    "test_linear_prediction.py::test_exact_mode_gives_the_reference_samples[0.5-block2-laplace]",
    "test_linear_prediction.py::test_exact_mode_gives_the_reference_samples[0.5-block4-none]",
    "test_linear_prediction.py::test_nll_matches_reference",  # (3.6 s)
    "test_parity_torch.py::test_linear_prediction_matches_reference",  # (3.7 s)
    "test_engine.py::test_handover_to_thread_zero_and_back_keeps_samples",  # (2.1 s)
    "test_reference.py::test_dense_and_block_sparse_models_give_the_same_samples",  # (2.0 s)
    # Second round (2026-12-07, 733 fast tests over the 2-minute bar): where a test runs over many models, the fast
    # selection keeps a few that between them reach every option, and the full suite runs the rest.
    "test_cuda.py",  # nvcc builds the library and the host checks once per module (15 s; GPU tests skip here)
    "test_cli.py::test_resynth_real_speech_with_exported_random_torch_model",  # real speech, a random model (7 s)
    "test_evaluate.py::test_evaluate_scores_a_subscale_model_with_its_reference_nll",  # (6 s)
    "test_engine.py::test_nll_matches_reference[0.25-block1]",  # (2.3 s; dense and 0.4-sparse cases stay)
    *(f"test_fused_engine.py::{test}[{kind}]" for kind in ("dense", "4x4") for test in (  # the 16x1 model stays
        "test_exact_mode_gives_the_reference_samples", "test_exact_mode_steps_match_the_reference_trace",
        "test_fast_mode_is_close_to_exact_mode", "test_vocoder_nll_matches_the_reference",
        "test_vocoder_draws_four_uniforms_a_sample_and_vocodes_the_reference")),  # (14 s for the two)
    *(f"test_subscale_engine.py::{test}[{case}]" for test in (  # ~1.5 s a case; the plain B4 and B16, B2 and
        "test_exact_mode_matches_reference_samples_and_steps", "test_fast_mode_agrees_up_to_draws_at_class_edges")
      for case in (  # the case with every option on stay
        "B4-F1-D3-d0.3-16x1", "B16-F2-D3-dNone-16x1", "B16-F2-D3-d0.3-16x1-proj0.25", "B4-F1-D3-dNone-16x1-prev_time",
        "B16-F2-D3-d0.3-16x1-proj0.25-prev_time", "B8-F1-D3-dNone-16x1-context_order",
        "B16-F2-D3-d0.3-16x1-proj0.25-prev_time-context_order",
        "B16-F2-D4-d0.3-16x1-proj0.25-prev_time-context_order", "B4-F1-D3-dNone-16x1-linear",
        "B16-F2-D3-d0.3-16x1-proj0.25-prev_time-context_order-linear", "B4-F1-D3-dNone-16x1-linear-prior")),
    *(f"test_subscale_parity.py::test_teacher_forced_logits_match_reference[{case}]" for case in (  # (1.3 s each)
        "B16-F2-sub_tensor", "B4-F1-time", "B4-F1-sub_tensor-context_order", "B16-F2-time-context_order",
        "B16-F2-time-context_order-linear", "B4-F1-sub_tensor-linear")),
}


def _needs_torch(item) -> bool:
    module = getattr(item, "module", None)
    if isinstance(getattr(module, "torch", None), types.ModuleType):
        return True
    function = getattr(item, "function", None)
    try:
        return function is not None and 'importorskip("torch"' in inspect.getsource(function)
    except (OSError, TypeError):
        return False


def _slow_keys(item) -> set[str]:
    """The SLOW entries that would name this item: its module, its test, its test with its parameters."""
    path, _, rest = item.nodeid.partition("::")
    module = path.rsplit("/", 1)[-1]
    return {module, f"{module}::{rest.split('[')[0]}", f"{module}::{rest}"}


@pytest.hookimpl(tryfirst=True)  # before -m and -k deselect anything
def pytest_collection_modifyitems(config, items):
    matched, modules = set(), set()
    for item in items:
        keys = _slow_keys(item)
        modules.add(min(keys, key=len))
        if keys & SLOW:
            matched |= keys & SLOW
            item.add_marker(pytest.mark.slow)
        if _needs_torch(item):
            item.add_marker(pytest.mark.torch)
        if "shared_data" in item.fixturenames:
            item.add_marker(pytest.mark.data)
        if "gpu" in item.fixturenames:
            item.add_marker(pytest.mark.gpu)
    # An entry that names a collected module but no test in it has gone stale (a renamed test or parameter):
    # say so, rather than let a slow test slip into the fast selection unnoticed.
    stale = sorted(e for e in SLOW - matched if e.split("::")[0] in modules)
    if stale and not any("::" in arg for arg in config.args):  # with single tests named, the rest are not stale
        config.issue_config_time_warning(pytest.PytestWarning(
            f"tests/conftest.py SLOW names tests that were not collected (renamed?): {stale}"), stacklevel=2)
