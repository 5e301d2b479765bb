"""AiiDA side of mlkkr: profile bootstrap, data types, CalcJobs, WorkChains, aiida-kkr adapters.

Modules here adapt the AiiDA-free layers (``greens``, ``data``, ``models``, ``train``) to AiiDA.
"""
