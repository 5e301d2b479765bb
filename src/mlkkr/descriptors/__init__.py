"""Jacobi–Legendre descriptors of grid points (numpy only; no AiiDA, no Jupyter, no torch)."""

from __future__ import annotations

from mlkkr.descriptors.jl import JLDescriptor, JLParams, make_params, radial_basis

__all__ = ["JLDescriptor", "JLParams", "make_params", "radial_basis"]
