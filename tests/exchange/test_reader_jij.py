"""Real JuKKR Jij results (aiida-kkr kkr_jij_wc) read into ExchangePair: the reference archive jij.aiida."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from mlkkr.aiida.readers_jij import jij_workflows, pairs_from_workflow, tensors_from_jij_expanded
from mlkkr.aiida.readers_results import read_jij_archive
from mlkkr.cli import main
from mlkkr.data.h5io import read_exchange
from mlkkr.errors import InputError

#: The shells the archive holds (FACTS.md): distance (Å) -> (pairs, J in meV).
SHELLS = {2.460: (8, 11.97), 2.840: (6, 6.02), 4.016: (12, 0.111), 4.710: (24, -1.121), 4.919: (8, 0.929)}


def check_shells(pairs) -> None:
    assert len(pairs) == 58
    d = np.array([p.distance for p in pairs])
    j = np.array([p.J for p in pairs])
    for dist, (count, jval) in SHELLS.items():
        m = np.abs(d - dist) < 2e-3
        assert m.sum() == count, (dist, m.sum())
        np.testing.assert_allclose(j[m], jval, atol=5e-3)
        assert np.ptp(j[m]) < 1e-9  # one value per shell, as the archive stores it
    for p in pairs:
        assert p.species_i == p.species_j == "Fe" and p.host == "Fe"
        np.testing.assert_allclose(p.tensor, p.J * np.eye(3), atol=1e-12)  # isotropic solver: J·1 only
        assert p.provenance["tensor_parts"] == ["J"]
        assert p.provenance["environment_includes_host"] is True


def test_archive_is_read_with_the_values_it_holds(jij_archive, aiida_profile):
    from aiida.manage import get_manager

    before = get_manager().get_profile().name
    pairs, summary = read_jij_archive(jij_archive, env_cutoff=3.0)
    assert get_manager().get_profile().name == before, "the user's profile must be loaded again afterwards"
    check_shells(pairs)
    assert summary["workflows"][0]["label"] == "kkr_jij_wc" and summary["workflows"][0]["pairs"] == 58
    # environment: bcc Fe sites (a = 2.84 Å) within 3 Å of i or j, i and j excluded
    nn = [p for p in pairs if abs(p.distance - 2.460) < 2e-3][0]
    env = nn.environment_positions
    assert len(env) == len(nn.environment_species) > 0
    dmin = np.minimum(np.linalg.norm(env - nn.position_i, axis=1), np.linalg.norm(env - nn.position_j, axis=1))
    assert dmin.max() <= 3.0 + 1e-9 and dmin.min() > 2.4
    assert set(nn.environment_species) == {"Fe"}
    # nearest neighbours of i: 8 at 2.46 Å (one of them is j) and 6 at 2.84 Å
    di = np.linalg.norm(env - nn.position_i, axis=1)
    assert np.sum(np.abs(di - 2.4595) < 2e-3) == 7 and np.sum(np.abs(di - 2.840) < 2e-3) == 6


def test_imported_workflow_node_gives_the_same_pairs(jij_archive, aiida_profile_clean):
    from aiida.tools.archive.imports import import_archive

    import_archive(jij_archive)
    workflows = jij_workflows()
    assert len(workflows) == 1
    pairs = pairs_from_workflow(workflows[0], env_cutoff=3.0)
    check_shells(pairs)
    again, _ = read_jij_archive(jij_archive, env_cutoff=3.0)
    np.testing.assert_allclose([p.tensor for p in pairs], [p.tensor for p in again])


def test_from_archive_command_writes_the_schema(jij_archive, aiida_profile, tmp_path):
    out = tmp_path / "jij.h5"
    res = CliRunner().invoke(main, ["data", "from-archive", str(jij_archive), "-o", str(out), "--env-cutoff", "3",
                                    "--json"])
    assert res.exit_code == 0, res.output
    assert '"records": 58' in res.output
    check_shells(read_exchange(out))
    res = CliRunner().invoke(main, ["data", "from-archive", str(tmp_path / "missing.aiida"), "-o", str(out)])
    assert res.exit_code == 2 and "no such file" in res.output
    bogus = tmp_path / "bogus.aiida"
    bogus.write_text("not an archive")
    res = CliRunner().invoke(main, ["data", "from-archive", str(bogus), "-o", str(tmp_path / "x.h5")])
    assert res.exit_code == 2 and "not an AiiDA archive" in res.output
    assert not (tmp_path / "x.h5").exists()


def test_full_tensor_columns_are_converted_to_mlkkr_convention():
    """18-column rows (KKRhost's solver): D columns = D of (J − Jᵀ)/2 as JuKKR writes it (tbxccpljijdij.F90 divides
    by 2), tensor columns = symmetric part; J = Tr/3 kept."""
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3, 3))
    sym = (t + t.T) / 2
    a = (t - t.T) / 2
    d = np.array([a[1, 2], a[2, 0], a[0, 1]])
    row = np.concatenate([[0, 0, 1, 0, 0, np.trace(t) / 3], d, sym.reshape(9)])
    got, parts = tensors_from_jij_expanded(row[None])
    np.testing.assert_allclose(got[0], t, atol=1e-12)
    assert parts == ["J", "D", "S"]
    with pytest.raises(InputError, match="6 \\(isotropic\\) or 18"):
        tensors_from_jij_expanded(np.zeros((2, 7)))
