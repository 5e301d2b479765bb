"""Fine-tuning a trained exchange model on other data (the engine model on real JuKKR J_ij), and the symmetry
test of D that such data allows."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers_exchange import tiny_model, tiny_training

from mlkkr.cli import main
from mlkkr.data.h5io import write_exchange
from mlkkr.data.schema import ExchangePair
from mlkkr.data.symmetry import allowed_dmi
from mlkkr.errors import InputError
from mlkkr.train.exchange import extend_species, fit, load_model, loss_fn, part_mask


def quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def base_dir(engine_pairs, tmp_path_factory):
    """A tiny model trained on the engine's TI pairs (3 epochs)."""
    pairs, _ = engine_pairs
    out = tmp_path_factory.mktemp("ft") / "base"
    fit(pairs[:240], out, tiny_model(), tiny_training(epochs=3), progress=False, log=quiet)
    return out


def as_cu_host(pairs, tensor=None, parts=("J",)):
    """The engine pairs with their host atoms labelled "Cu" (a species the engine model never saw), tensors
    ``tensor(p)`` and the provenance of an isotropic JuKKR result."""
    out = []
    for p in pairs:
        q = copy.deepcopy(p)
        q.host = "Cu"
        q.tensor = tensor(p) if tensor else p.J * np.eye(3)
        q.provenance = {**q.provenance, "tensor_parts": list(parts)}
        out.append(q)
    return out


def test_a_new_species_reads_as_the_models_host_label(base_dir, engine_pairs):
    pairs, _ = engine_pairs
    base = load_model(base_dir)
    ext = extend_species(base, ["Cu"])
    assert ext.cfg.species == [*base.cfg.species, "Cu"] and ext.meta["extended_species"] == {"new": ["Cu"],
                                                                                           "as": "ti"}
    sel = pairs[240:300]
    np.testing.assert_allclose(ext.predict(sel), base.predict(sel), atol=1e-6)  # known species: unchanged
    np.testing.assert_allclose(ext.predict(as_cu_host(sel)), base.predict(sel), atol=1e-6)
    with pytest.raises(InputError, match="unknown to the model"):
        base.predict(as_cu_host(sel[:1]))


def test_fine_tuning_starts_from_the_trained_weights(base_dir, engine_pairs, tmp_path):
    pairs, _ = engine_pairs
    data = as_cu_host(pairs[240:400])
    res = fit(data, tmp_path / "ft", tiny_model(mul=8), tiny_training(epochs=1, lr=1e-9), progress=False,
              log=quiet, init_from=base_dir)
    base, ft = load_model(base_dir), load_model(tmp_path / "ft")
    info = res.meta["init_from"]
    assert info["new_species"] == ["Cu"] and info["new_species_init"] == "ti" and info["parts_refit"] == []
    assert info["data_sha256"] == base.meta["data"]["sha256"]
    assert ft.cfg.mul == base.cfg.mul == 4, "the base's architecture is kept, model_cfg is ignored"
    b, f = dict(base.net.named_parameters()), dict(ft.net.named_parameters())
    for name, p in b.items():
        q = f[name].detach()
        if name == "embedding.weight":
            q = q[:len(base.cfg.species)]
            np.testing.assert_allclose(f[name].detach()[-1], p.detach()[base.cfg.species.index("ti")], atol=1e-6)
        np.testing.assert_allclose(q, p.detach(), atol=1e-6, err_msg=name)
    # the output scales are the base's: the start is the base model's function, also for the new species
    assert ft.cfg.stats == base.cfg.stats
    np.testing.assert_allclose(ft.predict(data[:20]), base.predict(pairs[240:260]), atol=1e-5)
    # refit_scale: the J scale is that of the new data; D and S (not in it) keep the base's
    fit(data, tmp_path / "rs", tiny_model(), tiny_training(epochs=1, lr=1e-9), progress=False, log=quiet,
        init_from=base_dir, refit_scale=True)
    stats, old = load_model(tmp_path / "rs").cfg.stats, base.cfg.stats
    assert stats["std1"] == old["std1"] and stats["std2"] == old["std2"] and stats["std0"] != old["std0"]
    assert json.loads((tmp_path / "rs" / "model.json").read_text())["init_from"]["parts_refit"] == ["J"]


