"""The Python side of mlkkr's AiiDAlab apps: models (checked without a browser) and their widgets.

The app folders (``apps/<name>/``: AiiDAlab metadata, logo, start tile and a thin notebook) import
their app from here and Voila renders it inside the user's JupyterLab 4. Modules:

* :mod:`.registry` — app metadata and :func:`install_apps` (run by the hub at every server start);
* :mod:`.widgets`, :mod:`.loading` — fields with their error next to them, progress, lazy loading;
* :mod:`.home` — the home launcher (tiles);
* :mod:`.kkr` / :mod:`.kkr_view` — the KKR launcher (JuKKR through aiida-kkr, or the built-in engine);
* :mod:`.ml` / :mod:`.ml_view` — ML training (the training CalcJob, loss curve, parity, predictions);
* :mod:`.archive` / :mod:`.archive_view` — the shared FAIR store (catalog, import, publish);
* :mod:`.codes` — the ``mlkkr`` code in the code pickers.

This package may import every other part of mlkkr; nothing imports it except the hub's
:func:`install_apps` call.
"""

from __future__ import annotations


def install_apps(home, **kwargs):
    """Install the platform's apps into ``<home>/apps`` and JupyterLab's launcher (see :mod:`.registry`)."""
    from mlkkr.apps.registry import install_apps as _install

    return _install(home, **kwargs)
