"""Inputs inside the documented ranges (issue 15). ``kgrid = 100`` is documented (an integer from 4 to 256 k
points per direction) but was refused: the int set only the base n and kept the default cap n_max = 64, so
"kgrid.n_max: must be >= kgrid.n = 100". The default cap now follows a larger n; an explicit n_max below n
is still refused."""

from __future__ import annotations

import pytest

from mlkkr.errors import InputError
from mlkkr.greens.engine import KGrid, make_kgrid


def test_kgrid_100_as_documented():
    assert make_kgrid(100) == KGrid(100, 100, 4.0)
    assert make_kgrid({"n": 100}) == KGrid(100, 100, 4.0)
    assert make_kgrid({"n": 100, "c": 0}) == KGrid(100, 100, 0.0)
    assert make_kgrid(256) == KGrid(256, 256, 4.0)
    # unchanged below the default cap, and an explicit cap is kept as given
    assert make_kgrid(24) == KGrid(24, 64, 4.0)
    assert make_kgrid({"n": 24, "n_max": 32}) == KGrid(24, 32, 4.0)
    assert make_kgrid({"n": 100, "n_max": 128}) == KGrid(100, 128, 4.0)
    with pytest.raises(InputError, match=r"kgrid.n_max: must be >= kgrid.n = 100"):
        make_kgrid({"n": 100, "n_max": 64})
    with pytest.raises(InputError, match="kgrid.n: .*an integer from 4 to 256"):
        make_kgrid(257)
    with pytest.raises(InputError, match="kgrid.n_max: .*an integer from 4 to 256"):
        make_kgrid({"n": 24, "n_max": 300})
