"""Cross-check with TB2J (an independent implementation of the magnetic force theorem) on a periodic case.

The engine with a uniform L³ k-grid describes the periodic L×L×L supercell with the defects; TB2J
gets the same supercell as a user tight-binding model (``TB2J.myTB.MyTB``, data = {R: H_R / 2},
Γ point only) and integrates with its own contour (Ozaki's continued-fraction poles at the same
temperature). Conventions: TB2J counts each pair twice (E = −Σ_{i≠j}), so its J and D are half
of ours; with spin–orbit coupling TB2J's "isotropic J" is a different combination, so the TI is
compared through TB2J's raw A^{uv} = ∫ Tr(p G^u_ij p G^v_ji) matrices, which give the tensor
elements of the m = z reference as Σ_uv Tr(σ_α σ_u σ_β σ_v) Im A^{uv}.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from helpers_greens import cluster, supercell_hamiltonian

from mlkkr.greens import Engine, KGrid, decompose, exchange_tensor, make_contour_params, make_host
from mlkkr.greens.contour import K_B
from mlkkr.greens.exchange import reference_block

TB2J = pytest.importorskip("TB2J", reason="TB2J (PyPI tb2j) is a dependency of mlkkr; install it")
ase = pytest.importorskip("ase", reason="ase comes with TB2J")

PAULI = [np.eye(2), np.array([[0, 1], [1, 0]]), np.array([[0, -1j], [1j, 0]]), np.array([[1, 0], [0, -1]])]
TEMPERATURE = 800.0
L = 5


def run_tb2j(host, defects, magnetic, tmp_path):
    """TB2J's A^{uv}_ij matrix (4×4, eV) and J, DMI (eV, TB2J convention) for defects ``magnetic``."""
    from TB2J.exchange import ExchangeNCL
    from TB2J.myTB import MyTB
    from TB2J.utils import symbol_number

    nb, ns = host.nb, L**3
    h_total = supercell_hamiltonian(host, L, defects)
    # split the periodic supercell Hamiltonian into H_R (R = supercell translation) from the hoppings
    grid = np.stack(np.meshgrid(*[np.arange(L)] * 3, indexing="ij"), -1).reshape(-1, 3)
    hr: dict[tuple[int, int, int], np.ndarray] = {}
    for d, t in host.hoppings().items():
        if d == (0, 0, 0):
            continue
        for i, r in enumerate(grid):
            tgt = r + np.array(d)
            cell = tuple(int(x) for x in np.floor_divide(tgt, L))
            j = int(np.ravel_multi_index(tuple(tgt % L), (L, L, L)))
            hr.setdefault(cell, np.zeros((ns * nb, ns * nb), complex))
            hr[cell][i * nb:(i + 1) * nb, j * nb:(j + 1) * nb] += t
    offsite = sum(hr.values())
    hr.setdefault((0, 0, 0), np.zeros((ns * nb, ns * nb), complex))
    hr[(0, 0, 0)] = hr[(0, 0, 0)] + (h_total - offsite)  # on-site terms incl. the defects
    frac = grid / L
    model = MyTB(ns * nb, data={r: m / 2 for r, m in hr.items()}, positions=np.repeat(frac, nb, axis=0), nspin=2)
    symbols = ["H"] * ns
    for d in defects:
        symbols[int(np.ravel_multi_index(tuple(np.array(d.site) % L), (L, L, L)))] = d.element
    atoms = ase.Atoms(symbols=symbols, scaled_positions=frac, cell=np.eye(3) * L * host.lattice_constant, pbc=True)
    model.set_atoms(atoms)
    names = {v: k for k, v in symbol_number(atoms).items()}
    basis = [f"{names[s]}|orb{o}|{spin}" for s in range(ns) for o in range(host.n_orb) for spin in ("up", "dn")]
    mag = [int(np.ravel_multi_index(tuple(np.array(defects[k].site) % L), (L, L, L))) for k in magnetic]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ex = ExchangeNCL(tbmodels=model, atoms=atoms, basis=basis, efermi=host.fermi_level,
                         magnetic_elements=sorted({defects[k].element for k in magnetic}), kmesh=[1, 1, 1],
                         nz=40, smearing=K_B * TEMPERATURE, output_path=str(tmp_path / "TB2J_results"),
                         index_magnetic_atoms=mag)
        ex.calculate_all()
    key = ((0, 0, 0), 0, 1)
    return ex.A_ijR[((0, 0, 0), mag[0], mag[1])], ex.exchange_Jdict[key], ex.DMI[key]


def engine_for(host):
    return Engine(host, KGrid(L, L, 0.0), make_contour_params(n_vertical=6, n_horizontal=24, n_fermi=12,
                                                              n_poles=10, temperature=TEMPERATURE))


def test_tb2j_metal(tmp_path):
    # a narrower band (t = 0.4 eV) keeps every state within E_F + 5.1 eV, the window TB2J keeps
    host = make_host("metal", t=0.4, fermi_level=-0.8)
    defects = cluster(("Fe", (0, 0, 0)), ("Co", (1, 0, 0)), ("Sn", (0, 1, 0)))
    ours = decompose(exchange_tensor(engine_for(host), defects, 0, 1)).J
    _, j_tb2j, _ = run_tb2j(host, defects, [0, 1], tmp_path)
    assert abs(ours) > 1e-2
    assert abs(2 * j_tb2j * 1000 - ours) < 0.02 * abs(ours)


def test_tb2j_topological_insulator(tmp_path):
    host = make_host("ti")
    defects = cluster(("Fe", (0, 0, 0)), ("Fe", (1, 0, 0)), ("Sn", (0, 1, 0)))
    ours = reference_block(engine_for(host), defects, 0, 1, moment=2)  # (xx, xy; yx, yy) for m = z
    a, _, dmi = run_tb2j(host, defects, [0, 1], tmp_path)
    theirs = np.array([[sum(np.trace(PAULI[p + 1] @ PAULI[u] @ PAULI[q + 1] @ PAULI[v]) * a[u, v]
                            for u in range(4) for v in range(4)).imag for q in range(2)] for p in range(2)]) * 1000
    assert np.abs(theirs - ours).max() < 0.02 * np.abs(ours).max()
    # D_z from the same reference: TB2J's DMI is half of ours
    assert abs(2 * dmi[2] * 1000 - (ours[0, 1] - ours[1, 0]) / 2) < 0.02 * abs((ours[0, 1] - ours[1, 0]) / 2)
