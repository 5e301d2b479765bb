"""ML-Exc on real JuKKR J_ij: the engine-trained e3nn model as it is, fine-tuned, from scratch — held-out systems.

    .venv/bin/python benchmarks/bench_ml_exc_real.py --base MODEL [--data benchmarks/data/jij-real.h5]

``--data``: an ``mlkkr.exchange`` file of real ``kkr_jij_wc`` results, one system per J_ij workflow, as written
by ``benchmarks/make_jij_real.py`` (the file of the published figures is in benchmarks/data/). ``--base``:
a model folder trained on the tight-binding engine (``mlkkr train exchange`` on ``mlkkr data exchange``).

Measures, in one process, leave-one-system-out (every system held out once; its pairs are never seen):

1. **engine model as it is** (zero-shot): species it does not know (Cu) read as its host label;
2. **fine-tuned**: the engine model trained further on the other systems (``fit(init_from=...)``);
3. **from scratch**: the same architecture, random start, same data and settings;
4. **reference**: kernel ridge on distance and species (the trainer's baseline, same training split).

J: MAE and RMSE (meV) on the held-out pairs, per system and pooled. D: JuKKR without spin–orbit coupling
gives no D, but where the pair's symmetry forbids D (:mod:`mlkkr.data.symmetry`: inversion centre or
mirror planes) the truth is exactly zero; the D a model predicts there is its error. Speed: one
prediction (graph + network, warm) against the wall time of the JuKKR runs it replaces (host SCF +
kkr_jij_wc, from the data's parameters). Nothing is asserted; results go to
benchmarks/results/bench_ml_exc_real.json and a parity figure to docs/figures/ml-exc-real.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from _figures import save_figure

from mlkkr.greens.exchange import decompose

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def system_of(pair) -> str:
    label = pair.provenance.get("workflow_label") or pair.provenance.get("structure_uuid", "?")
    return label.split(" r<")[0].removeprefix("Jij ")


def j_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    pj = decompose(pred).J
    tj = decompose(true).J
    e = pj - tj
    return {"n": int(len(e)), "mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e**2))),
            "max": float(np.max(np.abs(e))), "true_std": float(tj.std()), "true_mean_abs": float(np.mean(np.abs(tj)))}


def d_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float] | None:
    """D vector errors (meV) over the pairs given (components pooled), and the size of the true D."""
    if not len(true):
        return None
    e = decompose(pred).D - decompose(true).D
    td = np.linalg.norm(decompose(true).D, axis=-1)
    return {"n": int(len(true)), "mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(np.mean(e**2))),
            "max_vector_error": float(np.max(np.linalg.norm(e, axis=-1))), "true_mean_norm": float(td.mean()),
            "true_max_norm": float(td.max())}


def tensor_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """J, D and S errors (meV, MAE over the components) of full tensors, and the size of the truth."""
    p, t = decompose(pred), decompose(true)
    return {"n": int(len(true)), "J_mae": float(np.mean(np.abs(p.J - t.J))),
            "D_mae": float(np.mean(np.abs(p.D - t.D))), "D_true_max": float(np.abs(t.D).max()),
            "S_mae": float(np.mean(np.abs(p.S - t.S))), "S_true_mean_abs": float(np.mean(np.abs(t.S)))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "benchmarks" / "data" / "jij-real.h5")
    ap.add_argument("--base", type=Path, required=True, help="engine-trained model folder")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--patience", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds (split and weights)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="")
    ap.add_argument("--soc-data", type=Path, default=None,
                    help="an mlkkr.exchange file of J_ij *with* spin–orbit coupling (benchmarks/make_jij_soc.py): "
                         "each of its systems is predicted by the models of the fold that held the same crystal "
                         "out, and J, D and S are compared")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from mlkkr.data.h5io import file_sha256, read_exchange, read_parameters
    from mlkkr.data.symmetry import allowed_dmi
    from mlkkr.errors import InputError
    from mlkkr.models.exchange import ExchangeModelConfig
    from mlkkr.train.exchange import TrainConfig, extend_species, fit, load_model, species_of

    pairs = read_exchange(args.data)
    params = read_parameters(args.data)
    soc_pairs = read_exchange(args.soc_data) if args.soc_data else []
    soc_by_sys: dict[str, list[int]] = defaultdict(list)
    for k, p in enumerate(soc_pairs):
        soc_by_sys[system_of(p).removesuffix(" soc")].append(k)
    soc_true = np.array([p.tensor for p in soc_pairs])
    soc_rows = []
    by_sys: dict[str, list[int]] = defaultdict(list)
    for k, p in enumerate(pairs):
        by_sys[system_of(p)].append(k)
    systems = sorted(by_sys)
    true = np.array([p.tensor for p in pairs])
    forbidden = np.array([len(allowed_dmi(p)) == 0 for p in pairs])
    # pairs whose D was computed (JuKKR with spin–orbit coupling: tensor_parts J, D, S)
    has_d = np.array(["D" in p.provenance.get("tensor_parts", ["J", "D", "S"]) for p in pairs])
    print(f"{len(pairs)} pairs in {len(systems)} systems: "
          + ", ".join(f"{s} ({len(by_sys[s])})" for s in systems))
    print(f"D forbidden by symmetry for {forbidden.sum()} of {len(pairs)} pairs")

    base = load_model(args.base)
    zero = extend_species(base, species_of(pairs))
    t0 = time.perf_counter()
    pred = {"engine as it is": zero.predict(pairs)}
    zero_s = time.perf_counter() - t0
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in ("fine-tuned", "from scratch", "kernel ridge"):
        pred[name] = np.zeros((len(seeds), *true.shape))
    folds = []
    base_cfg = base.cfg
    with tempfile.TemporaryDirectory() as tmp:
        for si, seed in enumerate(seeds):
            for held in systems:
                test = by_sys[held]
                train = [pairs[k] for s in systems if s != held for k in by_sys[s]]
                cfg = TrainConfig(epochs=args.epochs, patience=args.patience, lr=args.lr, seed=seed, batch_size=16,
                                  split=[0.85, 0.15, 0.0], loss_weights={"J": 1.0, "D": 1.0, "S": 1.0})
                row = {"held_out": held, "seed": seed, "n_test": len(test), "n_train": len(train)}
                dsel = np.array(test)[has_d[test]]  # held-out pairs whose D was computed
                for name, kw in (("fine-tuned", {"init_from": args.base}), ("from scratch", {})):
                    mcfg = ExchangeModelConfig(species=[], r_env=base_cfg.r_env, r_host=base_cfg.r_host,
                                               mul=base_cfg.mul, latent=base_cfg.latent, layers=base_cfg.layers,
                                               chiral=base_cfg.chiral)
                    t = time.perf_counter()
                    folder = Path(tmp) / f"{name.replace(' ', '-')}-{held}-{seed}"
                    res = fit(train, folder, mcfg, cfg, progress=False, log=lambda m: None, **kw)
                    m = load_model(folder)
                    sel = [pairs[k] for k in test]
                    unseen = sorted(set(species_of(sel)) - set(m.cfg.species))
                    row[name] = {"epochs": res.meta["epochs_run"], "best_epoch": res.meta["best_epoch"],
                                 "seconds": time.perf_counter() - t, "unseen_species": unseen}
                    # a model started from scratch has never seen a species only the held-out system has:
                    # it cannot predict there (no number is made up for it)
                    pred[name][si, test] = m.predict(sel) if not unseen else np.nan
                    if held in soc_by_sys and not unseen:
                        idx = soc_by_sys[held]
                        soc_rows.append({"system": held, "seed": seed, "model": name,
                                         **tensor_errors(m.predict([soc_pairs[k] for k in idx]), soc_true[idx])})
                    if name == "from scratch":
                        try:
                            pred["kernel ridge"][si, test] = m.baseline.predict(sel)
                        except InputError:
                            pred["kernel ridge"][si, test] = np.nan
                for name in ("fine-tuned", "from scratch", "kernel ridge"):
                    p = pred[name][si, test]
                    row.setdefault(name, {})["J"] = j_errors(p, true[test]) if np.isfinite(p).all() else None
                    row[name]["D"] = d_errors(pred[name][si, dsel], true[dsel]) if np.isfinite(p).all() else None
                if held in soc_by_sys and si == 0:
                    idx = soc_by_sys[held]
                    soc_rows.append({"system": held, "seed": None, "model": "engine as it is",
                                     **tensor_errors(zero.predict([soc_pairs[k] for k in idx]), soc_true[idx])})
                row["engine as it is"] = {"J": j_errors(pred["engine as it is"][test], true[test]),
                                          "D": d_errors(pred["engine as it is"][dsel], true[dsel])}
                folds.append(row)
                print(f"seed {seed} held out {held:14s} J MAE meV: "
                      + "  ".join(f"{n} " + (f"{row[n]['J']['mae']:.3f}" if row[n]["J"] else "n/a (unseen species)")
                                  for n in ("engine as it is", "fine-tuned", "from scratch", "kernel ridge")),
                      flush=True)

    stacks = {name: (p if p.ndim == 4 else p[None]) for name, p in pred.items()}
    common = np.all([np.isfinite(st).all(axis=(0, 2, 3)) for st in stacks.values()], axis=0)
    summary = {}
    for name, stack in stacks.items():
        ok = np.isfinite(stack).all(axis=(0, 2, 3))
        js = [j_errors(st[ok], true[ok]) for st in stack]
        jc = [j_errors(st[common], true[common]) for st in stack]
        d = np.concatenate([np.abs(decompose(st[ok & forbidden]).D).ravel() for st in stack])
        per_sys = {s: (float(np.mean([j_errors(st[by_sys[s]], true[by_sys[s]])["mae"] for st in stack]))
                       if ok[by_sys[s]].all() else None) for s in systems}
        dd = [d_errors(st[ok & has_d], true[ok & has_d]) for st in stack]
        summary[name] = {"pairs_predicted": int(ok.sum()), "J_mae": float(np.mean([j["mae"] for j in js])),
                         "D_pairs": int((ok & has_d).sum()),
                         "D_mae": float(np.mean([x["mae"] for x in dd])) if dd[0] else None,
                         "D_rmse": float(np.mean([x["rmse"] for x in dd])) if dd[0] else None,
                         "D_true_mean_norm": dd[0]["true_mean_norm"] if dd[0] else None,
                         "J_rmse": float(np.mean([j["rmse"] for j in js])),
                         "J_mae_common": float(np.mean([j["mae"] for j in jc])),
                         "J_rmse_common": float(np.mean([j["rmse"] for j in jc])),
                         "J_mae_per_system": per_sys,
                         "D_mae_where_forbidden": float(d.mean()) if d.size else None,
                         "D_max_where_forbidden": float(d.max()) if d.size else None}
    tj = decompose(true).J
    print(f"\npooled over held-out systems (J std {tj.std():.3f} meV, mean |J| {np.mean(np.abs(tj)):.3f} meV):")
    print(f"  ('common': the {int(common.sum())} pairs every model can predict)")
    for name, s in summary.items():
        print(f"  {name:16s} {s['pairs_predicted']:4d} pairs: J MAE {s['J_mae']:.3f}  RMSE {s['J_rmse']:.3f} meV; "
              f"common: MAE {s['J_mae_common']:.3f}  RMSE {s['J_rmse_common']:.3f}   "
              f"|D| where symmetry forbids it: mean {s['D_mae_where_forbidden']:.3g}, "
              f"max {s['D_max_where_forbidden']:.3g} meV"
              + (f"; D ({s['D_pairs']} pairs computed with SOC, mean |D| {s['D_true_mean_norm']:.3g}): MAE "
                 f"{s['D_mae']:.3g}, RMSE {s['D_rmse']:.3g} meV" if s["D_mae"] is not None else ""))

    # speed: one system's pairs predicted, against the JuKKR runs that gave them
    timings = params.get("timings", {})
    speed = []
    model = zero
    for s in systems:
        sel = [pairs[k] for k in by_sys[s]]
        model.predict(sel[:1])
        best = min(_timed(model.predict, sel) for _ in range(5))
        tm = next((v for v in timings.values() if v.get("jij_label", "").split(" r<")[0].removeprefix("Jij ") == s),
                  None)
        if tm:
            wall = tm["host_scf_s"] + tm["jij_s"]
            speed.append({"system": s, "pairs": len(sel), "predict_s": best, "jukkr_host_scf_s": tm["host_scf_s"],
                          "jukkr_jij_s": tm["jij_s"], "speedup_total": wall / best,
                          "speedup_jij_only": tm["jij_s"] / best})
    if speed:
        sp = np.array([x["speedup_total"] for x in speed])
        sj = np.array([x["speedup_jij_only"] for x in speed])
        print(f"speed-up over JuKKR (host SCF + J_ij), median {np.median(sp):.3g}x (min {sp.min():.3g}x); "
              f"over the J_ij step alone {np.median(sj):.3g}x (min {sj.min():.3g}x)")

    result = {
        "benchmark": "bench_ml_exc_real", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "loadavg_end": os.getloadavg()},
        "data": {"file": args.data.name, "sha256": file_sha256(args.data), "pairs": len(pairs),
                 "systems": {s: len(by_sys[s]) for s in systems}, "d_forbidden_pairs": int(forbidden.sum()),
                 "J_std": float(tj.std()), "J_mean_abs": float(np.mean(np.abs(tj))),
                 "parameters": {k: v for k, v in params.items() if k != "timings"}},
        "base_model": {"folder": args.base.name, "data_sha256": base.meta["data"].get("sha256"),
                       "species": base.cfg.species, "metrics_test": base.meta["metrics"].get("test"),
                       "zero_shot_seconds": zero_s},
        "training": {"epochs": args.epochs, "patience": args.patience, "lr": args.lr, "seeds": seeds,
                     "batch_size": 16, "split_within_training_systems": [0.85, 0.15, 0.0]},
        "summary": summary, "folds": folds, "speed": speed,
        "soc": {"file": args.soc_data.name, "sha256": file_sha256(args.soc_data), "pairs": len(soc_pairs),
                "systems": {s: len(v) for s, v in soc_by_sys.items()}, "errors": soc_rows} if args.soc_data else None,
    }
    for r in soc_rows:
        print(f"SOC {r['system']} ({r['model']}, seed {r['seed']}): J MAE {r['J_mae']:.3f}, |D| error "
              f"{r['D_mae']:.3g} (true |D| ≤ {r['D_true_max']:.2g}), S MAE {r['S_mae']:.3g} (true |S| "
              f"{r['S_true_mean_abs']:.3g}) meV")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_ml_exc_real" + (f"-{args.tag}" if args.tag else "") + ".json"
    (RESULTS / name).write_text(json.dumps(result, indent=1, default=float))
    print(f"results: benchmarks/results/{name}")
    _figure(pairs, true, pred, by_sys, systems, args.tag)
    return 0


def _timed(f, *a) -> float:
    t = time.perf_counter()
    f(*a)
    return time.perf_counter() - t


def _figure(pairs, true, pred, by_sys, systems, tag: str) -> None:
    """Parity of J (held-out systems) for each model, and J(r) of each system, JuKKR vs fine-tuned."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tj = decompose(true).J
    dist = np.array([np.linalg.norm(p.position_j - p.position_i) for p in pairs])
    names = ["engine as it is", "fine-tuned", "from scratch", "kernel ridge"]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=["J predicted for held-out systems vs JuKKR (meV)",
                                        "J(r): JuKKR (●) and fine-tuned with the system held out (×)"])
    lo, hi = float(tj.min()) - 1, float(tj.max()) + 1
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line={"color": "#999", "dash": "dot"},
                             showlegend=False), row=1, col=1)
    for name in names:
        p = pred[name] if pred[name].ndim == 3 else pred[name][0]
        pj = decompose(p).J
        ok = np.isfinite(pj)
        fig.add_trace(go.Scatter(x=tj[ok], y=pj[ok], mode="markers", name=name, marker={"size": 6, "opacity": 0.7}),
                      row=1, col=1)
    import plotly.colors

    ft = pred["fine-tuned"][0]
    palette = plotly.colors.qualitative.Dark24
    for k, s in enumerate(systems):
        idx = np.array(by_sys[s])
        color = palette[k % len(palette)]
        fig.add_trace(go.Scatter(x=dist[idx], y=tj[idx], mode="markers", name=f"{s}: JuKKR (●) / fine-tuned (×)",
                                 legendgroup=s, marker={"color": color, "size": 8}), row=1, col=2)
        fig.add_trace(go.Scatter(x=dist[idx], y=decompose(ft[idx]).J, mode="markers",
                                 name=f"{s} fine-tuned", legendgroup=s, showlegend=False,
                                 marker={"color": color, "symbol": "x", "size": 8}), row=1, col=2)
    fig.update_xaxes(title_text="J JuKKR (meV)", row=1, col=1)
    fig.update_yaxes(title_text="J predicted (meV)", row=1, col=1)
    fig.update_xaxes(title_text="|r_ij| (Å)", row=1, col=2)
    fig.update_yaxes(title_text="J (meV)", row=1, col=2)
    fig.update_layout(template="plotly_white", height=560, width=1400,
                      title="ML-Exc on real JuKKR J_ij (kkr_jij_wc), leave-one-system-out")
    save_figure(fig, "ml-exc-real" + (f"-{tag}" if tag else ""))


if __name__ == "__main__":
    raise SystemExit(main())
