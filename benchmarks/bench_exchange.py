"""ML-Exc benchmark: accuracy on held-out engine pairs, inference speed-up over the engine, epoch time.

Run (from the repository root)::

    .venv/bin/python benchmarks/bench_exchange.py                    # 10,000 pairs, CPU
    .venv/bin/python benchmarks/bench_exchange.py --device cuda \\
        --model benchmarks/.cache/model-exchange-n10000-s0          # GPU: reuse the trained model

Steps, all in this process:

1. Dataset: ``--n`` engine pairs (seed ``--seed``) of the TI host, as ``mlkkr data exchange`` makes them;
   cached in ``benchmarks/.cache/`` (git-ignored).
2. Model: ``--model DIR`` if given (e.g. the one made by the documented training command, see
   docs/ml-exc.md), else trained here with the same settings (``--train-epochs``) into the cache.
3. Held-out test split (whole environments): MAE / RMSE / R² of J, D, S for the e3nn model and the
   distance-and-species kernel-ridge baseline, and the goals: R²(J) ≥ 0.98, MAE(J) ≤ 5 % std(J),
   MAE(D) ≤ 10 % std(D), baseline MAE(D) / model MAE(D) ≥ 2. Parity plots (HTML + PNG).
4. Throughput on the same test pairs. Reference: the engine's own exchange calculation
   (``mlkkr.greens.exchange.exchange_tensor_batch``, batched as the dataset builder does, CPU,
   single-threaded BLAS as the engine sets it), timed here; its tensors are checked against the file.
   ML: end-to-end prediction from the records (graph building + network) on ``--device``.
5. Training time per epoch on ``--device`` (``--time-epochs`` fresh epochs), against the engine time
   for the same number of pairs.

Nothing is asserted: the script prints figures, ratios and which goals are met.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"


def dataset(n: int, seed: int) -> tuple[Path, float | None]:
    """The cached HDF5 of n engine pairs (made here if missing); and the build rate if made now."""
    from mlkkr.data.builders import ExchangeSampler, build_exchange
    from mlkkr.data.h5io import write_exchange
    from mlkkr.greens import Engine, make_host

    path = CACHE / f"exchange-n{n}-s{seed}.h5"
    if path.is_file():
        return path, None
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"generating {n} engine pairs (seed {seed}) -> {path}", flush=True)
    engine = Engine(make_host("ti"))
    t0 = time.perf_counter()
    pairs, params = build_exchange(engine, n, seed, ExchangeSampler())
    rate = n / (time.perf_counter() - t0)
    write_exchange(path, pairs, {**params, "command": "benchmarks/bench_exchange.py"})
    return path, rate


def engine_from(params: dict):
    """The engine of a dataset's stored parameters (host, k-grid, contour)."""
    from mlkkr.greens import Engine, make_contour_params, make_host

    h = params["host"]
    host = make_host(h["name"], fermi_level=h["fermi_level"], lattice_constant=h["lattice_constant"],
                     screening_u=h["screening_u"], **h["params"])
    return Engine(host, params["kgrid"], make_contour_params(**params["contour"]))


