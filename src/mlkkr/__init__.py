"""mlkkr: KKR Green-function simulations and machine learning on AiiDA, served by JupyterHub."""

__version__ = "0.1.0"
