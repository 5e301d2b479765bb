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
   ML: end-to-end prediction from the records (graph building + network) on ``--device``; with
   ``--compile`` the network goes through ``torch.compile`` first (its compile time printed apart).
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


def timed(fn, device=None):
    """((wall s, CPU s of this process), fn()) — CUDA synchronised before and after."""
    import torch

    sync = device is not None and getattr(device, "type", "") == "cuda"
    if sync:
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    if sync:
        torch.cuda.synchronize()
    return (time.perf_counter() - w0, time.process_time() - c0), out


def engine_throughput(engine, pairs, batch: int = 64) -> np.ndarray:
    """The engine's tensors for ``pairs`` (clusters grouped by size, batches of 64, as the builder)."""
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
    for idx in by_size.values():
        for s in range(0, len(idx), batch):
            chunk = idx[s:s + batch]
            out[chunk] = exchange_tensor_batch(engine, np.stack([configs[r][0] for r in chunk]),
                                               np.array([configs[r][1] for r in chunk]))
    return out


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
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the network for inference (nn.Module.compile, dynamic shapes); the compile "
                         "time is reported separately, training epochs stay eager")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    import torch

    from mlkkr.data.h5io import file_sha256, read_exchange, read_parameters
    from mlkkr.models.exchange import ExchangeModelConfig
    from mlkkr.train.exchange import TrainConfig, choose_split, evaluate, fit, load_model, resolve_device
    from mlkkr.train.exchange_metrics import format_table
    from mlkkr.train.exchange_plots import parity_figure, write_parity  # plotly imported only when plotting

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"device: {device}{f' ({gpu})' if gpu else ''}; torch {torch.__version__}, {args.threads} CPU thread(s)")
    figures: dict = {"device": str(device), "gpu": gpu, "n": args.n, "seed": args.seed}

    # 1. data
    path, built_rate = dataset(args.n, args.seed)
    pairs = read_exchange(path)
    sha = file_sha256(path)
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
    print(f"model: {model_dir.name}, {meta.get('architecture')}, {meta['n_parameters']} parameters")
    figures["model"] = {"folder": str(model_dir), "architecture": meta.get("architecture"),
                        "epochs_run": meta["epochs_run"], "best_epoch": meta["best_epoch"],
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
    try:
        plots = write_parity(parity_figure(res["true"], res["pred"], title=f"held-out test, {res['n']} engine pairs"),
                             CACHE / "plots", f"parity-{model_dir.name}")
        print(f"parity plots: {plots['html']}, {plots.get('png') or plots.get('png_error')}")
    except ImportError as exc:  # plotly missing on a bare GPU machine: the figures matter, not the plot
        plots = {"error": str(exc)}
        print(f"parity plots skipped: {exc}")
    figures["plots"] = plots

    # 4. throughput on the same pairs: engine (reference) vs model
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # then the engine's BLAS runs with its default threads (printed below)
        from contextlib import nullcontext

        def threadpool_limits(_n):
            return nullcontext()

    from mlkkr.train.exchange import predict_graphs

    test_pairs = [pairs[i] for i in idx]
    sub = test_pairs[: args.engine_pairs]
    t0 = time.perf_counter()
    engine = engine_from(params)
    with threadpool_limits(1):
        engine_throughput(engine, sub[:8])  # the FFT tables of G0 are made on first use: setup, not per pair
        setup = time.perf_counter() - t0
        (eng_wall, eng_cpu), recomputed = timed(lambda: engine_throughput(engine, sub))
    err = float(np.abs(recomputed - np.array([p.tensor for p in sub])).max())
    batch = args.batch or (8192 if device.type == "cuda" else 1024)
    compile_s = None
    if args.compile:
        model.net.compile(dynamic=True)
    t_warm = time.perf_counter()
    model.predict(test_pairs[:batch])  # warm-up (allocations, CUDA context; the compilation with --compile)
    if args.compile:
        compile_s = time.perf_counter() - t_warm
    (ml_wall, ml_cpu), _ = timed(lambda: model.predict(test_pairs, batch_size=batch), device)
    graphs = model.graphs(test_pairs)
    (net_wall, net_cpu), _ = timed(lambda: predict_graphs(model.net, graphs, batch, device), device)
    n_ml = len(test_pairs)
    rates = {"engine": (len(sub) / eng_wall, len(sub) / eng_cpu), "e3nn": (n_ml / ml_wall, n_ml / ml_cpu),
             "e3nn_network": (n_ml / net_wall, n_ml / net_cpu)}
    basis = 0 if device.type == "cuda" else 1  # GPU: wall clock; CPU: CPU seconds (robust to a shared machine)
    print(f"\nthroughput on the held-out pairs (engine: {len(sub)}, model: {n_ml}); pairs per wall-s and per "
          f"CPU-s of this process; ratio on the {'wall' if basis == 0 else 'CPU'} basis")
    print(f"  {'':<58} {'/wall-s':>10} {'/CPU-s':>10} {'ratio':>8}")
    rows = [("reference: engine exchange_tensor_batch (CPU, 1 BLAS thread)", "engine"),
            (f"e3nn end-to-end from records ({device}, batch {batch})", "e3nn"),
            ("e3nn network only (graphs prebuilt)", "e3nn_network")]
    for label, key in rows:
        w, c = rates[key]
        print(f"  {label:<58} {w:10.1f} {c:10.1f} {rates[key][basis] / rates['engine'][basis]:7.1f}x")
    print(f"  (engine setup {setup:.1f} s once; its tensors vs the file: max |diff| {err:.1e} meV; goal >= 100x)")
    if compile_s is not None:
        print(f"  (network compiled by torch.compile: {compile_s:.1f} wall-s once, before the timing)")
    if built_rate:
        print(f"  engine while building the dataset: {built_rate:.1f} pairs/wall-s")
    speedup = rates["e3nn"][basis] / rates["engine"][basis]
    figures["throughput"] = {"engine_pairs_per_wall_s": rates["engine"][0],
                             "engine_pairs_per_cpu_s": rates["engine"][1],
                             "ml_pairs_per_wall_s": rates["e3nn"][0], "ml_pairs_per_cpu_s": rates["e3nn"][1],
                             "ml_network_pairs_per_wall_s": rates["e3nn_network"][0],
                             "ml_network_pairs_per_cpu_s": rates["e3nn_network"][1], "speedup": speedup,
                             "basis": "wall" if basis == 0 else "cpu", "engine_setup_s": setup,
                             "engine_check_max_abs_meV": err, "batch": batch, "compiled": args.compile,
                             "compile_wall_s": compile_s}

    # 5. training time per epoch on this device
    if args.time_epochs > 0:
        cfg = ExchangeModelConfig.from_dict({**meta["model"], "species": []})
        tcfg = TrainConfig(**{**meta["training"], "epochs": args.time_epochs, "device": str(device),
                              "baseline": False})
        tmp = CACHE / "epoch-timing"
        shutil.rmtree(tmp, ignore_errors=True)
        (wall, cpu), out = timed(lambda: fit(pairs, tmp, cfg, tcfg, data_sha256=sha, progress=False,
                                             log=lambda s: None), device)
        secs = float(np.mean([h["seconds"] for h in out.history]))
        n_train = meta["data"]["split"]["n_train"]
        cpu_epoch = cpu / args.time_epochs  # includes one validation pass per epoch and the set-up
        shutil.rmtree(tmp, ignore_errors=True)
        eng = n_train / rates["engine"][basis]
        print(f"\ntraining: {secs:.2f} wall-s per epoch on {device} ({n_train} pairs, batch {tcfg.batch_size}); "
              f"≤ {cpu_epoch:.2f} CPU-s per epoch incl. validation")
        print(f"  reference: the engine computes those {n_train} pairs in {eng:.1f} "
              f"{'wall' if basis == 0 else 'CPU'}-s -> one epoch costs "
              f"{(secs if basis == 0 else cpu_epoch) / eng:.2f}x the engine's time for the training set")
        figures["epoch_seconds_wall"] = secs
        figures["epoch_seconds_cpu"] = cpu_epoch
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
