"""Real JuKKR: the host SCF and the impurity embedding through AiiDA against the same jobs run directly,
and the reference BLAS against OpenBLAS.

    .venv/bin/python benchmarks/bench_jukkr.py [--element Fe] [--radius 2.5] [--poll-interval S] [--tag TAG]

AiiDA path: a throw-away profile (``mlkkr setup``: SQLite + ZeroMQ broker, one daemon worker, the
platform's JuKKR codes), ``kkr_scf_wc`` of fcc Cu with the platform's defaults and then ``kkr_imp_wc``
of the impurity in it (``mlkkr.aiida.kkr_launch``), each timed from submit until the work chain has
ended; CPU time: the daemon worker and its children (the jobs, ``psutil``) and the broker and circus
processes.

Reference run (same process, same inputs): every job of those work chains — voronoi, each KKRhost run,
the host GF write-out, the auxiliary voronoi, each KKRimp run — replayed directly, one after the other,
on its input files copied from its AiiDA work folder (inputcard, potential, shapefun, the KKRimp
kkrflex files …, as aiida-kkr laid them out; its outputs left behind), with ``mlkkr.jukkr.run.run_code``
(the prepend text's stack and thread settings); wall and CPU time of each executable. The jobs are not
children of the daemon (the direct scheduler detaches them), so the AiiDA path's CPU time is the
daemon's processes' plus the jobs' (the direct runs' CPU time of the same executables and inputs).
The direct host run's Fermi energy is compared with AiiDA's. Prints ``t_aiida / t_direct`` for both
(goal ≤ 1.2 at this size).

BLAS: the last KKRhost job and the last KKRimp job run again with the reference BLAS/LAPACK
(``LD_LIBRARY_PATH`` = Debian's ``blas``/``lapack`` folders) and with what the build links to (OpenBLAS
when ``libopenblas0-serial`` is installed); the ratio per job. Nothing is asserted. Results:
benchmarks/results/bench_jukkr[-TAG].json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REFERENCE_BLAS = ("/usr/lib/x86_64-linux-gnu/blas", "/usr/lib/x86_64-linux-gnu/lapack")


def setup_profile(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIIDA_", "MLKKR_PROFILE", "JUPYTERHUB_"))}
    env.update(AIIDA_PATH=str(folder), MLKKR_PROFILE="bench-jukkr", MLKKR_BROKER="zeromq", MLKKR_STORAGE="sqlite",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    subprocess.run([str(Path(sys.executable).with_name("mlkkr")), "setup", "--daemon"], env=env, check=True,
                   capture_output=True, text=True, timeout=300)
    os.environ.update(AIIDA_PATH=str(folder))
    return env


def daemon_processes():
    """The daemon's processes of the loaded profile (worker, circus, broker)."""
    import psutil
    from aiida.engine.daemon.client import get_daemon_client

    main = psutil.Process(get_daemon_client().get_daemon_pid())  # circus: the worker and the broker below it
    return [main, *main.children(recursive=True)]


def tree_cpu(procs) -> float:
    import psutil

    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def run_aiida(submit, *args, **kwargs) -> tuple[object, float, float]:
    """(node, wall s, CPU s of the daemon) of one work chain, submit → terminated. The jobs are not the
    daemon's children (the direct scheduler detaches them): their CPU time is the direct runs'."""
    procs = daemon_processes()
    c0, t0 = tree_cpu(procs), time.perf_counter()
    node = submit(*args, **kwargs)
    while not node.is_terminated:
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    return node, wall, tree_cpu(procs) - c0


def jobs_of(node) -> list:
    labels = ("VoronoiCalculation", "KkrCalculation", "KkrimpCalculation")
    return sorted((n for n in node.called_descendants if n.process_label in labels), key=lambda n: n.ctime)


#: the input files of the JuKKR codes as aiida-kkr lays them out (everything else in a work folder is output:
#: out_*, output.*, Broyden histories, …; copying those would start a run from its own end)
INPUTS = ("inputcard", "potential", "shapefun", "scoef", "config.cfg", "nonco_angle.dat", "ElementDataBase")


