"""Fixtures of the archive tests: real AiiDA archives (good, truncated, altered) made once per session."""

from __future__ import annotations

import pytest
from archivelib import ArchiveFiles, alter_member, array_checksums, sha256

GROUP_LABEL = "fixture-set"


@pytest.fixture(scope="session")
def archive_files(tmp_path_factory, aiida_profile) -> ArchiveFiles:
    """A Group of Ints, ArrayData and a calcfunction's provenance, exported by aiida-core, plus a
    truncated and an altered copy."""
    import numpy as np
    from aiida import orm
    from aiida.engine import calcfunction
    from aiida.tools.archive import create_archive

    @calcfunction
    def scale(array: orm.ArrayData, factor: orm.Float) -> orm.ArrayData:
        out = orm.ArrayData()
        out.set_array("values", array.get_array("values") * factor.value)
        return out

    rng = np.random.default_rng(7)
    group = orm.Group(label=GROUP_LABEL).store()
    nodes = [orm.Int(i).store() for i in range(5)]
    arrays = []
    for i in range(2):
        array = orm.ArrayData()
        array.set_array("values", rng.normal(size=(20, 3)))
        array.set_array("index", np.arange(20, dtype=np.int32) + i)
        arrays.append(array.store())
    result = scale(arrays[0], orm.Float(2.0))
    group.add_nodes([*nodes, *arrays, result])

    folder = tmp_path_factory.mktemp("archives")
    good = folder / "good.aiida"
    create_archive([group], filename=good)
    truncated = folder / "truncated.aiida"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    altered = folder / "altered.aiida"
    alter_member(good, altered)

    from aiida.tools.archive.abstract import get_format

    with get_format().open(good, "r") as reader:
        backend = reader.get_backend()
        uuids = frozenset(orm.QueryBuilder(backend=backend).append(orm.Node, project="uuid").all(flat=True))
    array_nodes = [n for n in [*arrays, result]]
    return ArchiveFiles(good=good, truncated=truncated, altered=altered, sha256=sha256(good), uuids=uuids,
                        node_count=len(uuids), arrays=array_checksums(array_nodes))
