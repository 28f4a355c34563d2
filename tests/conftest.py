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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the project's speech sets); tests that need it skip cleanly without it."""
    if not (SHARED_DATA / "piper-joe").is_dir():
        pytest.skip(f"shared speech data not found at {SHARED_DATA} (set PYWAVERNN_SHARED_DATA)")
    return SHARED_DATA
