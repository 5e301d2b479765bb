"""Real J_ij for ML-Exc: magnetic ordered cells converged and their exchange computed by JuKKR, through the daemon.

    AIIDA_PATH=... .venv/bin/python benchmarks/make_jij_real.py [--systems all|NAME,...] [--radius 5.0]
                                                              [--max-concurrent 2] [-o benchmarks/data/jij-real.h5]

Why ordered cells (``kkr_jij_wc``) and not KKRimp's J_ij between two impurities of one cluster: KKRimp
computes J_ij only with its new (Chebyshev) solver and three magnetisation directions, which needs a host
Green function written out by the Chebyshev solver too — a second, several-times-slower host SCF for every
host. The ordered cells below give pairs of 3d atoms in several chemical environments for the cost of one
host SCF each (2.5–7 min here for one- and two-atom cells, 30–44 min for the 4-atom L1₂ cells): the 3d
elements as pure metals (bcc Fe at three volumes, fcc Co and Ni), B2 FeCo, and 3d atoms as an ordered
"impurity lattice" in Cu (L1₂ Cu₃Fe, Cu₃Mn, Cu₃Co: X–X pairs at 3.61 Å with only Cu between them; the
published data lack Cu₃Co, stopped for time while still in simple mixing).
Without spin–orbit coupling JuKKR gives the isotropic J only.

Each system: ``kkr_scf_wc`` (NSPIN 2, ``mag_init``) → ``kkr_jij_wc`` between its magnetic sites within
``--radius`` Å. Every node goes into the Group ``mlkkr/jij-real`` with the extra ``mlkkr_jij_system``;
a rerun reuses every finished host and J_ij run of the same system (restartable). Finally the Group's
J_ij are read with :func:`mlkkr.aiida.readers_results.read` (the reader of ``mlkkr data from-group``)
into an ``mlkkr.exchange`` file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GROUP = "mlkkr/jij-real"


def systems() -> dict[str, tuple]:
    """name → (ase.Atoms, magnetic site indices, host settings)."""
    from ase import Atoms
    from ase.build import bulk

    from mlkkr.aiida.kkr import HostSettings

    def l12(x: str, a: float = 3.61) -> Atoms:
        return Atoms([x, "Cu", "Cu", "Cu"], scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5],
                                                              [0, 0.5, 0.5]], cell=[a, a, a], pbc=True)

    metal = HostSettings(mag_init=True)
    # the 4-atom cells: Broyden from the first iteration went erratic (rms 0.17 → 2.3 → 0.05, stuck); simple
    # mixing down to rms 0.01 first, and 10³ k-points in the cubic cell's (4× smaller) zone
    cell4 = HostSettings(mag_init=True, kmesh=10, mixing_threshold=0.01)
    return {
        "bcc-Fe": (bulk("Fe", "bcc", a=2.87), [0], metal),
        "bcc-Fe-a2.80": (bulk("Fe", "bcc", a=2.80), [0], metal),
        "bcc-Fe-a2.94": (bulk("Fe", "bcc", a=2.94), [0], metal),
        # fcc Co with Broyden from the start: stuck at rms 0.11 after 250 iterations; simple mixing first
        "fcc-Co": (bulk("Co", "fcc", a=3.54), [0], HostSettings(mag_init=True, mixing_threshold=0.01)),
        "fcc-Ni": (bulk("Ni", "fcc", a=3.52), [0], metal),
        "B2-FeCo": (bulk("FeCo", "cesiumchloride", a=2.86), [0, 1], HostSettings(mag_init=True, kmesh=16)),
        "L12-Cu3Fe": (l12("Fe"), [0], cell4),
        "L12-Cu3Mn": (l12("Mn"), [0], cell4),
        "L12-Cu3Co": (l12("Co"), [0], cell4),
    }


def _converged(node) -> bool:
    """A finished host SCF that reached its criterion (kkr_scf_wc ends with exit 0 also when it gave up)."""
    if node.process_label != "kkr_scf_wc":
        return True
    out = node.outputs
    return "output_kkr_scf_wc_ParameterResults" in out and bool(
        out.output_kkr_scf_wc_ParameterResults.get_dict().get("convergence_reached"))


def _in_group(group, name: str, task: str):
    from aiida import orm

    qb = orm.QueryBuilder().append(orm.Group, filters={"id": group.pk}, tag="g")
    qb.append(orm.WorkflowNode, with_group="g",
              filters={"extras.mlkkr_jij_system": name, "extras.mlkkr_task": task}, project="*")
    nodes = [n for (n,) in qb.all() if not n.is_terminated or (n.is_finished_ok and _converged(n))]
    return max(nodes, key=lambda n: n.ctime) if nodes else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default="all")
    ap.add_argument("--radius", type=float, default=5.0, help="J_ij radius, Å")
    ap.add_argument("--env-cutoff", type=float, default=3.7,
                    help="atoms within this distance (Å) of i or j form a pair's environment [3.7: the first two "
                         "shells of bcc and fcc, about as many atoms as the engine's graphs]")
    ap.add_argument("--max-concurrent", type=int, default=2, help="host SCFs running at once")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "data" / "jij-real.h5")
    ap.add_argument("--archive", type=Path, default=None, help="also export the Group as an AiiDA archive")
    ap.add_argument("--recompute-environments", type=Path, default=None, metavar="FILE",
                    help="no runs: rewrite FILE (written by this script) with every pair's environment taken from "
                         "its system's whole crystal — files written before mlkkr's reader used the whole crystal "
                         "(readers_jij.jij_crystal) hold only the J_ij sites there (no Cu in the L1₂ cells)")
    args = ap.parse_args()
    if args.recompute_environments:
        return recompute_environments(args.recompute_environments, args.env_cutoff)

    from aiida import load_profile, orm

    load_profile()
    from mlkkr.aiida import kkr_launch
    from mlkkr.aiida.readers_kkrimp import workflow_wall_seconds
    from mlkkr.aiida.readers_results import group_nodes, read
    from mlkkr.data.h5io import write_exchange

    table = systems()
    names = list(table) if args.systems == "all" else [s.strip() for s in args.systems.split(",")]
    unknown = [n for n in names if n not in table]
    if unknown:
        print(f"--systems: unknown {unknown}; allowed: {', '.join(table)}", file=sys.stderr)
        return 2
    group, _ = orm.Group.collection.get_or_create(GROUP)
    t0 = time.time()
    hosts, jijs = {}, {}
    pending = list(names)
    while True:
        for name in list(pending):
            node = _in_group(group, name, "scf")
            running = [h for h in hosts.values() if not h.is_terminated]
            if node is None and len(running) < args.max_concurrent:
                atoms, _, settings = table[name]
                node = kkr_launch.submit_host(atoms, settings, label=f"host {name}")
                node.base.extras.set("mlkkr_jij_system", name)
                group.add_nodes([node])
                print(f"[{time.time() - t0:6.0f} s] {name}: host SCF submitted (pk {node.pk})", flush=True)
            if node is not None:
                hosts[name] = node
                pending.remove(name)
        for name, host in hosts.items():
            if name in jijs or not host.is_terminated:
                continue
            if not (host.is_finished_ok and _converged(host)):
                print(f"[{time.time() - t0:6.0f} s] {name}: host SCF failed or did not converge (exit "
                      f"{host.exit_status}, pk {host.pk}); rerun to try again", flush=True)
                jijs[name] = None
                continue
            node = _in_group(group, name, "jij")
            if node is None:
                sites = table[name][1]
                node = kkr_launch.submit_jij(host, args.radius, sites_i=sites, sites_j=sites,
                                             label=f"Jij {name} r<{args.radius} Å")
                node.base.extras.set("mlkkr_jij_system", name)
                group.add_nodes([node])
                print(f"[{time.time() - t0:6.0f} s] {name}: host converged, J_ij submitted (pk {node.pk})", flush=True)
            jijs[name] = node
        done = [n for n in jijs.values() if n is None or n.is_terminated]
        if not pending and len(done) == len(names):
            break
        time.sleep(5)
    timings = {}
    for name in names:
        host, jij = hosts.get(name), jijs.get(name)
        if host is not None and jij is not None and jij.is_finished_ok:
            timings[name] = {"host_scf_s": round(workflow_wall_seconds(host), 1),
                             "jij_s": round(workflow_wall_seconds(jij), 1),
                             "host_pk": host.pk, "jij_pk": jij.pk, "jij_label": jij.label}
    pairs, report = read(group_nodes(GROUP), "exchange", env_cutoff=args.env_cutoff)
    for line in report.get("skipped", []):
        print("skipped:", line)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_exchange(args.output, pairs, {"source": f"group {GROUP}", "systems": names, "radius_ang": args.radius,
                                        "env_cutoff_ang": args.env_cutoff, "timings": timings})
    print(f"{len(pairs)} pairs from {len(names)} systems → {args.output} ({time.time() - t0:.0f} s)")
    if args.archive:
        from mlkkr.archive.aiida_io import export_group

        export_group(orm.load_group(GROUP), args.archive)
        print(f"archive → {args.archive}")
    return 0


def recompute_environments(path: Path, env_cutoff: float) -> int:
    """Rewrite ``path`` with each pair's environment from its system's whole crystal (J_ij unchanged)."""
    from aiida import load_profile, orm

    load_profile()
    from mlkkr.aiida.readers_jij import crystal_environment
    from mlkkr.data.h5io import read_exchange, read_parameters, write_exchange

    table = systems()
    pairs, params = read_exchange(path), read_parameters(path)
    changed = 0
    for p in pairs:
        name = p.provenance["workflow_label"].split(" r<")[0].removeprefix("Jij ")
        crystal = orm.StructureData(ase=table[name][0])
        species, positions = crystal_environment(crystal, np.stack([p.position_i, p.position_j]), env_cutoff)
        changed += sorted(species) != sorted(p.environment_species)
        p.environment_species, p.environment_positions = species, positions
        p.provenance["environment"] = "the whole crystal (recomputed by make_jij_real.py --recompute-environments)"
    write_exchange(path, pairs, {**params, "environments_recomputed": True})
    print(f"{changed} of {len(pairs)} environments changed → {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
