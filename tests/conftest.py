"""Shared fixtures: the real data folder and the BV23 model files."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the real data folder {SHARED_DATA} is missing: tests need ../shared/data beside the repository")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bv23_ini(shared_data) -> Path:
    return shared_data / "models" / "bv23" / "SCM_MW.ini"
