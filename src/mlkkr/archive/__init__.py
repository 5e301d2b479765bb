"""The FAIR shared store: publish, catalog, verify and import AiiDA archives with RO-Crate metadata.

A dataset, model or set of results leaves a user's AiiDA profile as an AiiDA archive of a Group,
written by aiida-core's own archive writer, and lands in the shared store as one RO-Crate per
published version::

    <store>/catalog.sqlite                       the catalog (SQLite; the source of truth)
    <store>/crates/<name>-<version>/             one RO-Crate, immutable once published
        <name>-<version>.aiida                   the archive (aiida-core's format)
        ro-crate-metadata.json                   title, authors, licence, checksums, node count ...
    <store>/.staging/                            uploads in progress (never listed, cleaned at start)

The store has exactly one writer: the archive service (:mod:`mlkkr.archive.service`), which the hub
runs as a JupyterHub service. User servers publish through its REST API with their hub token
(:mod:`mlkkr.archive.client`); they read the store directly (it is mounted read-only in containers) or
through the same API.

Modules: :mod:`.names` (validation of every user-given field), :mod:`.aiida_io` (export, inspection,
checksums and import with aiida-core), :mod:`.crate` (RO-Crate metadata), :mod:`.store` (catalog and
atomic writes), :mod:`.service` (the tornado service and its OpenAPI description), :mod:`.client`
(REST client and the read side used by ``mlkkr archive``), :mod:`.hubservice` (how the hub runs it).
Nothing here imports :mod:`mlkkr.hub` or :mod:`mlkkr.apps`.
"""

SERVICE_NAME = "archive"
