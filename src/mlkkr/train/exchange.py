"""Training, checkpoints, loading, prediction and evaluation of the exchange model (no AiiDA, no click).

A trained model is a folder::

    model.json       {"kind": "exchange", "format": FORMAT, "architecture": ARCHITECTURE, "mlkkr_version",
                      "model": hyper-parameters, "training": ..., "species",
                      "data": {sha256, n_records, split}, "metrics", "best_epoch", ...}
    weights.pt       state dict of the best epoch (lowest validation loss)
    checkpoint.pt    the full state after the last finished epoch (model, optimiser, scheduler,
                     early-stopping counters, history): what ``resume=True`` continues from
    baseline.npz     the distance-and-species kernel-ridge baseline, fitted on the same training split
    split.npz        indices of the train / val / test records
    history.json     per-epoch losses and validation errors

model.json records the SHA-256 of weights.pt, baseline.npz and split.npz (``"files"``); :func:`load_model`
verifies them (see :mod:`mlkkr.models.files`).

Every file is written to a temporary name and renamed into place, so a kill at any moment leaves the
previous checkpoint intact. Reproducibility: the weights are initialised from ``seed``, and epoch e
shuffles the training records, taken in content order (``canonical_rank``: the order of the records
in the file does not matter), with ``numpy.random.default_rng([seed, e])``, so a resumed run repeats exactly what an
uninterrupted one does (same device, dtype and thread count).

Loss: per-irrep normalised mean squared error of the tensor in e3nn's orthonormal basis,
``w_J·MSE(0e)/σ0² + w_D·MSE(1e)/σ1² + w_S·MSE(2e)/σ2²`` with σ the training-set scales (0e ↔ J·√3,
1e ↔ D·√2, 2e ↔ S), so J, D and S count alike whatever their size in meV.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlkkr import __version__ as MLKKR_VERSION
from mlkkr.errors import InputError
from mlkkr.models.baseline_exchange import DistanceSpeciesBaseline
from mlkkr.models.exchange import (
    ARCHITECTURE,
    ExchangeModelConfig,
    ExchangeNet,
    PairGraphs,
    build_graphs,
    tensor_stats,
)
from mlkkr.models.files import check_finite, checksums, read_meta, verify_files
from mlkkr.train.exchange_data import (
    PARTS,
    SPLITS,
    canonical_rank,
    held_parts,
    split_by_environment,
    validate_pairs,
)
from mlkkr.train.exchange_metrics import error_table

KIND = "exchange"
#: Version of the model folder's layout and weights. 2: e3nn's TensorProduct/Linear/Gate modules (weights
#: of format 1, the hand-written tensor product, do not load).
FORMAT = 2
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class TrainingInterrupted(RuntimeError):
    """Raised after the checkpoint of epoch ``stop_after`` (a simulated kill, for tests)."""


@dataclass
class TrainConfig:
    """Training settings.

    epochs: most epochs. batch_size: pairs per step. lr: Adam learning rate; halved (``lr_factor``)
    after ``lr_patience`` epochs without validation improvement, down to ``min_lr``. patience: early
    stopping after that many epochs without improvement. seed: initial weights, shuffling, split.
    split: train/val/test fractions (by environment). device: "cpu", "cuda", "cuda:N" or "auto".
    dtype: "float32" or "float64". loss_weights: w_J, w_D, w_S. grad_clip: max gradient norm.
    baseline: also fit the distance-and-species baseline on the training split.
    """

    epochs: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    lr_factor: float = 0.5
    lr_patience: int = 8
    min_lr: float = 1e-5
    patience: int = 25
    seed: int = 0
    split: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    device: str = "cpu"
    dtype: str = "float32"
    loss_weights: dict[str, float] = field(default_factory=lambda: {"J": 1.0, "D": 1.0, "S": 1.0})
    grad_clip: float = 10.0
    baseline: bool = True

    def validate(self) -> None:
        for name, lo in (("epochs", 1), ("batch_size", 1), ("patience", 1), ("lr_patience", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InputError(name, v, allowed=f"an integer >= {lo}")
        for name in ("lr", "min_lr", "grad_clip"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not np.isfinite(v) or v <= 0:
                raise InputError(name, v, allowed="a positive number")
        if not 0 < self.lr_factor < 1:
            raise InputError("lr_factor", self.lr_factor, allowed="a number between 0 and 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError("seed", self.seed, allowed="an integer >= 0")
        if self.dtype not in DTYPES:
            raise InputError("dtype", self.dtype, allowed=list(DTYPES))
        if set(self.loss_weights) != {"J", "D", "S"} or any(v < 0 for v in self.loss_weights.values()):
            raise InputError("loss_weights", self.loss_weights, allowed="w_J, w_D, w_S >= 0")
        resolve_device(self.device)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; refuses unknown names and an absent GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError("device", name, allowed=["cpu", "cuda", "cuda:N", "auto"]) from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError("device", name, allowed=["cpu", "cuda", "cuda:N", "auto"])
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device", name, reason="no CUDA device is available here (torch.cuda.is_available() "
                         "is False); use --device cpu")
    return dev


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------
def _atomic(path: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def savez(path: Path, arrays: dict[str, Any]) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    _atomic(path, write)


def write_json(path: Path, data: Any) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2, sort_keys=True, default=_plain)))


def _plain(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def load_checkpoint(path: str | Path, device: Any = "cpu") -> dict[str, Any]:
    """A training checkpoint, loaded as tensors and plain data only (``weights_only=True``: no code from the
    file runs — models and their folders travel through the shared store). Anything else, or a damaged
    file, is an :class:`InputError` naming the file."""
    import pickle

    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise InputError("checkpoint", str(path), reason="not a checkpoint of mlkkr's trainer, or damaged (only "
                         f"tensors and plain data are loaded): {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(ck, dict) or not {"settings", "model", "optimizer", "scheduler", "state"} <= set(ck):
        raise InputError("checkpoint", str(path), reason="not a checkpoint of mlkkr's trainer (keys missing)")
    return ck


def torch_save(path: Path, obj: Any) -> None:
    _atomic(path, lambda tmp: torch.save(obj, tmp))


def species_of(pairs: Sequence[Any]) -> list[str]:
    """Every label the graphs of ``pairs`` use: magnetic species, other defects, host names (sorted). The host
    name of a record whose environment already holds the host's atoms (a real crystal) labels no atom."""
    names = set()
    for p in pairs:
        names.update([p.species_i, p.species_j, *p.environment_species])
        if not (p.provenance or {}).get("environment_includes_host", False):
            names.add(str(p.host))
    return sorted(names)