def replay(job, folder: Path, env: dict[str, str] | None = None) -> dict:
    """Run ``job``'s executable on its input files, copied from its AiiDA work folder; wall/CPU seconds."""
    from mlkkr.jukkr.run import run_code

    src = Path(job.outputs.remote_folder.get_remote_path())
    folder.mkdir(parents=True)
    for path in src.iterdir():
        if path.name in INPUTS or path.name.startswith("kkrflex_"):
            if path.is_symlink():
                os.symlink(os.readlink(path), folder / path.name)
            elif path.is_file():
                shutil.copy2(path, folder / path.name)
    exe = Path(str(job.inputs.code.filepath_executable))
    out = {"voronoi.exe": "out_voronoi", "kkr.x": "out_kkr", "kkrflex.exe": "out_kkrimp"}.get(exe.name, "stdout")
    result = run_code(exe, folder, env=env, stdout_name=out)
    if result.returncode != 0:
        raise RuntimeError(f"{exe.name} failed directly in {folder} (exit {result.returncode})")
    return {"job": f"{job.process_label}<{job.pk}> {job.label}", "executable": exe.name,
            "wall_s": round(result.wall_seconds, 3), "cpu_s": round(result.cpu_seconds, 3)}


def direct(node, workdir: Path) -> tuple[list[dict], float, float]:
    runs = [replay(job, workdir / f"{k:02d}-{job.pk}") for k, job in enumerate(jobs_of(node))]
    return runs, sum(r["wall_s"] for r in runs), sum(r["cpu_s"] for r in runs)


def blas_pair(job, workdir: Path, repeat: int) -> dict:
    """Wall/CPU of one job with the reference BLAS and with the linked (OpenBLAS) one, best of ``repeat``."""
    ref_env = {"LD_LIBRARY_PATH": os.pathsep.join(REFERENCE_BLAS)}
    out = {"job": f"{job.process_label}<{job.pk}> {job.label}"}
    for name, env in (("reference", ref_env), ("linked", None)):
        best = None
        for k in range(repeat):
            r = replay(job, workdir / f"blas-{name}-{job.pk}-{k}", env)
            best = r if best is None or r["wall_s"] < best["wall_s"] else best
        out[name] = {"wall_s": best["wall_s"], "cpu_s": best["cpu_s"]}
    out["reference_over_linked_wall"] = round(out["reference"]["wall_s"] / out["linked"]["wall_s"], 2)
    out["reference_over_linked_cpu"] = round(out["reference"]["cpu_s"] / out["linked"]["cpu_s"], 2)
    return out


