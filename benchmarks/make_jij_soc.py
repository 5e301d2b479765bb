"""Real J_ij *with* spin–orbit coupling (J, D, S) from JuKKR, through the daemon, read back and checked.

    AIIDA_PATH=... .venv/bin/python benchmarks/make_jij_soc.py [--systems all|NAME,...]
                                                              [-o benchmarks/data/jij-soc.h5]

KKRhost computes D_ij and the anisotropic J_ij only with its Chebyshev (``NEWSOSOL``) solver, from three
calculations with the magnetisation along x, y and z; aiida-kkr's ``kkr_jij_wc`` does this when the
parameters of its run ask for that solver. Here they do through ``params_kkr_overwrite`` on the host
converged *without* SOC (:func:`mlkkr.aiida.kkr.jij_builder`, ``soc=True``): SOC enters in the one-shot
J_ij run, on the scalar-relativistic self-consistent potential (the magnetic-force-theorem practice; a
Chebyshev+SOC self-consistency of bcc Fe costs 30–45 min here and changes the potential of a 3d metal
little). Steps per system, every node in the Group ``mlkkr/jij-soc`` (a rerun reuses what finished):

1. ``kkr_scf_wc`` (NSPIN 2, ``mag_init``) without SOC;
2. ``kkr_jij_wc`` with SOC (three KKRhost runs) and the isotropic ``kkr_jij_wc`` on the same host;
3. both read by :func:`mlkkr.aiida.readers_jij.pairs_from_workflow` (the reader of ``mlkkr data
   from-archive|from-group``) and D checked against the symmetry of each bond
   (:func:`mlkkr.data.symmetry.allowed_dmi`): the part of D outside what the bond's symmetry allows must be
   numerically zero — this tests the reader's column order and bond direction on real output.

Systems: bcc Fe (every bond midpoint an inversion centre: D = 0 on every bond, S and the SOC shift of J
are what is measured) and ``FePt-z0.42``: Fe and Pt on a tetragonal cell (a = 2.72 Å, c = 3.71 Å, the
L1₀ FePt lattice) with Pt moved from z = c/2 to z = 0.42 c — a polar C4v crystal, the bulk analogue of an
Fe/Pt interface, where Moriya's rules allow D ∥ ẑ × r̂ on in-plane Fe–Fe bonds and forbid it on bonds along
ẑ. Its one-shot SOC runs are 2.5 electrons from neutral (the Chebyshev solver on a potential converged with
the other one; bcc Fe: 0.03 e): its D *directions* check the reader against the crystal's symmetry, its
magnitudes are not physical (a Chebyshev+SOC self-consistency would be needed) and it stays out of the ML
data. The J_ij pairs of consistent runs (|charge error| ≤ 0.5 e per cell) go to an ``mlkkr.exchange`` file for ML-Exc;
the numbers to benchmarks/results/jij_soc.json.
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
#: height of Pt in the tetragonal FePt cell, in units of c (0.50 would be L1₀, centrosymmetric: its SCF with
#: Broyden mixing below rms 0.3 stayed at rms 0.4–0.5 for 20 iterations and was stopped for time; 0.38 and
#: 0.46 were stopped once 0.42 had shown that the one-shot SOC runs of this cell are 2.5 e from neutral)
POLAR_Z = (0.42,)


def systems() -> dict[str, tuple]:
    """name → (ase.Atoms, magnetic site indices, J_ij radius in Å)."""
    from ase import Atoms
    from ase.build import bulk

    def fept(z: float) -> Atoms:
        return Atoms(["Fe", "Pt"], scaled_positions=[[0, 0, 0], [0.5, 0.5, z]], cell=[2.72, 2.72, 3.71], pbc=True)

    out = {"bcc-Fe": (bulk("Fe", "bcc", a=2.87), [0], 3.0)}
    for z in POLAR_Z:
        out[f"FePt-z{z:.2f}"] = (fept(z), [0], 3.9)
    return out


def _tagged(group, task: str):
    found = [n for n in group.nodes if n.base.extras.get("mlkkr_jij_soc", None) == task
             and (not n.is_terminated or n.is_finished_ok)]
    return max(found, key=lambda n: n.ctime) if found else None


def shell_table(pairs) -> list[dict]:
    """Per distance shell: J (mean), |D| and |S| at most, and D outside what the bond's symmetry allows."""
    from mlkkr.data.symmetry import allowed_dmi
    from mlkkr.greens.exchange import decompose

    shells: dict[float, list] = {}
    for p in pairs:
        shells.setdefault(round(float(np.linalg.norm(p.position_j - p.position_i)), 3), []).append(p)
    rows = []
    for d, ps in sorted(shells.items()):
        parts = [decompose(p.tensor) for p in ps]
        forbidden, along = [], []
        for p, x in zip(ps, parts, strict=True):
            basis = allowed_dmi(p)
            allowed = basis.T @ (basis @ x.D) if len(basis) else np.zeros(3)
            forbidden.append(float(np.linalg.norm(x.D - allowed)))
            bond = (p.position_j - p.position_i) / np.linalg.norm(p.position_j - p.position_i)
            along.append(float(abs(x.D @ bond)))
        rows.append({"distance_angstrom": d, "n": len(ps), "J_meV": float(np.mean([x.J for x in parts])),
                     "J_spread_meV": float(np.ptp([x.J for x in parts])),
                     "max_abs_D_meV": float(max(np.linalg.norm(x.D) for x in parts)),
                     "max_D_forbidden_by_symmetry_meV": max(forbidden),
                     "max_D_along_bond_meV": max(along),
                     "allowed_D_dimensions": int(len(allowed_dmi(ps[0]))),
                     "max_abs_S_meV": float(max(np.abs(x.S).max() for x in parts)),
                     "D_meV": [[round(float(v), 4) for v in x.D] for x in parts],
                     "bonds_angstrom": [[round(float(v), 3) for v in p.position_j - p.position_i] for p in ps]})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="all")
    ap.add_argument("--env-cutoff", type=float, default=3.7, help="pair environment radius, Å (as make_jij_real)")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "data" / "jij-soc.h5")
    args = ap.parse_args()

    from aiida import load_profile, orm

    load_profile()
    from mlkkr.aiida import kkr
    from mlkkr.aiida.kkr_launch import submit_host
    from mlkkr.aiida.launch import launch
    from mlkkr.aiida.readers_jij import MAX_CHARGE_ERROR, jij_charge_error, pairs_from_workflow
    from mlkkr.aiida.readers_kkrimp import workflow_wall_seconds
    from mlkkr.data.h5io import write_exchange

    table = systems()
    names = list(table) if args.systems == "all" else [s.strip() for s in args.systems.split(",")]
    if unknown := [n for n in names if n not in table]:
        print(f"--systems: unknown {unknown}; allowed: {', '.join(table)}", file=sys.stderr)
        return 2
    group, _ = orm.Group.collection.get_or_create(GROUP)
    t0 = time.time()

    def step(task: str, make):
        node = _tagged(group, task)
        if node is None:
            node = make()
            node.base.extras.set("mlkkr_jij_soc", task)
            group.add_nodes([node])
            print(f"[{time.time() - t0:6.0f} s] {task}: submitted {node.process_label}<{node.pk}>", flush=True)
        return node

    hosts = {n: step(f"{n}:host", lambda n=n: submit_host(table[n][0], kkr.HostSettings(mag_init=True),
                                                          label=f"host {n}")) for n in names}
    jij: dict[str, dict] = {}
    while True:
        for n, host in hosts.items():
            if n in jij or not host.is_terminated:
                continue
            if not host.is_finished_ok:
                raise SystemExit(f"{n}: host SCF failed (pk {host.pk}, exit {host.exit_status})")
            radius, sites = table[n][2], table[n][1]
            jij[n] = {soc: step(f"{n}:jij-{soc}", lambda n=n, soc=soc, host=host, radius=radius, sites=sites: launch(
                kkr.jij_builder(host, "kkrhost@localhost", radius=radius, sites_i=sites, sites_j=sites,
                                soc=soc == "soc", label=f"Jij {n} {soc} r<{radius} Å")))
                      for soc in ("soc", "nosoc")}
        if len(jij) == len(names) and all(w.is_terminated for d in jij.values() for w in d.values()):
            break
        time.sleep(10)

    result = {"benchmark": "make_jij_soc", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "soc_parameters": kkr.SOC_CHEBYSHEV, "systems": {}}
    all_pairs = []
    for n in names:
        row = {"host_pk": hosts[n].pk, "host_uuid": hosts[n].uuid,
               "host_scf_s": round(workflow_wall_seconds(hosts[n]), 1),
               "moment_muB": kkr.host_state(hosts[n])["total_spin_moment"]}
        for soc, wf in jij[n].items():
            if not wf.is_finished_ok:
                raise SystemExit(f"{n}: J_ij ({soc}) failed (pk {wf.pk}, exit {wf.exit_status})")
            pairs = pairs_from_workflow(wf, env_cutoff=args.env_cutoff)
            charge = jij_charge_error(wf)
            for p in pairs:
                p.provenance["soc"] = soc == "soc"
            if soc == "soc" and charge is not None and charge <= MAX_CHARGE_ERROR:
                all_pairs += pairs  # only J_ij of runs consistent with their potential become ML data
            row[soc] = {"pk": wf.pk, "uuid": wf.uuid, "wall_s": round(workflow_wall_seconds(wf), 1),
                        "charge_error_electrons": charge, "in_dataset": soc == "soc" and charge is not None
                        and charge <= MAX_CHARGE_ERROR,
                        "columns": int(wf.outputs.jij_data.get_array("Jij_expanded").shape[1]),
                        "pairs": len(pairs), "tensor_parts": pairs[0].provenance.get("tensor_parts"),
                        "shells": shell_table(pairs)}
        result["systems"][n] = row
        print(n, json.dumps({k: v for k, v in row.items() if k not in ("soc", "nosoc")}),
              f"charge error of the SOC runs {row['soc']['charge_error_electrons']:.3g} e", flush=True)
        for soc in ("soc", "nosoc"):
            for s in row[soc]["shells"]:
                print(f"  {soc:5s} {s['distance_angstrom']:.3f} Å ×{s['n']:2d}: J {s['J_meV']:8.3f} meV, "
                      f"|D| ≤ {s['max_abs_D_meV']:.4f} (forbidden part ≤ {s['max_D_forbidden_by_symmetry_meV']:.1e},"
                      f" {s['allowed_D_dimensions']} allowed), |S| ≤ {s['max_abs_S_meV']:.4f}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # the same timings record as make_jij_real.py (bench_ml_exc_real.py reads it for the speed-up)
    timings = {n: {"host_scf_s": result["systems"][n]["host_scf_s"], "jij_s": result["systems"][n]["soc"]["wall_s"],
                   "host_pk": hosts[n].pk, "jij_pk": jij[n]["soc"].pk, "jij_label": jij[n]["soc"].label}
               for n in names if result["systems"][n]["soc"]["in_dataset"]}
    write_exchange(args.output, all_pairs, {"source": f"group {GROUP}", "systems": names, "timings": timings,
                                            "env_cutoff_ang": args.env_cutoff, "soc": "one-shot Chebyshev SOC"})
    path = ROOT / "benchmarks" / "results" / "jij_soc.json"
    path.write_text(json.dumps(result, indent=1, default=float))
    print(f"{len(all_pairs)} SOC pairs → {args.output}; results: {path.relative_to(ROOT)} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
