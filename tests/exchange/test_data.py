"""Exchange datasets: environment keys, seeded splits by environment, validation, metrics, baseline."""

from __future__ import annotations

import numpy as np
import pytest
from helpers_exchange import rotation

from mlkkr.data.schema import ExchangePair
from mlkkr.errors import InputError
from mlkkr.models.baseline_exchange import DistanceSpeciesBaseline
from mlkkr.train.exchange_data import environment_key, split_by_environment, validate_pairs
from mlkkr.train.exchange_metrics import error_table

A = 4.38


def pair(si="Fe", sj="Mn", d=(1, 0, 0), env=(("Sb", (0, 1, 0)),), shift=(0, 0, 0), rot=None) -> ExchangePair:
    rot = np.eye(3) if rot is None else rot
    pi = rot @ np.asarray(shift, float) * A
    return ExchangePair(host="ti", species_i=si, species_j=sj, position_i=pi,
                        position_j=pi + rot @ np.asarray(d, float) * A, tensor=np.eye(3),
                        environment_species=[e[0] for e in env],
                        environment_positions=np.array([pi + rot @ np.asarray(e[1], float) * A for e in env]
                                                       ).reshape(-1, 3), cell=A * np.eye(3))


def test_environment_key_is_invariant_and_discriminating():
    base = environment_key(pair())
    assert environment_key(pair(shift=(3, -2, 5))) == base  # translation
    assert environment_key(pair(rot=rotation(1))) == base  # rotation
    swapped = ExchangePair(host="ti", species_i="Mn", species_j="Fe", position_i=np.array([A, 0, 0]),
                           position_j=np.zeros(3), tensor=np.eye(3), environment_species=["Sb"],
                           environment_positions=np.array([[0, A, 0]]), cell=A * np.eye(3))
    assert environment_key(swapped) == base  # i <-> j
    two = pair(env=(("Sb", (0, 1, 0)), ("Vac", (0, 0, 1))))
    two_reordered = pair(env=(("Vac", (0, 0, 1)), ("Sb", (0, 1, 0))))
    assert environment_key(two) == environment_key(two_reordered)  # order of the other defects
    assert environment_key(pair(env=(("Sb", (0, 2, 0)),))) != base  # another place
    assert environment_key(pair(env=(("Pb", (0, 1, 0)),))) != base  # another species
    assert environment_key(pair(sj="Co")) != base


def test_split_by_environment_is_seeded_disjoint_and_whole(engine_pairs):
    pairs, _ = engine_pairs
    a = split_by_environment(pairs, (0.8, 0.1, 0.1), seed=5)
    b = split_by_environment(pairs, (0.8, 0.1, 0.1), seed=5)
    c = split_by_environment(pairs, (0.8, 0.1, 0.1), seed=6)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(a[name], b[name])
    assert any(not np.array_equal(a[n], c[n]) for n in ("train", "val", "test"))
    allidx = np.concatenate([a["train"], a["val"], a["test"]])
    assert sorted(allidx.tolist()) == list(range(len(pairs)))
    assert abs(len(a["train"]) / len(pairs) - 0.8) < 0.05
    keys = {n: {environment_key(pairs[i]) for i in a[n]} for n in a}
    assert not keys["train"] & keys["test"] and not keys["train"] & keys["val"] and not keys["val"] & keys["test"]


def test_split_refuses_empty_splits_and_bad_fractions():
    pairs = [pair(), pair(shift=(1, 1, 1))]  # one environment twice
    with pytest.raises(InputError, match=r"split\.val: the val split is empty: 1 distinct environments"):
        split_by_environment(pairs, (0.8, 0.1, 0.1), 0)
    with pytest.raises(InputError, match="summing to 1"):
        split_by_environment(pairs, (0.8, 0.3, 0.1), 0)


def test_validate_pairs_names_the_bad_record():
    good = [pair(), pair(d=(2, 0, 0))]
    validate_pairs(good)
    bad = pair(d=(0, 2, 0))
    bad.tensor[1, 2] = np.nan
    with pytest.raises(InputError, match=r"data\[2\]\.tensor.*record 2 has a non-finite exchange tensor"):
        validate_pairs([*good, bad])
    bad = pair()
    bad.environment_positions[0, 0] = np.inf
    with pytest.raises(InputError, match=r"data\[0\]\.environment_positions"):
        validate_pairs([bad])
    with pytest.raises(InputError, match="no exchange pairs"):
        validate_pairs([])


def test_error_table_parts_and_units():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(50, 3, 3))
    table = error_table(true, true)
    assert table["J"]["mae"] == 0 and table["D"]["r2"] == 1 and table["S"]["n"] == 300
    shifted = true + np.eye(3) * 0.5  # only J changes
    table = error_table(shifted, true)
    assert table["J"]["mae"] == pytest.approx(0.5)
    assert table["D"]["mae"] == pytest.approx(0, abs=1e-12) and table["S"]["mae"] == pytest.approx(0, abs=1e-12)


def test_baseline_sees_distance_and_species_only(engine_pairs):
    pairs, _ = engine_pairs
    base = DistanceSpeciesBaseline(["V", "Cr", "Mn", "Fe", "Co", "Ni"], seed=0).fit(pairs[:150])
    pred = base.predict(pairs[300:])
    assert pred.shape == (100, 3, 3)
    # blind to directions and environment: two pairs of equal species and distance get one answer
    p = pairs[0]
    rotated = ExchangePair(host=p.host, species_i=p.species_i, species_j=p.species_j, position_i=p.position_i,
                           position_j=p.position_i + rotation(3) @ p.bond, tensor=p.tensor)
    np.testing.assert_allclose(base.predict([rotated]), base.predict([p]))
    again = DistanceSpeciesBaseline.from_arrays(base.to_arrays())
    np.testing.assert_allclose(again.predict(pairs[300:310]), pred[:10])
    with pytest.raises(InputError, match="unknown to the baseline"):
        base.predict([ExchangePair(host="ti", species_i="Xx", species_j="Fe", position_i=np.zeros(3),
                                   position_j=np.ones(3), tensor=np.eye(3))])