def fermi_energy(folder: Path) -> float | None:
    from mlkkr.jukkr.check import parse_output

    _, _, out = parse_output(folder)
    return out.get("fermi_energy")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--element", default="Fe")
    ap.add_argument("--radius", type=float, default=2.5)
    ap.add_argument("--blas-repeat", type=int, default=2)
    ap.add_argument("--tag", default="")
    ap.add_argument("--poll-interval", type=float, default=None,
                    help="the computer's minimum job poll interval in s (default: what mlkkr setup makes)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-jukkr-") as tmp:
        tmp = Path(tmp)
        env = setup_profile(tmp / "aiida")
        from aiida import load_profile

        load_profile("bench-jukkr", allow_switch=True)
        from aiida import orm

        from mlkkr.aiida import kkr
        from mlkkr.aiida.kkr_launch import submit_host, submit_impurity
        from mlkkr.aiida.kkr_results import host_summary, impurity_summary
        from mlkkr.jukkr.build import find_installation

        computer = orm.load_computer("localhost")
        if args.poll_interval is not None:  # the daemon's job manager reads it at every poll
            computer.set_minimum_job_poll_interval(args.poll_interval)
        poll_interval = computer.get_minimum_job_poll_interval()
        try:
            print(f"JuKKR: {find_installation().manifest['blas']} BLAS linked; load average {os.getloadavg()}")
            host, host_wall, host_cpu = run_aiida(submit_host, "fcc-Cu", kkr.HostSettings())
            assert host.is_finished_ok, host.exit_message
            imp, imp_wall, imp_cpu = run_aiida(submit_impurity, host, kkr.Impurity(args.element, 0, args.radius))
            assert imp.is_finished_ok, imp.exit_message
            hs, isum = host_summary(host), impurity_summary(imp)
            host_runs, host_dwall, host_dcpu = direct(host, tmp / "direct-host")
            imp_runs, imp_dwall, imp_dcpu = direct(imp, tmp / "direct-imp")
            last_kkr = [j for j in jobs_of(host) if j.process_label == "KkrCalculation"][-1]
            ef_direct = fermi_energy(tmp / "direct-host" / sorted(p.name for p in (tmp / "direct-host").iterdir())[-1])
            blas = [blas_pair(last_kkr, tmp, args.blas_repeat),
                    blas_pair([j for j in jobs_of(imp) if j.process_label == "KkrimpCalculation"][-1], tmp,
                              args.blas_repeat)]
        finally:
            subprocess.run([str(Path(sys.executable).with_name("verdi")), "-p", "bench-jukkr", "daemon", "stop"],
                           env=env, capture_output=True, timeout=120)

    result = {
        "benchmark": "bench_jukkr", "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                "loadavg_end": os.getloadavg()},
        "minimum_job_poll_interval_s": poll_interval,
        "host": {"system": "fcc Cu, a = 3.61 Å, lmax 2, NSPIN 2, 20³ k-mesh, rms 1e-6",
                 "aiida_wall_s": round(host_wall, 2), "daemon_cpu_s": round(host_cpu, 2),
                 "aiida_cpu_s": round(host_cpu + host_dcpu, 2),
                 "direct_wall_s": round(host_dwall, 2), "direct_cpu_s": round(host_dcpu, 2),
                 "ratio_wall": round(host_wall / host_dwall, 3),
                 "ratio_cpu": round((host_cpu + host_dcpu) / host_dcpu, 3),
                 "jobs": host_runs, "iterations": len(hs["rms"]), "fermi_energy_aiida_ry": hs["fermi_energy_ry"],
                 "fermi_energy_direct_ry": ef_direct},
        "impurity": {"system": f"{args.element} in that host, cluster radius {args.radius} Å",
                     "aiida_wall_s": round(imp_wall, 2), "daemon_cpu_s": round(imp_cpu, 2),
                     "aiida_cpu_s": round(imp_cpu + imp_dcpu, 2),
                     "direct_wall_s": round(imp_dwall, 2), "direct_cpu_s": round(imp_dcpu, 2),
                     "ratio_wall": round(imp_wall / imp_dwall, 3),
                     "ratio_cpu": round((imp_cpu + imp_dcpu) / imp_dcpu, 3),
                     "jobs": imp_runs, "iterations": len(isum["rms"]), "moment_muB": isum["total_spin_moment"]},
        "blas": blas, "goal": "t_aiida / t_direct <= 1.2",
        "cpu_accounting": "AiiDA CPU = the daemon's processes (worker, circus, broker and what they reaped) + "
                          "the jobs' CPU, taken from the direct runs of the same executables on the same inputs",
        "per_job_overhead_s": {"host": round((host_wall - host_dwall) / len(host_runs), 2),
                               "impurity": round((imp_wall - imp_dwall) / len(imp_runs), 2)},
    }
    print(f"\n{'':24}{'AiiDA wall':>12}{'direct wall':>13}{'ratio':>8}{'AiiDA CPU':>12}{'direct CPU':>12}{'ratio':>8}"
          "   (AiiDA CPU: the daemon's + the jobs')")
    for key in ("host", "impurity"):
        r = result[key]
        name = f"{key} ({len(r['jobs'])} jobs)"
        print(f"{name:<24}{r['aiida_wall_s']:>11.1f}s{r['direct_wall_s']:>12.1f}s{r['ratio_wall']:>8.2f}"
              f"{r['aiida_cpu_s']:>11.1f}s{r['direct_cpu_s']:>11.1f}s{r['ratio_cpu']:>8.2f}")
    print(f"E_F: AiiDA {hs['fermi_energy_ry']} Ry, direct {ef_direct} Ry")
    for b in blas:
        print(f"BLAS, {b['job']}: reference {b['reference']['wall_s']:.2f} s, linked {b['linked']['wall_s']:.2f} s "
              f"-> reference/linked {b['reference_over_linked_wall']:.2f} (CPU {b['reference_over_linked_cpu']:.2f})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench_jukkr{'-' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
