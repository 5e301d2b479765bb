"""mlkkr.data — dataset records, builders from the engine, and HDF5 IO (no AiiDA, no Jupyter).

Records: :class:`ImpurityEmbedding` (ΔV on a grid around defects, for ML-ES) and
:class:`ExchangePair` (J_ij tensors, for ML-Exc). The schema of the HDF5 files is in
:mod:`mlkkr.data.h5io` and docs/engine.md.
"""

from __future__ import annotations

from mlkkr.data.h5io import read_embeddings, read_exchange, read_parameters, write_embeddings, write_exchange
from mlkkr.data.schema import ExchangePair, ImpurityEmbedding, dmi_from_aiida_kkr, dmi_to_aiida_kkr

__all__ = [
    "ExchangePair", "ImpurityEmbedding", "dmi_from_aiida_kkr", "dmi_to_aiida_kkr", "read_embeddings",
    "read_exchange", "read_parameters", "write_embeddings", "write_exchange",
]
