"""Sub-command families of the ``mlkkr`` CLI (see :mod:`mlkkr.cli`)."""