# --------------------------------------------------------------------------------------------------
# Batching
# --------------------------------------------------------------------------------------------------
def batches(graphs: PairGraphs, targets: np.ndarray | None, idx: np.ndarray, size: int,
            device: torch.device, dtype: torch.dtype, mask: np.ndarray | None = None):
    """Yield (graphs, targets, mask) torch batches of the records ``idx`` in that order (None for an
    absent ``targets`` or ``mask``)."""
    def rows(a: np.ndarray | None, part: np.ndarray) -> torch.Tensor | None:
        return None if a is None else torch.as_tensor(a[part], dtype=dtype, device=device)

    for s in range(0, len(idx), size):
        part = idx[s:s + size]
        yield graphs.subset(part).to_torch(device, dtype), rows(targets, part), rows(mask, part)


def loss_fn(net: ExchangeNet, pred: torch.Tensor, true: torch.Tensor, weights: dict[str, float],
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-irrep normalised MSE (see module doc). ``mask`` (B, 3) of 0/1: which of J, D, S each record
    holds (a part that was not computed, e.g. D and S of an isotropic JuKKR result, is not a zero to learn;
    None: every record holds all three)."""
    d = (net.from_cartesian(pred - true) / net.scale).pow(2)
    terms = (d[:, 0], d[:, 1:4].mean(1), d[:, 4:9].mean(1))
    if mask is None:
        mask = torch.ones(len(pred), 3, dtype=pred.dtype, device=pred.device)
    out = pred.new_zeros(())
    for k, (name, t) in enumerate(zip(PARTS, terms, strict=True)):
        m = mask[:, k]
        if weights[name] and float(m.sum()) > 0:
            out = out + weights[name] * (t * m).sum() / m.sum()
    return out


def part_mask(pairs: Sequence[Any]) -> np.ndarray:
    """(n, 3) 0/1: whether each record holds J, D, S (:func:`~mlkkr.train.exchange_data.held_parts`)."""
    return np.array([[float(name in held_parts(p)) for name in PARTS] for p in pairs]).reshape(-1, 3)


@torch.no_grad()
def predict_graphs(net: ExchangeNet, graphs: PairGraphs, batch_size: int = 1024,
                   device: torch.device | str = "cpu") -> np.ndarray:
    """Tensors (n, 3, 3) meV for numpy graphs."""
    net.eval()
    dtype = next(net.parameters()).dtype
    out = []
    idx = np.arange(len(graphs))
    for g, _, _ in batches(graphs, None, idx, batch_size, torch.device(device), dtype):
        out.append(net(g).double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 3, 3))


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------
@dataclass
class FitResult:
    folder: Path
    meta: dict[str, Any]
    history: list[dict[str, Any]]


def fit(pairs: Sequence[Any], folder: str | Path, model_cfg: ExchangeModelConfig, cfg: TrainConfig, *,
        data_sha256: str = "", resume: bool = False, progress: bool = True,
        log: Callable[[str], None] = print, stop_after: int | None = None,
        init_from: str | Path | None = None, refit_scale: bool = False) -> FitResult:
    """Train an :class:`ExchangeNet` on ``pairs`` into the model folder ``folder``.

    ``model_cfg.species`` empty → every label in the data. ``resume=True`` continues from
    ``folder/checkpoint.pt`` (refused if it was made with other data or settings). ``stop_after``
    raises :class:`TrainingInterrupted` right after the checkpoint of that epoch (tests).

    ``init_from``: fine-tune a trained model folder instead of starting from random weights. Its
    architecture and hyper-parameters are kept (``model_cfg`` is ignored); species it does not know are
    added, their embedding started from that of the model's host label (a host atom is what an
    unknown surrounding atom is most like); the output scales are the base model's, so that fine-tuning
    starts from its very function (``refit_scale=True`` sets the scale of each part the new data holds
    from the new training split instead: on real JuKKR J_ij, whose J is several times the engine's, that
    doubled the held-out error, see docs/ml-exc.md). Records whose ``provenance["tensor_parts"]`` lacks D or
    S (isotropic results) do not enter the loss of those parts.
    """
    cfg.validate()
    validate_pairs(pairs)
    device, dtype = resolve_device(cfg.device), DTYPES[cfg.dtype]
    folder = Path(folder)
    ckpt_path = folder / "checkpoint.pt"
    if resume and not ckpt_path.is_file():
        raise InputError("--resume", str(folder), reason=f"no checkpoint to resume from in {folder}")
    if not resume and (folder / "model.json").exists():
        raise InputError("output", str(folder), reason="a model already exists there; choose another folder "
                         "or --resume an interrupted training")

    data_species = species_of(pairs)
    base = None
    if init_from is not None:
        base = load_model(init_from)
        model_cfg = ExchangeModelConfig.from_dict(base.cfg.to_dict())
        model_cfg.species = list(model_cfg.species) + [s for s in data_species if s not in model_cfg.species]
    if not model_cfg.species:
        model_cfg.species = data_species
    unknown = sorted(set(data_species) - set(model_cfg.species))
    if unknown:
        raise InputError("species", unknown[0], allowed=model_cfg.species, reason="the data has a species the "
                         "model configuration does not list")
    split = split_by_environment(pairs, cfg.split, cfg.seed)
    rank = canonical_rank(pairs)
    # the training records in content order: statistics, epochs and baseline ignore the file's order
    train_canon = split["train"][np.argsort(rank[split["train"]], kind="stable")]
    for name in ("train", "val"):
        if len(split[name]) == 0:
            raise InputError(f"split.{name}", 0, reason=f"the {name} split is empty; training needs both "
                             "train and validation pairs")
    targets = np.array([p.tensor for p in pairs], float)
    mask = part_mask(pairs)
    graphs = build_graphs(pairs, model_cfg.species, model_cfg.r_env, model_cfg.r_host)
    dmax = float(np.linalg.norm(graphs.bond, axis=1).max())
    counts = np.diff(graphs.env_ptr)
    stats = tensor_stats(targets[train_canon], counts[train_canon])
    init_info = None
    if base is None:
        model_cfg.r_pair = float(max(model_cfg.r_pair, dmax))
        model_cfg.stats = stats
    else:
        if dmax > model_cfg.r_pair:
            raise InputError("data", f"a pair {dmax:.2f} Å apart", reason=f"the model of {init_from} covers "
                             f"pair distances up to {model_cfg.r_pair:.2f} Å only")
        held = (mask[train_canon].max(axis=0) > 0) & refit_scale  # parts the new training data holds
        scales = {"J": ("mean0", "std0"), "D": ("std1",), "S": ("std2",)}
        model_cfg.stats = {**model_cfg.stats, **{key: stats[key] for name, h in zip(PARTS, held, strict=True)
                                                 if h for key in scales[name]}}
        init_info = {"folder": str(init_from), "data_sha256": base.meta["data"].get("sha256"),
                     "species": list(base.cfg.species),
                     "new_species": [s for s in model_cfg.species if s not in base.cfg.species],
                     "new_species_init": _host_label(base), "parts_refit": [n for n, h in zip(PARTS, held,
                                                                                              strict=True) if h]}
        log(f"fine-tuning {init_from}: new species {init_info['new_species'] or 'none'} (embedding started from "
            f"{init_info['new_species_init']!r}); output scale refitted for "
            f"{', '.join(init_info['parts_refit']) or 'no part'}")
    if not mask[train_canon].all():
        log("parts not computed in some records (e.g. D and S of isotropic results) are left out of their loss")
    settings = {"architecture": ARCHITECTURE, "model": model_cfg.to_dict(), "training": asdict(cfg),
                "data_sha256": data_sha256, "n_records": len(pairs), "init_from": init_info}
    folder.mkdir(parents=True, exist_ok=True)  # only once the input is known to be good

    torch.manual_seed(cfg.seed)
    net = ExchangeNet.build(model_cfg, dtype).to(device)
    if base is not None:
        _load_base_weights(net, base, model_cfg.species)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=cfg.lr_factor, patience=cfg.lr_patience,
                                                       min_lr=cfg.min_lr)
    state: dict[str, Any] = {"epoch": 0, "best_val": float("inf"), "best_epoch": 0, "bad_epochs": 0,
                             "history": [], "best_state": None, "train_seconds": 0.0, "done": False}
    if resume:
        for stale in folder.glob(".*.tmp"):  # temporary files of a run killed while writing
            stale.unlink(missing_ok=True)
        ck = load_checkpoint(ckpt_path, device)
        if ck["settings"] != json.loads(json.dumps(settings, default=_plain)):
            raise InputError("--resume", str(folder), reason="the checkpoint was made with other data or "
                             "settings; resume with the same --data and options")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        state = ck["state"]
        log(f"resuming after epoch {state['epoch']} (best val loss {state['best_val']:.4g} at epoch "
            f"{state['best_epoch']})")
    savez(folder / "split.npz", split)

    train_idx, val_idx = train_canon, split["val"]
    while not state["done"] and state["epoch"] < cfg.epochs:
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        net.train()
        order = train_idx[np.random.default_rng([cfg.seed, epoch]).permutation(len(train_idx))]
        bar = _bar(len(order), epoch, cfg.epochs, progress)
        running, seen = 0.0, 0
        for g, t, m in batches(graphs, targets, order, cfg.batch_size, device, dtype, mask):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net, net(g), t, cfg.loss_weights, m)
            if not torch.isfinite(loss):
                raise InputError("training", float(loss), reason=f"the loss became non-finite in epoch {epoch}; "
                                 "lower --lr")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
            opt.step()
            n = len(t)
            running += float(loss.detach()) * n
            seen += n
            if bar is not None:
                bar.update(n)
                bar.set_postfix(loss=f"{running / seen:.4f}")
        if bar is not None:
            bar.close()
        train_seconds = time.perf_counter() - t0
        val_pred = predict_graphs(net, graphs.subset(val_idx), 512, device)
        with torch.no_grad():
            val_loss = float(loss_fn(net, torch.as_tensor(val_pred, dtype=dtype, device=device),
                                     torch.as_tensor(targets[val_idx], dtype=dtype, device=device),
                                     cfg.loss_weights, torch.as_tensor(mask[val_idx], dtype=dtype, device=device)))
        table = error_table(val_pred, targets[val_idx])
        sched.step(val_loss)
        improved = val_loss < state["best_val"]
        if improved:
            state.update(best_val=val_loss, best_epoch=epoch, bad_epochs=0,
                         best_state={k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
        else:
            state["bad_epochs"] += 1
        state["train_seconds"] += train_seconds
        row = {"epoch": epoch, "train_loss": running / max(seen, 1), "val_loss": val_loss,
               "val_mae_J": table["J"]["mae"], "val_mae_D": table["D"]["mae"], "val_mae_S": table["S"]["mae"],
               "lr": opt.param_groups[0]["lr"], "seconds": train_seconds}
        state["history"].append(row)
        state["epoch"] = epoch
        if state["bad_epochs"] >= cfg.patience:
            state["done"] = True
            state["stopped"] = f"early stopping: no validation improvement in {cfg.patience} epochs"
        log(f"epoch {epoch:4d}  train {row['train_loss']:.4f}  val {val_loss:.4f}  MAE J {row['val_mae_J']:.4f}"
            f"  D {row['val_mae_D']:.4f}  S {row['val_mae_S']:.4f} meV  lr {row['lr']:.1e}  {train_seconds:.1f}s"
            + ("  *" if improved else ""))
        torch_save(ckpt_path, {"settings": json.loads(json.dumps(settings, default=_plain)),
                               "model": net.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "state": state})
        if stop_after is not None and epoch >= stop_after and not state["done"]:
            raise TrainingInterrupted(f"stopped after the checkpoint of epoch {epoch}")
    state.setdefault("stopped", f"reached --epochs {cfg.epochs}")
    return _finish(folder, pairs, graphs, targets, {**split, "train": train_canon}, net, model_cfg, cfg,
                   settings, state, device, log)


def _host_label(model: LoadedModel) -> str:
    """The label the model gives host atoms (the first host it was trained on)."""
    hosts = [h for h in model.meta.get("hosts", {}) if h in model.cfg.species]
    return hosts[0] if hosts else model.cfg.species[0]


def _load_base_weights(net: ExchangeNet, base: LoadedModel, species: list[str]) -> None:
    """Copy every trained parameter of ``base`` into ``net``; embedding rows of new species start as the
    base's host label (the output scale and shift are buffers of ``net``'s own configuration)."""
    own = dict(net.named_parameters())
    src = dict(base.net.named_parameters())
    with torch.no_grad():
        for name, p in own.items():
            q = src[name].detach().to(p.device, p.dtype)
            if name == "embedding.weight":
                known = {s: n for n, s in enumerate(base.cfg.species)}
                fallback = known[_host_label(base)]
                p.copy_(q[[known.get(s, fallback) for s in species]])
            elif q.shape != p.shape:
                raise InputError("init_from", str(base.folder), reason=f"its parameter {name} has shape "
                                 f"{tuple(q.shape)}, this network {tuple(p.shape)}")
            else:
                p.copy_(q)


def _bar(total: int, epoch: int, epochs: int, progress: bool):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="pair", leave=False)


def _finish(folder: Path, pairs: Sequence[Any], graphs: PairGraphs, targets: np.ndarray,
            split: dict[str, np.ndarray], net: ExchangeNet, model_cfg: ExchangeModelConfig, cfg: TrainConfig,
            settings: dict[str, Any], state: dict[str, Any], device: torch.device,
            log: Callable[[str], None]) -> FitResult:
    """Best weights, baseline, metrics and model.json (written last)."""
    if state["best_state"] is not None:
        net.load_state_dict(state["best_state"])
    torch_save(folder / "weights.pt", {k: v.detach().cpu() for k, v in net.state_dict().items()})
    metrics: dict[str, Any] = {}
    for name in ("val", "test"):
        idx = split[name]
        if len(idx):
            metrics[name] = error_table(predict_graphs(net, graphs.subset(idx), 512, device), targets[idx])
    baseline_info: dict[str, Any] | None = None
    if cfg.baseline:
        t0 = time.perf_counter()
        base = DistanceSpeciesBaseline(sorted({s for p in pairs for s in (p.species_i, p.species_j)}),
                                       seed=cfg.seed).fit([pairs[i] for i in split["train"]])
        arrays = base.to_arrays()
        savez(folder / "baseline.npz", arrays)
        baseline_info = {"kind": "kernel ridge (RBF) on distance and species", "gamma": base.gamma,
                         "alpha": base.alpha, "n_fit": int(len(base.x_fit)),
                         "seconds": time.perf_counter() - t0}
        for name in ("val", "test"):
            idx = split[name]
            if len(idx):
                metrics[f"baseline_{name}"] = error_table(base.predict([pairs[i] for i in idx]), targets[idx])
    history = state["history"]
    meta = {
        "kind": KIND, "format": FORMAT, "architecture": ARCHITECTURE, "mlkkr_version": MLKKR_VERSION,
        "model": model_cfg.to_dict(), "training": asdict(cfg),
        "species": model_cfg.species,
        "hosts": {str(p.host): np.asarray(p.cell).tolist() for p in pairs},
        "data": {"sha256": settings["data_sha256"], "n_records": len(pairs),
                 "split": {"seed": cfg.seed, "fractions": list(cfg.split),
                           **{f"n_{k}": int(len(split[k])) for k in SPLITS}}},
        "metrics": metrics, "baseline": baseline_info, "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"], "stopped": state["stopped"],
        "seconds_per_epoch": float(np.mean([h["seconds"] for h in history])) if history else None,
        "device": str(device), "units": {"tensor": "meV", "length": "angstrom"},
        "convention": "E = -sum_{i<j} e_i.J_ij.e_j (J > 0 ferromagnetic); J = Tr/3; D = (A_yz, A_zx, A_xy) of "
                      "A = (J_ij - J_ij^T)/2; S symmetric traceless",
        "n_parameters": int(sum(p.numel() for p in net.parameters())), "network": net.describe(),
        "init_from": settings.get("init_from"),
        # SHA-256 of every weight/array file, verified by load_model (issue 15: folders travel through the store)
        "files": checksums(folder, [n for n in ("weights.pt", "baseline.npz", "split.npz") if (folder / n).is_file()]),
    }
    write_json(folder / "history.json", history)
    write_json(folder / "model.json", meta)
    log(f"model written to {folder} (best epoch {state['best_epoch']}, {state['stopped']})")
    return FitResult(folder, meta, history)


# --------------------------------------------------------------------------------------------------
# Loading, prediction, evaluation
# --------------------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    net: ExchangeNet
    meta: dict[str, Any]
    baseline: DistanceSpeciesBaseline | None
    folder: Path

    @property
    def cfg(self) -> ExchangeModelConfig:
        return self.net.cfg

    def graphs(self, pairs: Sequence[Any]) -> PairGraphs:
        c = self.cfg
        return build_graphs(pairs, c.species, c.r_env, c.r_host, c.r_pair)

    def predict(self, pairs: Sequence[Any], batch_size: int = 1024) -> np.ndarray:
        """Tensors J_ij (n, 3, 3) meV; :class:`InputError` for species or distances the model does not know."""
        device = next(self.net.parameters()).device
        return predict_graphs(self.net, self.graphs(pairs), batch_size, device)


def load_model(folder: str | Path, device: str = "cpu", dtype: str | None = None) -> LoadedModel:
    """Load a model folder written by :func:`fit`.

    The folder may come from the shared store, so it is checked first (:mod:`mlkkr.models.files`):
    model.json must be a JSON object whose configuration and statistics (``model``, ``training``,
    ``hosts``) are finite numbers, weights.pt must be present, and every file recorded in model.json's
    ``"files"`` must match its SHA-256 — else :class:`InputError` naming model.json, the key path or the
    file. Folders written before checksums were recorded (no ``"files"``) load as before, unverified.
    The weights are read with ``weights_only=True`` (tensors only, no code).
    """
    folder = Path(folder)
    meta = read_meta(folder)
    if meta.get("kind") != KIND:
        raise InputError("model.json:kind", meta.get("kind"), allowed=[KIND])
    if meta.get("format") != FORMAT or meta.get("architecture") != ARCHITECTURE:
        fmt = meta.get("format", 1)
        arch = meta.get("architecture", "the hand-written tensor product")
        raise InputError("model.json:format", fmt, allowed=[FORMAT],
                         reason=f"{folder} holds a format {fmt} network ({arch}) that this mlkkr cannot load; "
                                "retrain it")
    check_finite(meta, ("model", "training", "hosts"))
    verify_files(folder, meta, ["weights.pt"])
    try:
        cfg = ExchangeModelConfig.from_dict(meta["model"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError("model.json:model", None, reason=f"not an exchange model configuration ({exc!r})") from None
    dev = resolve_device(device)
    net = ExchangeNet.build(cfg, DTYPES[dtype or meta["training"].get("dtype", "float32")])
    import pickle

    try:
        state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
        # buffers are constants of the configuration (e3nn's Wigner 3j symbols and output masks, the radial
        # frequencies, the scales): keep the ones just built in this dtype, exact also when it is wider
        own = net.state_dict()
        constants = set(own) - {name for name, _ in net.named_parameters()}
        net.load_state_dict({**state, **{k: own[k] for k in constants}})
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, TypeError) as exc:
        raise InputError("MODEL", str(folder / "weights.pt"), reason="weights.pt is damaged or does not match "
                         f"model.json: {str(exc).splitlines()[0][:200]}") from None
    net = net.to(dev)
    net.eval()
    baseline = None
    if (folder / "baseline.npz").is_file():
        try:
            with np.load(folder / "baseline.npz", allow_pickle=False) as a:
                baseline = DistanceSpeciesBaseline.from_arrays(dict(a))
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise InputError("MODEL", str(folder / "baseline.npz"), reason="baseline.npz is damaged: "
                             f"{str(exc).splitlines()[0][:200]}") from None
    return LoadedModel(net, meta, baseline, folder)


def extend_species(model: LoadedModel, species: Sequence[str]) -> LoadedModel:
    """``model`` able to read graphs with the labels ``species`` it was not trained on: each new label gets the
    embedding of the model's host label (see :func:`fit`'s ``init_from``); everything else is unchanged."""
    new = [s for s in dict.fromkeys(species) if s not in model.cfg.species]
    if not new:
        return model
    cfg = ExchangeModelConfig.from_dict(model.cfg.to_dict())
    cfg.species = list(cfg.species) + new
    dtype = next(model.net.parameters()).dtype
    net = ExchangeNet.build(cfg, dtype).to(next(model.net.parameters()).device)
    _load_base_weights(net, model, cfg.species)
    net.eval()
    meta = {**model.meta, "species": cfg.species, "extended_species": {"new": new, "as": _host_label(model)}}
    return LoadedModel(net, meta, model.baseline, model.folder)


def choose_split(model: LoadedModel, pairs: Sequence[Any], data_sha256: str, split: str = "auto"
                 ) -> tuple[np.ndarray, str]:
    """Records to evaluate: the model's held-out test split when the data is its training file, else all.

    ``split``: "auto", "test", "val", "train" or "all"; a named split needs the training file.
    """
    allowed = ["auto", "test", "val", "train", "all"]
    if split not in allowed:
        raise InputError("--split", split, allowed=allowed)
    same = data_sha256 and data_sha256 == model.meta["data"].get("sha256")
    if split == "all" or (split == "auto" and not same):
        return np.arange(len(pairs)), "all records (not the training file)" if not same else "all records"
    if not same:
        raise InputError("--split", split, reason="a named split needs the model's own training data "
                         "(its SHA-256 differs)")
    name = "test" if split == "auto" else split
    with np.load(model.folder / "split.npz") as s:
        idx = s[name]
    if len(idx) == 0:
        raise InputError("--split", name, reason=f"the model's {name} split is empty")
    return idx, f"{name} split of the training data"


def evaluate(model: LoadedModel, pairs: Sequence[Any], idx: np.ndarray) -> dict[str, Any]:
    """Error tables (meV) of the model and the baseline on ``pairs[idx]``, with predictions."""
    validate_pairs(pairs)
    sel = [pairs[i] for i in idx]
    if not sel:
        raise InputError("data", 0, reason="nothing to evaluate: the selection is empty")
    true = np.array([p.tensor for p in sel])
    pred = model.predict(sel)
    out: dict[str, Any] = {"n": len(sel), "tables": {"e3nn": error_table(pred, true)},
                           "pred": {"e3nn": pred}, "true": true}
    if model.baseline is not None:
        bpred = model.baseline.predict(sel)
        out["tables"]["baseline"] = error_table(bpred, true)
        out["pred"]["baseline"] = bpred
    return out
