"""Reproducible batches (record k is a function of (seed, k): any batching of a dataset gives the same
records as one run) and the on-disk cache of the host tables (bit-identical, validated, atomic, bounded)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlkkr.cli import main
from mlkkr.data import read_embeddings, read_exchange, read_parameters
from mlkkr.data.builders import EmbeddingSampler, ExchangeSampler, build_embeddings, build_exchange
from mlkkr.greens import Engine, KGrid, make_host
from mlkkr.greens import cache as cache_mod
from mlkkr.greens.scf import make_scf_params

SAMPLER = ExchangeSampler(cutoff=2.0, env_radius=1.0)


def run(args: list[str]):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.output


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_records(batched, whole) -> None:
    assert len(batched) == len(whole)
    for a, b in zip(batched, whole, strict=True):
        assert a.provenance == b.provenance  # the record id is a hash of this (and the sample index in it)
        assert a.tensor.tobytes() == b.tensor.tobytes()  # bit for bit
        assert (a.species_i, a.species_j, a.environment_species) == (b.species_i, b.species_j, b.environment_species)
        np.testing.assert_array_equal(a.environment_positions, b.environment_positions)
        np.testing.assert_array_equal(a.position_j, b.position_j)


@pytest.mark.parametrize("sizes", [[1, 7, 4, 11], [10, 10, 3], [23]])
def test_exchange_batches_of_any_size_are_the_one_run(sizes):
    eng = Engine(make_host("ti"), 12)
    whole, params = build_exchange(eng, 23, 5, SAMPLER)
    assert params["start"] == 0 and params["n"] == 23
    batched, start = [], 0
    for n in sizes:
        records, p = build_exchange(eng, n, 5, SAMPLER, start=start)
        assert p["start"] == start and p["n"] == n
        assert [r.provenance["sample_index"] for r in records] == list(range(start, start + n))
        batched += records
        start += n
    _same_records(batched, whole)
    assert len({json.dumps(r.provenance, sort_keys=True) for r in whole}) == 23  # distinct: ids are unique


def test_embedding_batches_are_the_one_run():
    eng = Engine(make_host("metal"), 12)
    sampler, scf = EmbeddingSampler(max_defects=2, box_radius=1.0), make_scf_params(radius=1.0)
    whole, _ = build_embeddings(eng, 3, 2, sampler, scf)
    batched = build_embeddings(eng, 1, 2, sampler, scf)[0] + build_embeddings(eng, 2, 2, sampler, scf, start=1)[0]
    for a, b in zip(batched, whole, strict=True):
        assert a.provenance == b.provenance and a.species == b.species
        assert a.delta_v.tobytes() == b.delta_v.tobytes() and a.delta_n.tobytes() == b.delta_n.tobytes()


def test_start_on_the_command_line(tmp_path):
    base = ["data", "exchange", "--seed", "5", "--kgrid", "12", "--cutoff", "2", "--env-radius", "1", "--no-progress"]
    assert run(base + ["--n", "12", "-o", str(tmp_path / "all.h5")])[0] == 0
    code, out = run(base + ["--n", "5", "-o", str(tmp_path / "a.h5"), "--json"])
    assert code == 0 and json.loads(out)["start"] == 0
    code, out = run(base + ["--n", "7", "--start", "5", "-o", str(tmp_path / "b.h5"), "--json"])
    assert code == 0 and json.loads(out)["start"] == 5
    batches = read_exchange(tmp_path / "a.h5") + read_exchange(tmp_path / "b.h5")
    _same_records(batches, read_exchange(tmp_path / "all.h5"))
    assert read_parameters(tmp_path / "b.h5")["start"] == 5
    pot = ["data", "potential", "--seed", "1", "--host", "metal", "--kgrid", "12", "--max-defects", "2",
           "--box-radius", "1", "--radius", "1", "--no-progress"]
    assert run(pot + ["--n", "2", "-o", str(tmp_path / "p.h5")])[0] == 0
    assert run(pot + ["--n", "1", "--start", "1", "-o", str(tmp_path / "p1.h5")])[0] == 0
    a, b = read_embeddings(tmp_path / "p.h5")[1], read_embeddings(tmp_path / "p1.h5")[0]
    assert a.provenance == b.provenance and a.delta_v.tobytes() == b.delta_v.tobytes()
    code, out = run(base + ["--n", "3", "--start", "-1", "-o", str(tmp_path / "bad.h5")])
    assert code == 2 and "Error: start" in out and not (tmp_path / "bad.h5").exists()


# -- the host-table cache -------------------------------------------------------------------------

def _engines():
    """Host and k-grid: the metal's adaptive grid (more than one k-grid size) and the TI's uniform one."""
    return [(make_host("metal"), KGrid(12, 24, 4.0)), (make_host("ti"), KGrid(12, 12, 0.0))]


def test_cached_tables_and_results_are_bit_identical(tmp_path):
    folder = tmp_path / "cache"
    for host, kgrid in _engines():
        plain = Engine(host, kgrid)
        first = Engine(host, kgrid, cache=folder)
        second = Engine(host, kgrid, cache=folder)
        assert plain.tables() and plain.cache_status == "off"
        first.tables()
        second.tables()
        assert (first.cache_status, second.cache_status) == ("miss", "hit")
        assert sorted(plain.tables()) == sorted(second.tables())
        if host.kind == "metal":
            assert len(plain.tables()) >= 2  # several k-grid sizes in one entry
        for n in plain.tables():
            assert plain.tables()[n].tobytes() == second.tables()[n].tobytes()
            assert plain.tables()[n].dtype == second.tables()[n].dtype
        a, _ = build_exchange(plain, 6, 3, SAMPLER)
        b, _ = build_exchange(second, 6, 3, SAMPLER)
        assert [r.tensor.tobytes() for r in a] == [r.tensor.tobytes() for r in b]
    assert len(list(folder.glob("g0-*.bin"))) == 2


def test_a_changed_setting_is_another_entry(tmp_path):
    host = make_host("ti")
    Engine(host, 12, cache=tmp_path).tables()
    other = Engine(make_host("ti", fermi_level=1.2), 12, cache=tmp_path)
    other.tables()
    assert other.cache_status == "miss" and len(list(tmp_path.glob("g0-*.bin"))) == 2
    key = Engine(host, 12).cache_key()
    assert key["engine_version"] and key["numerics"]["numpy"] == np.__version__


def _entry(folder: Path) -> Path:
    (path,) = folder.glob("g0-*.bin")
    return path


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "garbage", "other key", "empty"])
def test_a_damaged_entry_is_ignored_and_rewritten(tmp_path, damage):
    host, kgrid = make_host("ti"), KGrid(12, 12, 0.0)
    ref = Engine(host, kgrid).tables()
    Engine(host, kgrid, cache=tmp_path).tables()
    path = _entry(tmp_path)
    good = path.read_bytes()
    if damage == "flip a byte":
        data = bytearray(good)
        data[-1000] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncate":
        path.write_bytes(good[:len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(4096))
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # a whole, valid file written for other settings
        other = Engine(make_host("ti", fermi_level=1.2), kgrid)
        cache_mod.write_entry(path, other.cache_key(), other.tables())
    eng = Engine(host, kgrid, cache=tmp_path)
    got = eng.tables()
    assert eng.cache_status == "miss"  # not trusted: computed again ...
    assert all(got[n].tobytes() == ref[n].tobytes() for n in ref)
    assert path.read_bytes() == good  # ... and the entry written again, whole
    again = Engine(host, kgrid, cache=tmp_path)
    again.tables()
    assert again.cache_status == "hit"


def test_cache_off_by_switch_and_unusable_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MLKKR_NO_CACHE", "1")
    eng = Engine(make_host("ti"), 12, cache=tmp_path / "c")
    eng.tables()
    assert eng.cache_status == "off" and not (tmp_path / "c").exists()
    monkeypatch.delenv("MLKKR_NO_CACHE")
    (tmp_path / "file").write_text("not a folder")
    eng = Engine(make_host("ti"), 12, cache=tmp_path / "file" / "cache")
    eng.tables()
    assert eng.cache_status == "error"  # computed, not stored, no failure
    monkeypatch.setenv("MLKKR_CACHE_DIR", str(tmp_path / "env"))
    assert cache_mod.resolve_folder(True) == tmp_path / "env"
    monkeypatch.delenv("MLKKR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_mod.resolve_folder(True) == tmp_path / "xdg" / "mlkkr" / "greens"


def test_prune_keeps_the_folder_bounded(tmp_path):
    sizes = {}
    for k, ef in enumerate((1.0, 1.1, 1.2)):
        eng = Engine(make_host("ti", fermi_level=ef), 8, cache=tmp_path)
        eng.tables()
        path = cache_mod.entry_path(tmp_path, eng.cache_key())
        os.utime(path, (1000 + k, 1000 + k))  # oldest first
        sizes[path] = path.stat().st_size
    (tmp_path / ".g0-x.tmp").write_bytes(b"left by a killed writer")
    os.utime(tmp_path / ".g0-x.tmp", (1, 1))
    newest = max(sizes, key=lambda p: p.stat().st_mtime)
    removed = cache_mod.prune(tmp_path, keep=newest, limit=sizes[newest] + 1)
    assert sorted(p.name for p in tmp_path.glob("g0-*.bin")) == [newest.name]
    assert len(removed) == 3 and not (tmp_path / ".g0-x.tmp").exists()


def test_commands_cache_and_write_identical_files(tmp_path):
    """Same input, same file: without the cache, filling it and from it; concurrent jobs agree."""
    env = {**os.environ, "MLKKR_CACHE_DIR": str(tmp_path / "cache")}
    exe = [sys.executable, "-m", "mlkkr.cli"]
    args = ["data", "exchange", "--n", "6", "--seed", "4", "--kgrid", "10", "--cutoff", "1.5", "--env-radius", "1",
            "--no-progress", "--json"]

    def job(name: str, *extra: str) -> subprocess.Popen:
        return subprocess.Popen(exe + args + ["-o", str(tmp_path / name), *extra], env=env, stdout=subprocess.PIPE,
                                text=True)

    plain = job("plain.h5", "--no-cache")
    assert json.loads(plain.communicate()[0])["host_tables"]["cache"] == "off"
    jobs = [job(f"c{k}.h5") for k in range(3)]  # all start with an empty cache
    statuses = sorted(json.loads(p.communicate()[0])["host_tables"]["cache"] for p in jobs)
    assert all(p.returncode == 0 for p in jobs)
    assert statuses == ["hit", "hit", "miss"]  # one computed, the others waited for it and loaded
    hit = job("hit.h5")
    assert json.loads(hit.communicate()[0])["host_tables"]["cache"] == "hit"
    digests = {digest(tmp_path / n) for n in ("plain.h5", "c0.h5", "c1.h5", "c2.h5", "hit.h5")}
    assert len(digests) == 1
    assert not list((tmp_path / "cache").glob(".g0-*"))  # no temporary file left behind
