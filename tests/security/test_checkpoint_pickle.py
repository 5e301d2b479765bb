"""A training checkpoint is code if torch unpickles it freely (``weights_only=False``): a model folder from the
shared store could run anything on --resume or in the ML app's progress poll (issue 15). Only tensors and
plain data load now; the attack file runs nothing and is refused naming the file."""

from __future__ import annotations

import pathlib

import pytest
import torch

from mlkkr.errors import InputError
from mlkkr.train.exchange import load_checkpoint


class _Touch:
    """Unpickling this calls Path.touch(marker): the stand-in for arbitrary code."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_checkpoint_that_carries_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "checkpoint.pt"
    torch.save({"settings": {}, "model": {}, "optimizer": {}, "scheduler": {}, "state": _Touch(marker)}, evil)
    with pytest.raises(InputError, match="checkpoint.*only tensors and plain data"):
        load_checkpoint(evil)
    assert not marker.exists()
    # what the trainer writes loads: tensors, numbers, strings, nested dicts and lists
    good = tmp_path / "good.pt"
    torch.save({"settings": {"a": [1, 2.5, "x"]}, "model": {"w": torch.ones(2)}, "optimizer": {"state": {}},
                "scheduler": {"best": float("inf")}, "state": {"history": [{"epoch": 1, "val_loss": 0.5}]}}, good)
    assert load_checkpoint(good)["state"]["history"][0]["epoch"] == 1
    # a damaged file and a foreign one are clear errors too
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:50])
    with pytest.raises(InputError, match="checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(InputError, match="keys missing"):
        load_checkpoint(tmp_path / "list.pt")
