"""JupyterHub side of mlkkr's local mode: hub configuration, the per-user spawner, provisioning.

Run with ``mlkkr hub``; :mod:`mlkkr.hub.jupyterhub_config` is the file handed to ``jupyterhub -f``.
"""
