"""Fixtures of the JuKKR tests: the installation the platform uses (``make install`` builds it into
``.venv/opt/jukkr``), and the pinned source and regression-case tarballs (../shared/jukkr, or
$MLKKR_JUKKR_SOURCE / $MLKKR_JUKKR_TESTS)."""

from __future__ import annotations

import pytest

from support import IN_CI, JUKKR_SOURCE, jukkr_installation


@pytest.fixture(scope="session")
def installation():
    """The default JuKKR installation; built here when missing (outside CI: CI's `make install` built it)."""
    return jukkr_installation()


@pytest.fixture(scope="session")
def source_tarball():
    if not JUKKR_SOURCE.is_file():
        pytest.fail(f"the pinned JuKKR source {JUKKR_SOURCE} is missing: set MLKKR_JUKKR_SOURCE"
                    + (" (CI must have it)" if IN_CI else ""))
    return JUKKR_SOURCE
