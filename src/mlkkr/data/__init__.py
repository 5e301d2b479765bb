"""mlkkr.data — dataset records, builders from the engine, and HDF5 IO (no AiiDA, no Jupyter).

Records: :class:`ImpurityEmbedding` (ΔV on a grid around defects, for ML-ES),
:class:`RadialEmbedding` (all-electron ΔV(r) of KKRimp on the radial mesh of each cluster atom, for
ML-ES on real data) and :class:`ExchangePair` (J_ij tensors, for ML-Exc). The schema of the HDF5 files is in
:mod:`mlkkr.data.h5io` and docs/engine.md.
"""

from __future__ import annotations

from mlkkr.data.h5io import (
    read_embeddings,
    read_exchange,
    read_parameters,
    read_radial,
    write_embeddings,
    write_exchange,
    write_radial,
)
from mlkkr.data.schema import ExchangePair, ImpurityEmbedding, RadialEmbedding, dmi_from_aiida_kkr, dmi_to_aiida_kkr

__all__ = [
    "ExchangePair", "ImpurityEmbedding", "RadialEmbedding", "dmi_from_aiida_kkr", "dmi_to_aiida_kkr",
    "read_embeddings", "read_exchange", "read_parameters", "read_radial", "write_embeddings", "write_exchange",
    "write_radial",
]
