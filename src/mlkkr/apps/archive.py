"""The Data archive app's model: the shared store's catalog, import, and publishing a Group.

A thin layer over :mod:`mlkkr.archive.client` (the archive engineer's public API): reading goes through
:func:`~mlkkr.archive.client.open_source` (the store folder when this server can read it, else the
archive service), publishing always through the archive service with the server's hub token
(:func:`~mlkkr.archive.client.publish_group`). Every field is checked by
:class:`~mlkkr.archive.names.PublishRequest` before the (slow) export starts; its
:class:`~mlkkr.errors.InputError` names the form's field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlkkr.errors import InputError


def licences() -> list[str]:
    from mlkkr.archive.names import LICENCES

    return list(LICENCES)


def catalog() -> list[Any]:
    """Published entries of the shared store, newest first."""
    from mlkkr.archive.client import open_source

    entries = open_source().entries()
    return sorted(entries, key=lambda e: (e.published, e.name, e.version), reverse=True)


def entry_details(name: str, version: int) -> dict[str, Any]:
    """An entry and its RO-Crate metadata."""
    from mlkkr.archive.client import open_source

    source = open_source()
    entry = source.get(name, version)
    try:
        crate = source.crate(entry)
    except Exception:  # noqa: BLE001 - the catalog row is still worth showing
        crate = {}
    return {"entry": entry, "crate": crate}


def import_entry(name: str, version: int | None = None) -> dict[str, Any]:
    """Import a published item into this profile (checksum checked first); aiida's import report."""
    from mlkkr.archive.client import import_item, open_source

    return import_item(open_source(), name, version)


def groups() -> list[tuple[str, int]]:
    """(label, node count) of the profile's Groups, newest first (import groups included)."""
    from aiida import orm

    qb = orm.QueryBuilder().append(orm.Group, project=["label", "id"])
    out = []
    for label, pk in sorted(qb.all(), key=lambda r: -r[1]):
        out.append((label, orm.load_group(pk).count()))
    return out


@dataclass
class PublishForm:
    """The publish form's values; ``authors``/``keywords`` one per line or comma-separated."""

    group: str | None = None
    name: str = ""
    title: str = ""
    licence: str = "CC-BY-4.0"
    authors: str = ""
    description: str = ""
    keywords: str = ""
    version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def author_list(self) -> list[str]:
        return [a.strip() for a in self.authors.replace("\n", ";").split(";") if a.strip()]

    def keyword_list(self) -> list[str]:
        return [k.strip() for k in self.keywords.replace("\n", ",").split(",") if k.strip()]


def check_publish(form: PublishForm) -> None:
    """Every field checked as the service will check it (InputError names ``group``, ``name``, ``title`` …)."""
    from mlkkr.archive.aiida_io import load_group
    from mlkkr.archive.names import PublishRequest, slug

    if not form.group:
        raise InputError("group", form.group, reason="choose the Group to publish")
    group = load_group(form.group)
    if group.count() == 0:
        raise InputError("group", form.group, reason="the group is empty: nothing to publish")
    name = form.name.strip() or slug(group.label)
    try:
        PublishRequest.build(name=name, title=form.title.strip() or None, licence=form.licence,
                             authors=form.author_list(), sha256="0" * 64, version=form.version,
                             description=form.description.strip() or None, keywords=form.keyword_list())
    except InputError as exc:
        field_name = {"author": "authors", "keyword": "keywords"}.get(exc.field, exc.field)
        raise InputError(field_name, exc.value, allowed=exc.allowed, reason=exc.reason) from None


def publish(form: PublishForm) -> Any:
    """Check, export the Group with aiida-core and publish it through the archive service; the catalog entry."""
    from mlkkr.archive.client import client_from_env, publish_group
    from mlkkr.archive.names import slug

    check_publish(form)
    from mlkkr.archive.aiida_io import load_group

    group = load_group(form.group)
    return publish_group(form.group, client=client_from_env(), name=form.name.strip() or slug(group.label),
                         title=form.title.strip(), licence=form.licence, authors=form.author_list(),
                         description=form.description.strip() or None, keywords=form.keyword_list(),
                         version=form.version)


def entry_rows(entries: list[Any]) -> list[list[Any]]:
    """Catalog table rows: name, version, title, authors, licence, owner, nodes, size, published."""
    rows = []
    for e in entries:
        authors = ", ".join(a.get("name", "") for a in e.authors)
        rows.append([e.name, e.version, e.title, authors, e.licence, e.owner, e.node_count,
                     f"{e.size / 1024:.0f} KiB", e.published[:19].replace("T", " ")])
    return rows


CATALOG_HEADERS = ["name", "version", "title", "authors", "licence", "published by", "nodes", "size", "published"]