def test_parts_a_record_does_not_hold_are_not_learnt(base_dir, engine_pairs, tmp_path):
    """Isotropic JuKKR results carry J·1: their D and S were not computed. With tensor_parts = ["J"] whatever
    stands in D and S must not change the model (without the mask it would learn them as zeros)."""
    pairs, _ = engine_pairs
    clean = as_cu_host(pairs[240:340])
    noisy = as_cu_host(pairs[240:340], tensor=lambda p: p.J * np.eye(3) + np.random.default_rng(0).normal(
        size=(3, 3)) * 5 * (1 - np.eye(3)))
    cfg = tiny_training(epochs=2, lr=3e-3)
    fit(clean, tmp_path / "a", tiny_model(), cfg, progress=False, log=quiet, init_from=base_dir)
    fit(noisy, tmp_path / "b", tiny_model(), cfg, progress=False, log=quiet, init_from=base_dir)
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    for (name, p), q in zip(a.net.named_parameters(), b.net.parameters(), strict=True):
        np.testing.assert_allclose(p.detach(), q.detach(), atol=1e-6, err_msg=name)
    full = as_cu_host(pairs[240:340], tensor=lambda p: p.tensor, parts=("J", "D", "S"))
    fit(full, tmp_path / "c", tiny_model(), cfg, progress=False, log=quiet, init_from=base_dir)
    c = load_model(tmp_path / "c")
    assert not torch.allclose(c.net.embedding.weight, a.net.embedding.weight), "with D and S they are learnt"


def test_the_loss_mask(base_dir):
    net = load_model(base_dir).net
    true = torch.zeros(2, 3, 3)
    pred = torch.zeros(2, 3, 3)
    pred[0] = torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 0]])  # a pure D on record 0
    w = {"J": 1.0, "D": 1.0, "S": 1.0}
    assert float(loss_fn(net, pred, true, w)) > 0
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    assert float(loss_fn(net, pred, true, w, mask)) == 0.0
    assert part_mask([ExchangePair("h", "Fe", "Fe", [0, 0, 0], [1, 0, 0], np.eye(3),
                                   provenance={"tensor_parts": ["J"]}),
                      ExchangePair("h", "Fe", "Fe", [0, 0, 0], [1, 0, 0], np.eye(3))]).tolist() == [[1, 0, 0],
                                                                                                    [1, 1, 1]]


def test_fine_tuning_refuses_pairs_beyond_the_models_range(base_dir, engine_pairs, tmp_path):
    pairs, _ = engine_pairs
    far = as_cu_host(pairs[240:300])
    far[0].position_j = far[0].position_i + np.array([40.0, 0, 0])
    with pytest.raises(InputError, match="covers pair distances up to"):
        fit(far, tmp_path / "x", tiny_model(), tiny_training(epochs=1), progress=False, log=quiet, init_from=base_dir)
    assert not (tmp_path / "x").exists(), "nothing is left behind"


def test_the_command_fine_tunes(base_dir, engine_pairs, tmp_path):
    pairs, params = engine_pairs
    data = write_exchange(tmp_path / "cu.h5", as_cu_host(pairs[240:400]), params)
    res = CliRunner().invoke(main, ["train", "exchange", "--data", str(data), "-o", str(tmp_path / "m"),
                                    "--init-from", str(base_dir), "--epochs", "2", "--threads", "1",
                                    "--no-progress", "--json"])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["init_from"]["new_species"] == ["Cu"] and "Cu" in meta["species"]
    res = CliRunner().invoke(main, ["train", "exchange", "--data", str(data), "-o", str(tmp_path / "n"),
                                    "--init-from", str(tmp_path / "nothing"), "--epochs", "1"])
    assert res.exit_code != 0 and "--init-from" in res.output


def pair(env_species=(), env_positions=(), si="Fe", sj="Fe", bond=(1.0, 0, 0)):
    return ExchangePair("h", si, sj, [0, 0, 0], bond, np.eye(3), environment_species=list(env_species),
                        environment_positions=np.array(env_positions, float).reshape(-1, 3))


def test_moriyas_rules():
    assert len(allowed_dmi(pair())) == 0, "an isolated pair has an inversion centre"
    assert len(allowed_dmi(pair(si="Fe", sj="Co"))) == 0, "Fe–Co alone: two mirror planes hold the bond"
    # one atom beside i: only the mirror plane of the three atoms is left, D is normal to it
    np.testing.assert_allclose(np.abs(allowed_dmi(pair(["Sb"], [[0, 1, 0]]))), [[0, 0, 1]], atol=1e-12)
    # on the bisector: the mirror through the midpoint swaps i and j, D stays normal to the plane
    np.testing.assert_allclose(np.abs(allowed_dmi(pair(["Sb"], [[0.5, 1, 0]]))), [[0, 0, 1]], atol=1e-12)
    # out of every plane: nothing forces D
    assert len(allowed_dmi(pair(["Sb"], [[0.2, 0.7, 0.4]]))) == 3


def test_every_pair_of_bcc_fe_has_d_zero_by_symmetry(jij_archive, aiida_profile):
    from mlkkr.aiida.readers_results import read_jij_archive

    pairs, _ = read_jij_archive(jij_archive, env_cutoff=3.0)
    assert len(pairs) == 58 and all(len(allowed_dmi(p)) == 0 for p in pairs)
