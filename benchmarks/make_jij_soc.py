"""Real J_ij *with* spin–orbit coupling: bcc Fe with JuKKR's Chebyshev solver, through the daemon, read back.

    AIIDA_PATH=... .venv/bin/python benchmarks/make_jij_soc.py [--radius 3.0] [--iterations 40]

KKRhost computes D_ij and the anisotropic J_ij only with its Chebyshev (``NEWSOSOL``) solver, from three
calculations with the magnetisation along x, y and z (``kkr_jij_wc`` does this when its parent used the
Chebyshev solver). Steps, every node in the Group ``mlkkr/jij-soc`` (a rerun reuses what finished):

1. bcc Fe (a = 2.87 Å) converged magnetic without SOC (``kkr_scf_wc``, as ``make_jij_real.py``);
2. a KKRhost self-consistency with the Chebyshev solver and SOC from that potential
   (``<USE_CHEBYCHEV_SOLVER>``, ``NPAN_LOG``/``NPAN_EQ``/``NCHEB``/``R_LOG``; one KkrCalculation);
3. ``kkr_jij_wc`` on it up to ``--radius`` Å (three KKRhost runs) and the isotropic ``kkr_jij_wc`` on the
   host of step 1, side by side;
4. both read by :func:`mlkkr.aiida.readers_jij.pairs_from_workflow` (the reader of ``mlkkr data
   from-archive|from-group``): J with and without SOC per shell, D (zero by symmetry in bcc Fe: every bond
   midpoint is an inversion centre, :func:`mlkkr.data.symmetry.allowed_dmi`), the symmetric anisotropy.

Nothing is asserted; the numbers go to benchmarks/results/jij_soc.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GROUP = "mlkkr/jij-soc"
#: Chebyshev mesh of JuKKR's own SOC tests at lmax 2 (log panels to R_LOG bohr, then equidistant ones)
CHEBYSHEV = {"<USE_CHEBYCHEV_SOLVER>": True, "NPAN_LOG": 5, "NPAN_EQ": 7, "NCHEB": 10, "R_LOG": 0.6}


def _wait(node, what: str):
    from mlkkr.aiida.testing import wait_for

    t0 = time.time()
    node = wait_for(node, 7200)
    print(f"{what}: {node.process_label}<{node.pk}> {node.process_state.value} exit {node.exit_status} "
          f"({time.time() - t0:.0f} s)", flush=True)
    if not node.is_finished_ok:
        raise SystemExit(f"{what} failed")
    return node


def _tagged(group, task: str):
    found = [n for n in group.nodes if n.base.extras.get("mlkkr_jij_soc", None) == task and n.is_finished_ok]
    return found[-1] if found else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--radius", type=float, default=3.0)
    ap.add_argument("--iterations", type=int, default=40, help="Chebyshev SCF iterations at most")
    args = ap.parse_args()

    from aiida import load_profile, orm
    from aiida.engine import submit
    from ase.build import bulk

    load_profile()
    from aiida_kkr.calculations import KkrCalculation

    from mlkkr.aiida import kkr
    from mlkkr.aiida.kkr_launch import submit_host
    from mlkkr.aiida.readers_jij import pairs_from_workflow
    from mlkkr.greens.exchange import decompose

    group, _ = orm.Group.collection.get_or_create(GROUP)

    def step(task: str, make):
        node = _tagged(group, task)
        if node is not None:
            print(f"{task}: reused {node.process_label}<{node.pk}>", flush=True)
            return node
        node = make()
        node.base.extras.set("mlkkr_jij_soc", task)
        group.add_nodes([node])
        return _wait(node, task)

    host = step("host", lambda: submit_host(orm.StructureData(ase=bulk("Fe", "bcc", a=2.87)),
                                            kkr.HostSettings(mag_init=True)))
    remote = kkr.host_remote(host)

    def soc_scf():
        params = dict(remote.creator.inputs.parameters.get_dict())
        params.update(CHEBYSHEV)
        params.update({"NSTEPS": int(args.iterations), "QBOUND": 1e-6, "IMIX": 5, "STRMIX": 0.01, "BRYMIX": 0.01})
        builder = KkrCalculation.get_builder()
        builder.code = kkr.resolve_code("kkrhost@localhost", kkr.KKRHOST, "kkr")
        builder.parameters = orm.Dict(kkr.check_parameters(params))
        builder.parent_folder = remote
        builder.metadata.options = {"resources": {"num_machines": 1, "num_mpiprocs_per_machine": 1},
                                    "max_wallclock_seconds": 7200, "withmpi": False}
        builder.metadata.label = "bcc Fe SOC SCF (Chebyshev)"
        return submit(builder)

    soc = step("soc-scf", soc_scf)
    out = soc.outputs.output_parameters.get_dict()
    conv = out.get("convergence_group", {})
    print(f"SOC SCF: {conv.get('number_of_iterations')} iterations, rms {conv.get('rms')}, "
          f"converged {conv.get('calculation_converged')}, E_F {out.get('fermi_energy')} Ry", flush=True)
    jij_soc = step("jij-soc", lambda: submit(kkr.jij_builder(soc, "kkrhost@localhost", radius=args.radius)))
    jij_plain = step("jij", lambda: submit(kkr.jij_builder(host, "kkrhost@localhost", radius=args.radius)))

    rows = {}
    for name, wf in (("soc", jij_soc), ("no_soc", jij_plain)):
        pairs = pairs_from_workflow(wf)
        table = np.asarray(wf.outputs.jij_data.get_array("Jij_expanded"))
        shells: dict[float, list] = {}
        for p in pairs:
            shells.setdefault(round(float(np.linalg.norm(p.position_j - p.position_i)), 3), []).append(p)
        rows[name] = {"columns": int(table.shape[1]), "pairs": len(pairs),
                      "tensor_parts": pairs[0].provenance.get("tensor_parts"), "shells": []}
        for d, ps in sorted(shells.items()):
            parts = [decompose(p.tensor) for p in ps]
            rows[name]["shells"].append({
                "distance_angstrom": d, "n": len(ps), "J_meV": float(np.mean([x.J for x in parts])),
                "max_abs_D_meV": float(max(np.abs(x.D).max() for x in parts)),
                "max_abs_S_meV": float(max(np.abs(x.S).max() for x in parts))})
        print(name, json.dumps(rows[name], indent=1), flush=True)
    result = {"benchmark": "make_jij_soc", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "system": "bcc Fe a=2.87 Å, lmax 2", "chebyshev": CHEBYSHEV,
              "soc_scf": {"iterations": conv.get("number_of_iterations"), "rms": conv.get("rms"),
                          "converged": conv.get("calculation_converged"), "fermi_energy_ry": out.get("fermi_energy"),
                          "pk": soc.pk},
              "jij": rows, "nodes": {"host": host.uuid, "soc_scf": soc.uuid, "jij_soc": jij_soc.uuid,
                                     "jij": jij_plain.uuid}}
    path = ROOT / "benchmarks" / "results" / "jij_soc.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
