"""AiiDA data types of mlkkr: a dataset file and a trained model, with their summaries as attributes.

* :class:`DatasetData` (entry point ``mlkkr.dataset``): one HDF5 file of the mlkkr schema
  (``mlkkr.exchange`` or ``mlkkr.embedding``, see :mod:`mlkkr.data.h5io`), with queryable attributes:
  ``schema``, ``kind`` (``exchange`` | ``potential``: the model kind that learns it), ``n_records``,
  ``record_ids`` (one stable id per record, see :func:`record_ids`), ``parameters`` (the run parameters
  stored in the file) and ``sha256`` of the file.
* :class:`ModelData` (entry point ``mlkkr.model``): a trained model folder (``model.json`` + weights,
  as written by ``mlkkr train``), with ``kind``, ``mlkkr_version``, ``metrics``, ``data_sha256`` (the
  checksum of the file it was trained on) and ``n_records`` as attributes.

Both are plain aiida-core data (a ``SinglefileData`` and a ``FolderData``), so any AiiDA tool (archive
export, ``verdi node repo``) handles them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from aiida import orm

from mlkkr.errors import InputError

#: file schema -> model kind that learns from it
KIND_OF_SCHEMA = {"mlkkr.exchange": "exchange", "mlkkr.embedding": "potential", "mlkkr.radial": "potential-radial"}
#: file schema -> its HDF5 group
GROUP_OF_SCHEMA = {"mlkkr.exchange": "exchange", "mlkkr.embedding": "embedding", "mlkkr.radial": "radial"}
#: largest model.json (bytes) kept whole as an attribute; above it only its summary keys are kept
MODEL_JSON_ATTRIBUTE_LIMIT = 200_000




def _strs(values: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def read_summary(path: str | Path) -> dict[str, Any]:
    """Schema, kind, record count, run parameters and record ids of an mlkkr HDF5 dataset file.

    Raises :class:`InputError` (field ``dataset``) when the file is not an mlkkr dataset.
    """
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError("dataset", str(path), reason=f"cannot open as HDF5 ({exc})") from None
    with handle:
        schema = handle.attrs.get("schema")
        schema = schema.decode() if isinstance(schema, bytes) else schema
        if schema not in KIND_OF_SCHEMA:
            raise InputError("dataset", str(path), allowed=sorted(KIND_OF_SCHEMA),
                             reason=f"schema attribute is {schema!r}, not an mlkkr dataset")
        group = handle[GROUP_OF_SCHEMA[schema]]
        table = _strs(group["provenance"][()])
        index = group["provenance_index"][()]
        sample = group["sample_index"][()]
        parameters = json.loads(handle.attrs.get("parameters", "{}"))
        n = int(handle.attrs.get("n_records", len(index)))
    return {"schema": schema, "kind": KIND_OF_SCHEMA[schema], "n_records": n, "parameters": parameters,
            "record_ids": record_ids(KIND_OF_SCHEMA[schema], table, index, sample)}


def record_ids(kind: str, provenance_table: list[str], provenance_index: Any, sample_index: Any) -> list[str]:
    """Stable ids of the records of a dataset file.

    A record made by a sampler is fixed by its generating parameters (engine, host, sampler, seed:
    the file's provenance record) and its ``sample_index``; its id is
    ``<kind>:<first 16 hex of sha256(provenance JSON)>:<sample_index>``, so the same record computed
    twice (a restarted job) gets the same id and different records never share one. Records without
    a sample index (an engine run on one cluster, a reader of aiida-kkr results) use their row instead.
    """
    digests = [hashlib.sha256(p.encode()).hexdigest()[:16] for p in provenance_table]
    return [f"{kind}:{digests[int(p)]}:{int(s) if int(s) >= 0 else f'row{r}'}"
            for r, (p, s) in enumerate(zip(provenance_index, sample_index, strict=True))]


class DatasetData(orm.SinglefileData):
    """An mlkkr dataset (HDF5 file of exchange pairs or impurity embeddings) as an AiiDA node."""

    FILENAME = "dataset.h5"

    def __init__(self, file: str | Path, **kwargs: Any) -> None:
        """Wrap the HDF5 file at ``file`` (copied into the node's repository), checked and summarised."""
        from mlkkr.data.h5io import file_sha256

        summary = read_summary(file)
        super().__init__(os.fspath(file), filename=self.FILENAME, **kwargs)
        self.base.attributes.set_many({
            "schema": summary["schema"], "kind": summary["kind"], "n_records": summary["n_records"],
            "record_ids": summary["record_ids"], "parameters": summary["parameters"],
            "sha256": file_sha256(file),
        })

    @property
    def kind(self) -> str:
        """``exchange``, ``potential`` or ``potential-radial`` (all-electron KKRimp ΔV(r)): the model kind
        that learns from this dataset."""
        return self.base.attributes.get("kind")

    @property
    def n_records(self) -> int:
        return int(self.base.attributes.get("n_records"))

    @property
    def record_ids(self) -> list[str]:
        """One stable id per record, in file order (see :func:`record_ids`)."""
        return list(self.base.attributes.get("record_ids"))

    def export(self, path: str | Path) -> Path:
        """Write the HDF5 file to ``path`` (atomically); returns the path."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
        with os.fdopen(fd, "wb") as out, self.open(mode="rb") as src:
            while block := src.read(1 << 20):
                out.write(block)
        os.replace(tmp, path)
        return path

    def records(self) -> list[Any]:
        """The records (:class:`~mlkkr.data.ExchangePair`, :class:`~mlkkr.data.ImpurityEmbedding` or
        :class:`~mlkkr.data.RadialEmbedding`)."""
        from mlkkr.data.h5io import read_embeddings, read_exchange, read_radial

        reader = {"exchange": read_exchange, "potential": read_embeddings, "potential-radial": read_radial}[self.kind]
        with tempfile.TemporaryDirectory(prefix="mlkkr-dataset-") as tmp:
            return reader(self.export(Path(tmp) / self.FILENAME))


class ModelData(orm.FolderData):
    """A trained mlkkr model: the model folder (``model.json`` + weights) written by ``mlkkr train``."""

    def __init__(self, folder: str | Path, **kwargs: Any) -> None:
        """Wrap the model folder ``folder`` (copied into the node's repository)."""
        folder = Path(folder)
        meta_path = folder / "model.json"
        if not meta_path.is_file():
            raise InputError("model", str(folder), reason="not an mlkkr model folder (no model.json)")
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") not in ("exchange", "potential"):
            raise InputError("model.json:kind", meta.get("kind"), allowed=["exchange", "potential"])
        super().__init__(tree=os.fspath(folder), **kwargs)
        data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
        attrs: dict[str, Any] = {
            "kind": meta["kind"], "mlkkr_version": meta.get("mlkkr_version"), "metrics": meta.get("metrics", {}),
            "data_sha256": data.get("sha256"), "n_records": data.get("n_records"),
        }
        if meta_path.stat().st_size <= MODEL_JSON_ATTRIBUTE_LIMIT:
            attrs["model_json"] = meta
        self.base.attributes.set_many(attrs)

    @property
    def kind(self) -> str:
        return self.base.attributes.get("kind")

    @property
    def meta(self) -> dict[str, Any]:
        """The content of ``model.json``."""
        return json.loads(self.base.repository.get_object_content("model.json"))

    def export(self, path: str | Path) -> Path:
        """Write the model folder to ``path`` (created; must not hold another model); returns the path."""
        path = Path(path)
        if (path / "model.json").exists():
            raise InputError("path", str(path), reason="already holds a model folder")
        path.mkdir(parents=True, exist_ok=True)
        self.base.repository.copy_tree(path)
        return path