def engine_throughput(engine, pairs, batch: int = 64) -> tuple[float, np.ndarray]:
    """Pairs/s of the engine on ``pairs`` (clusters grouped by size, batches of 64, as the builder)."""
    from mlkkr.greens.exchange import exchange_tensor_batch

    a = engine.host.lattice_constant
    configs = []
    for p in pairs:
        pos = np.vstack([p.position_i, p.position_j, p.environment_positions.reshape(-1, 3)]) / a
        configs.append((np.rint(pos).astype(int), [p.species_i, p.species_j, *p.environment_species]))
    out = np.empty((len(pairs), 3, 3))
    by_size: dict[int, list[int]] = {}
    for r, (s, _) in enumerate(configs):
        by_size.setdefault(len(s), []).append(r)
    t0 = time.perf_counter()
    for idx in by_size.values():
        for s in range(0, len(idx), batch):
            chunk = idx[s:s + batch]
            out[chunk] = exchange_tensor_batch(engine, np.stack([configs[r][0] for r in chunk]),
                                               np.array([configs[r][1] for r in chunk]))
    return len(pairs) / (time.perf_counter() - t0), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000, help="engine pairs in the dataset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="trained model folder to evaluate (else train one here)")
    ap.add_argument("--train-epochs", type=int, default=200, help="epochs when training here")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (model training and inference)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (the engine's BLAS runs on one)")
    ap.add_argument("--time-epochs", type=int, default=1, help="fresh training epochs timed on --device (0: skip)")
    ap.add_argument("--engine-pairs", type=int, default=1000, help="test pairs the engine recomputes for timing")
    ap.add_argument("--batch", type=int, default=None, help="inference batch [default: 1024 CPU, 8192 GPU]")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    import torch

    from mlkkr.data.h5io import read_exchange, read_parameters
    from mlkkr.models.exchange import ExchangeModelConfig
    from mlkkr.train.exchange import TrainConfig, choose_split, evaluate, fit, load_model, resolve_device
    from mlkkr.train.exchange_data import data_checksum
    from mlkkr.train.exchange_metrics import format_table
    from mlkkr.train.exchange_plots import parity_figure, write_parity

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"device: {device}{f' ({gpu})' if gpu else ''}; torch {torch.__version__}, {args.threads} CPU thread(s)")
    figures: dict = {"device": str(device), "gpu": gpu, "n": args.n, "seed": args.seed}

    # 1. data
    path, built_rate = dataset(args.n, args.seed)
    pairs = read_exchange(path)
    sha = data_checksum(str(path))
    params = read_parameters(path)
    print(f"dataset: {path.name}, {len(pairs)} pairs, sha256 {sha[:12]}…")

    # 2. model
    if args.model:
        model_dir = Path(args.model)
    else:
        model_dir = CACHE / f"model-exchange-n{args.n}-s{args.seed}-e{args.train_epochs}"
        if not (model_dir / "model.json").is_file():
            shutil.rmtree(model_dir, ignore_errors=True)
            print(f"training -> {model_dir}", flush=True)
            fit(pairs, model_dir, ExchangeModelConfig(species=[]),
                TrainConfig(epochs=args.train_epochs, patience=30, seed=args.seed, device=str(device)),
                data_sha256=sha, progress=False)
    model = load_model(model_dir, str(device))
    meta = model.meta
    if meta["data"]["sha256"] != sha:
        print(f"warning: {model_dir} was trained on other data; evaluating on all {len(pairs)} pairs")
    figures["model"] = {"folder": str(model_dir), "epochs_run": meta["epochs_run"], "best_epoch": meta["best_epoch"],
                        "trained_on": meta["device"], "seconds_per_epoch_when_trained": meta["seconds_per_epoch"],
                        "n_parameters": meta["n_parameters"], "hyper": {k: meta["model"][k] for k in
                                                                        ("mul", "latent", "layers", "r_env", "r_host")}}

    # 3. accuracy on the held-out test split
    idx, what = choose_split(model, pairs, sha, "auto")
    res = evaluate(model, pairs, idx)
    tables = res["tables"]
    print(f"\nheld-out: {what}, {res['n']} pairs (train {meta['data']['split']['n_train']}, "
          f"val {meta['data']['split']['n_val']})")
    print(format_table(tables))
    e, b = tables["e3nn"], tables["baseline"]
    goals = {
        "R2(J) >= 0.98": (e["J"]["r2"], e["J"]["r2"] >= 0.98),
        "MAE(J)/std(J) <= 0.05": (e["J"]["mae"] / e["J"]["std"], e["J"]["mae"] / e["J"]["std"] <= 0.05),
        "MAE(D)/std(D) <= 0.10": (e["D"]["mae"] / e["D"]["std"], e["D"]["mae"] / e["D"]["std"] <= 0.10),
        "baseline MAE(D) / e3nn MAE(D) >= 2": (b["D"]["mae"] / e["D"]["mae"], b["D"]["mae"] / e["D"]["mae"] >= 2),
    }
    print("\ngoals:")
    for name, (value, ok) in goals.items():
        print(f"  {name:<36} {value:8.4f}  {'met' if ok else 'NOT met'}")
    figures["tables"] = tables
    figures["goals"] = {k: {"value": v, "met": ok} for k, (v, ok) in goals.items()}
    plots = write_parity(parity_figure(res["true"], res["pred"], title=f"held-out test, {res['n']} engine pairs"),
                         CACHE / "plots", f"parity-n{args.n}-s{args.seed}")
    print(f"parity plots: {plots['html']}, {plots.get('png') or plots.get('png_error')}")
    figures["plots"] = plots

    # 4. throughput on the same pairs: engine (reference) vs model
    test_pairs = [pairs[i] for i in idx]
    sub = test_pairs[: args.engine_pairs]
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    engine = engine_from(params)
    with threadpool_limits(1):
        engine_throughput(engine, sub[:8])  # the FFT tables of G0 are made on first use: setup, not per pair
        setup = time.perf_counter() - t0
        engine_rate, recomputed = engine_throughput(engine, sub)
    err = float(np.abs(recomputed - np.array([p.tensor for p in sub])).max())
    batch = args.batch or (8192 if device.type == "cuda" else 1024)
    model.predict(test_pairs[:batch])  # warm-up (allocations, CUDA context)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    model.predict(test_pairs, batch_size=batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ml_rate = len(test_pairs) / (time.perf_counter() - t0)
    graphs = model.graphs(test_pairs)
    from mlkkr.train.exchange import predict_graphs

    t0 = time.perf_counter()
    predict_graphs(model.net, graphs, batch, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    net_rate = len(test_pairs) / (time.perf_counter() - t0)
    print(f"\nthroughput (pairs/s) on {len(sub)} / {len(test_pairs)} held-out pairs:")
    print(f"  reference  engine exchange_tensor_batch (CPU, 1 BLAS thread)  {engine_rate:10.1f}  "
          f"(setup {setup:.1f} s once; max |ΔJ_ij| vs file {err:.1e} meV)")
    if built_rate:
        print(f"  engine while building the dataset                          {built_rate:10.1f}")
    print(f"  e3nn end-to-end (graphs + network, {device}, batch {batch})      {ml_rate:10.1f}  "
          f"ratio {ml_rate / engine_rate:8.1f}x  (goal >= 100x)")
    print(f"  e3nn network only                                           {net_rate:10.1f}  "
          f"ratio {net_rate / engine_rate:8.1f}x")
    figures["throughput"] = {"engine_pairs_per_s": engine_rate, "engine_setup_s": setup,
                             "engine_check_max_abs_meV": err, "ml_pairs_per_s": ml_rate,
                             "ml_network_only_pairs_per_s": net_rate,
                             "speedup": ml_rate / engine_rate, "speedup_network_only": net_rate / engine_rate,
                             "batch": batch}

    # 5. training time per epoch on this device
    if args.time_epochs > 0:
        cfg = ExchangeModelConfig.from_dict({**meta["model"], "species": []})
        tcfg = TrainConfig(**{**meta["training"], "epochs": args.time_epochs, "device": str(device),
                              "baseline": False})
        tmp = CACHE / "epoch-timing"
        shutil.rmtree(tmp, ignore_errors=True)
        out = fit(pairs, tmp, cfg, tcfg, data_sha256=sha, progress=False, log=lambda s: None)
        secs = float(np.mean([h["seconds"] for h in out.history]))
        n_train = meta["data"]["split"]["n_train"]
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"\ntraining: {secs:.2f} s per epoch on {device} ({n_train} pairs, batch {tcfg.batch_size}, "
              f"{n_train / secs:.0f} pairs/s); reference: the engine computes {n_train} pairs in "
              f"{n_train / engine_rate:.1f} s -> one epoch = {secs * engine_rate / n_train:.2f} engine datasets")
        figures["epoch_seconds"] = secs
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
