"""Shared pytest configuration: hypothesis profiles and the location of the shared speech data.

Profiles (choose with HYPOTHESIS_PROFILE): `ci` (derandomized, no deadline, the default under CI=true) and
`dev` (fewer examples, for quick local runs). The default outside CI is `dev`.
"""

import os
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
