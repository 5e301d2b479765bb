"""ML-ES benchmark: JL ridge model of the engine's impurity potentials ΔV.

    .venv/bin/python benchmarks/bench_potential.py [--data D.h5] [--n 1900] [--quick]

Measures, on engine embeddings (single-band metal host, 1-4 defects of 12 species, screened
self-consistently; made with ``mlkkr data potential`` if ``--data`` does not exist):

1. the model of the figures, trained with the documented command
   ``mlkkr train potential --data D.h5 -o MODEL --cutoff 8.61 --n-max 8 --n-max3 2 --l-max 2 --body-order 3``
   (20 % of the embeddings held out): held-out relative RMSE, against the reference run
   "predict the training mean";
2. convergence: held-out RMSE against the number of JL features (2-body n_max = 1 … 12; 3-body),
   saved as a plotly figure (HTML + PNG) in docs/figures/;
3. JL against SOAP (dscribe) on the same points with the same ridge (CV alpha, same split):
   accuracy and descriptor time (reference run: SOAP);
4. descriptor throughput (grid points/s; reference run: the explicit-loop definition) and the fit
   time for 10^5 points (reference run: one scikit-learn Ridge fit at the chosen alpha).

Every figure is printed as a ratio against a reference run made in the same process; nothing is
asserted. Results go to benchmarks/results/bench_potential.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
FIGURES = ROOT / "docs" / "figures"
CUTOFF = 8.61  # Å: three lattice constants of the metal host (2.87 Å)
MAIN = {"n_max": 8, "n_max3": 2, "l_max": 2, "body_order": 3}
#: dscribe needs chemical symbols: the vacancy is given a stand-in element that is not a dopant
SOAP_SYMBOL = {"Vac": "He"}


def log(msg: str) -> None:
    print(msg, flush=True)


def ensure_dataset(path: Path, n: int, seed: int, host: str) -> None:
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).parent / "mlkkr"), "data", "potential", "--host", host, "--n", str(n), "--seed",
           str(seed), "-o", str(path), "--no-progress", "--json"]
    log("making the dataset: " + " ".join(cmd[1:]))
    subprocess.run(cmd, check=True)


def ridge_cv(X: np.ndarray, y: np.ndarray, groups: np.ndarray, train: np.ndarray, blocks: np.ndarray,
             n_folds: int = 4) -> tuple[np.ndarray, float, dict[str, float]]:
    """The ridge of mlkkr.models.potential on any feature matrix: block scaling, group-CV alpha."""
    from sklearn.linear_model import Ridge

    from mlkkr.models.potential import DEFAULT_ALPHAS, _standardiser, select_alpha

    t0 = time.perf_counter()
    mean, scale, mask = _standardiser(X[train], blocks)
    Z = (X[:, mask] - mean[mask]) / scale[mask]
    alpha, _ = select_alpha(Z[train], y[train], groups[train], DEFAULT_ALPHAS, n_folds)
    t1 = time.perf_counter()
    ridge = Ridge(alpha=alpha).fit(Z[train], y[train])
    t2 = time.perf_counter()
    return ridge.predict(Z), alpha, {"cv_s": t1 - t0, "final_fit_s": t2 - t1}


def held_out(y: np.ndarray, pred: np.ndarray, test: np.ndarray) -> dict[str, float]:
    from mlkkr.train.potential_metrics import errors

    return errors(y[test], pred[test])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path.home() / ".cache" / "mlkkr" / "bench" / "metal1900-seed7.h5")
    ap.add_argument("--n", type=int, default=1900, help="embeddings to make if --data does not exist")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--host", default="metal")
    ap.add_argument("--sweep", type=int, default=1000, help="embeddings used by the convergence sweep and SOAP")
    ap.add_argument("--quick", action="store_true", help="200 embeddings everywhere (a smoke run)")
    args = ap.parse_args(argv)
    if os.environ.get("BROWSER_PATH") is None:  # kaleido's Chrome: Debian's chromium
        chromium = os.environ.get("MLKKR_CHROMIUM") or shutil.which("chromium")
        if chromium:
            os.environ["BROWSER_PATH"] = chromium

    from click.testing import CliRunner

    from mlkkr.cli import main as cli
    from mlkkr.data.h5io import read_embeddings
    from mlkkr.descriptors import JLDescriptor, make_params
    from mlkkr.descriptors.jl import brute_force
    from mlkkr.models.potential import PotentialModel
    from mlkkr.train.potential import featurize, species_of, split

    ensure_dataset(args.data, args.n, args.seed, args.host)
    records = read_embeddings(args.data)
    if args.quick:
        records = records[:200]
        args.sweep = 200
    n_points = sum(len(r.grid) for r in records)
    log(f"dataset {args.data.name}: {len(records)} embeddings, {n_points} grid points "
        f"(metal host, {len({s for r in records for s in r.species})} species)")
    out: dict = {"dataset": {"file": args.data.name, "n_embeddings": len(records), "n_points": n_points,
                             "make": f"mlkkr data potential --host {args.host} --n {args.n} --seed {args.seed} "
                                     f"-o {args.data.name}"}}

    # -- 1. the documented training command -------------------------------------------------------
    tmp = Path(tempfile.mkdtemp(prefix="mlkkr-bench-"))
    model_dir = tmp / "jl-potential"
    cmd = ["train", "potential", "--data", str(args.data), "-o", str(model_dir), "--cutoff", str(CUTOFF),
           "--n-max", str(MAIN["n_max"]), "--n-max3", str(MAIN["n_max3"]), "--l-max", str(MAIN["l_max"]),
           "--body-order", str(MAIN["body_order"]), "--no-progress", "--json"]
    if args.quick:
        sub = tmp / "quick.h5"
        from mlkkr.data.h5io import write_embeddings

        write_embeddings(sub, records, {"quick": True})
        cmd[3] = str(sub)
    log("mlkkr " + " ".join(cmd))
    t0 = time.perf_counter()
    res = CliRunner().invoke(cli, cmd)
    if res.exit_code != 0:
        raise SystemExit(res.output)
    train_s = time.perf_counter() - t0
    summary = json.loads(res.output)
    test = summary["test"]
    model, meta = PotentialModel.load(model_dir)
    split_ids = np.array(meta["split"]["test_embeddings"])
    ytr = np.concatenate([records[k].delta_v for k in range(len(records)) if k not in set(split_ids)])
    yte = np.concatenate([records[k].delta_v for k in split_ids])
    mean_rmse = float(np.sqrt(np.mean((yte - ytr.mean()) ** 2)))
    shown = {str(args.data): args.data.name, cmd[3]: args.data.name, str(model_dir): "MODEL"}
    out["main"] = {"command": "mlkkr " + " ".join(shown.get(c, c) for c in cmd[:-2]),
                   "n_features": summary["n_features"], "alpha": summary["alpha"], "train_seconds": train_s,
                   "test": test, "reference_mean_rmse_eV": mean_rmse}
    log(f"[1] held-out ({meta['split']['n_test_embeddings']} embeddings, {test['n_points']} points): "
        f"relative RMSE {test['relative_rmse']:.4%} (goal <= 5%), RMSE {1e3 * test['rmse_eV']:.3f} meV, "
        f"MAE {1e3 * test['mae_eV']:.3f} meV; screening part ΔV − V_bare: relative RMSE "
        f"{test['screening']['relative_rmse']:.2%}; host sites only: {test['off_defect']['relative_rmse']:.2%}")
    log(f"    ratio RMSE / RMSE of the reference run 'predict the training mean' = "
        f"{test['rmse_eV'] / mean_rmse:.5f}  (trained in {train_s:.0f} s)")

    # -- 2. convergence sweep ----------------------------------------------------------------------
    recs = records[:args.sweep]
    species = species_of(recs)
    tr_ids, te_ids = split(len(recs), 0.2, 0)
    big2 = JLDescriptor(make_params(species, cutoff=CUTOFF, n_max=12, body_order=2))
    big3 = JLDescriptor(make_params(species, cutoff=CUTOFF, n_max=1, n_max3=2, l_max=2, body_order=3))
    t0 = time.perf_counter()
    d2 = featurize(recs, big2)
    t2b = time.perf_counter() - t0
    t0 = time.perf_counter()
    d3 = featurize(recs, big3)
    t3b = time.perf_counter() - t0
    names2, names3 = big2.feature_names(), big3.feature_names()
    col2 = {n: i for i, n in enumerate(names2)}
    col3 = {n: i for i, n in enumerate(names3)}
    y, groups = d2.y, d2.groups
    train, test_rows = np.isin(groups, tr_ids), np.isin(groups, te_ids)

    def columns(desc: JLDescriptor) -> tuple[np.ndarray, np.ndarray]:
        names = desc.feature_names()
        blocks = desc.body_of_feature()
        cols = [d2.X[:, col2[n]] if n in col2 else d3.X[:, col3[n]] for n in names]
        return np.stack(cols, axis=1), blocks

    sweep = []
    configs = [dict(body_order=1, n_max=1)] + [dict(body_order=2, n_max=n) for n in (1, 2, 3, 4, 6, 8, 10, 12)]
    configs += [dict(body_order=3, n_max=8, n_max3=n3, l_max=l) for n3, l in ((1, 0), (1, 2), (2, 0), (2, 1), (2, 2))]
    for kw in configs:
        desc = JLDescriptor(make_params(species, cutoff=CUTOFF, **kw))
        X, blocks = columns(desc)
        pred, alpha, _ = ridge_cv(X, y, groups, train, blocks)
        e = held_out(y, pred, test_rows)
        sweep.append({**kw, "n_features": desc.n_features, "alpha": alpha, "rmse_eV": e["rmse_eV"],
                      "relative_rmse": e["relative_rmse"]})
        log(f"[2] {kw}: {desc.n_features} features, held-out RMSE {1e3 * e['rmse_eV']:.3f} meV "
            f"(relative {e['relative_rmse']:.4%})")
    out["convergence"] = {"n_embeddings": len(recs), "points": int(len(y)), "runs": sweep}

    # -- 3. JL against SOAP --------------------------------------------------------------------------
    out["soap"] = soap_comparison(recs, d2, d3, columns, train, test_rows, y, groups, species, t2b, t3b)

    # -- figure --------------------------------------------------------------------------------------
    out["figures"] = convergence_figure(sweep, out["soap"])

    # -- 4. throughput and fit time for 10^5 points -------------------------------------------------
    out["throughput"] = throughput(records, model, brute_force)
    shutil.rmtree(tmp, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_potential.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    log(f"wrote {RESULTS / 'bench_potential.json'}")
    return out


def soap_comparison(recs, d2, d3, columns, train, test_rows, y, groups, species, t2b, t3b) -> dict:
    from mlkkr.descriptors import JLDescriptor, make_params

    desc = JLDescriptor(make_params(species, cutoff=CUTOFF, **MAIN))
    X, blocks = columns(desc)
    pred, alpha, _ = ridge_cv(X, y, groups, train, blocks)
    jl = held_out(y, pred, test_rows)
    # time of the JL descriptor of this configuration alone, on the same points
    t0 = time.perf_counter()
    from mlkkr.train.potential import featurize

    featurize(recs, desc)
    jl_time = time.perf_counter() - t0
    res: dict = {"jl": {"params": MAIN, "n_features": desc.n_features, "rmse_eV": jl["rmse_eV"],
                        "relative_rmse": jl["relative_rmse"], "descriptor_s": jl_time}}
    try:
        from ase import Atoms
        from dscribe.descriptors import SOAP
    except ImportError as exc:
        log(f"[3] SOAP comparison skipped: dscribe is not installed ({exc}); pip install dscribe")
        res["soap"] = None
        res["note"] = f"dscribe not installed: {exc}"
        return res
    runs = []
    for n_max, l_max in ((4, 3), (6, 4)):
        soap = SOAP(species=[SOAP_SYMBOL.get(s, s) for s in species], r_cut=CUTOFF, n_max=n_max, l_max=l_max,
                    sigma=0.5, periodic=False, compression={"mode": "mu1nu1"})
        t0 = time.perf_counter()
        Xs = np.vstack([soap.create(Atoms([SOAP_SYMBOL.get(s, s) for s in r.species], positions=r.positions),
                                    centers=r.grid) for r in recs])
        soap_time = time.perf_counter() - t0
        pred, alpha, _ = ridge_cv(Xs, y, groups, train, np.zeros(Xs.shape[1], int))
        e = held_out(y, pred, test_rows)
        runs.append({"n_max": n_max, "l_max": l_max, "sigma": 0.5, "compression": "mu1nu1",
                     "n_features": Xs.shape[1], "rmse_eV": e["rmse_eV"], "relative_rmse": e["relative_rmse"],
                     "descriptor_s": soap_time})
        log(f"[3] SOAP n_max {n_max} l_max {l_max} ({Xs.shape[1]} features): held-out RMSE "
            f"{1e3 * e['rmse_eV']:.3f} meV in {soap_time:.1f} s | JL {MAIN} ({desc.n_features} features): "
            f"{1e3 * jl['rmse_eV']:.3f} meV in {jl_time:.1f} s")
        log(f"    ratios JL / SOAP (reference run): RMSE {jl['rmse_eV'] / e['rmse_eV']:.3f}, descriptor time "
            f"{jl_time / soap_time:.3f}")
    res["soap"] = runs
    return res


def convergence_figure(sweep: list[dict], soap: dict) -> dict:
    import plotly.graph_objects as go

    fig = go.Figure()
    for body, name, sym in ((1, "1-body (on-site species)", "diamond"), (2, "2-body, n_max = 1 … 12", "circle"),
                            (3, "3-body (n_max = 8; n_max3, l_max)", "square")):
        pts = [s for s in sweep if s["body_order"] == body]
        text = [f"n_max {s['n_max']}" + (f", n_max3 {s['n_max3']}, l_max {s['l_max']}" if body == 3 else "")
                for s in pts]
        fig.add_trace(go.Scatter(x=[s["n_features"] for s in pts], y=[1e3 * s["rmse_eV"] for s in pts],
                                 mode="lines+markers", name=name, marker_symbol=sym, text=text,
                                 hovertemplate="%{text}<br>%{x} features<br>RMSE %{y:.3f} meV"))
    if soap.get("soap"):
        runs = soap["soap"]
        fig.add_trace(go.Scatter(x=[r["n_features"] for r in runs], y=[1e3 * r["rmse_eV"] for r in runs],
                                 mode="markers", name="SOAP (dscribe), same ridge", marker_symbol="x",
                                 marker_size=11))
    fig.update_layout(title="ML-ES: held-out error of ΔV against JL expansion size (engine, metal host)",
                      xaxis_title="number of features", yaxis_title="held-out RMSE of ΔV (meV)",
                      xaxis_type="log", yaxis_type="log", template="plotly_white", width=900, height=560)
    FIGURES.mkdir(parents=True, exist_ok=True)
    html = FIGURES / "ml-es-convergence.html"
    png = FIGURES / "ml-es-convergence.png"
    fig.write_html(html, include_plotlyjs="cdn")
    files = {"html": str(html.relative_to(ROOT))}
    try:
        fig.write_image(png, scale=2)
        files["png"] = str(png.relative_to(ROOT))
    except Exception as exc:  # noqa: BLE001 - report, do not hide
        log(f"PNG not written (kaleido needs Chrome: set BROWSER_PATH): {exc}")
        files["png_error"] = str(exc)
    log(f"[fig] wrote {', '.join(v for k, v in files.items() if k != 'png_error')}")
    return files


def throughput(records, model, brute_force) -> dict:
    from sklearn.linear_model import Ridge

    from mlkkr.models.potential import PotentialModel, _standardiser
    from mlkkr.train.potential import featurize

    desc = model.descriptor
    t0 = time.perf_counter()
    data = featurize(records, desc)
    t_desc = time.perf_counter() - t0
    n = len(data.y)
    rate = n / t_desc
    # reference: the explicit-loop definition on the first 100 points
    sample = [(r, k) for r in records[:20] for k in range(len(r.grid))][:100]
    t0 = time.perf_counter()
    for r, k in sample:
        brute_force(r.grid[k:k + 1], r.positions, r.species, desc.params)
    t_loop = (time.perf_counter() - t0) / len(sample)
    log(f"[4] JL descriptor ({desc.n_features} features): {n} points in {t_desc:.1f} s = {rate:,.0f} points/s; "
        f"ratio to the explicit-loop reference run ({1 / t_loop:,.1f} points/s): {rate * t_loop:,.0f}x")
    m = min(100_000, n)
    X, y, g = data.X[:m], data.y[:m], data.groups[:m]
    mean, scale, mask = _standardiser(X, desc.body_of_feature())
    Z = (X[:, mask] - mean[mask]) / scale[mask]

    def reference_fit(alpha: float) -> float:
        t0 = time.perf_counter()
        Ridge(alpha=alpha).fit(Z, y)
        return time.perf_counter() - t0

    # the machine is shared: the reference run is timed before and after the model's fit (minimum)
    t_ref = reference_fit(model.alpha_)
    fresh = PotentialModel(desc.params, n_folds=5)
    t0 = time.perf_counter()
    fresh.fit(X, y, g)
    t_fit = time.perf_counter() - t0
    t_ref = min(t_ref, reference_fit(fresh.alpha_))
    log(f"[4] fit on {m} points x {desc.n_features} features (5-fold group CV over {len(fresh.alphas)} alphas + final "
        f"fit): {t_fit:.1f} s; ratio to one scikit-learn Ridge fit at the chosen alpha ({t_ref:.1f} s): "
        f"{t_fit / t_ref:.2f}")
    return {"descriptor_points": n, "descriptor_s": t_desc, "points_per_s": rate, "loop_points_per_s": 1 / t_loop,
            "fit_points": m, "n_features": desc.n_features, "fit_s": t_fit, "single_ridge_fit_s": t_ref,
            "alpha": fresh.alpha_, "cpu_count": os.cpu_count()}


if __name__ == "__main__":
    main()
