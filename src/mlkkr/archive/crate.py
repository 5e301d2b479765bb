"""RO-Crate metadata of a published item, written and read with the ``rocrate`` library.

One crate per published version: the folder ``<name>-<version>/`` holds the archive and
``ro-crate-metadata.json`` (RO-Crate 1.2). The folder can be zipped and uploaded to Materials Cloud
Archive or Zenodo as it is. What the crate says:

- root Dataset: ``name`` (the title), ``description``, ``license`` (an SPDX URL), ``author`` (Persons,
  with their ORCID iD as ``@id`` when given), ``keywords``, ``datePublished``, ``version``,
  ``identifier`` (``<name>-<version>``), ``hasPart`` the archive;
- the archive File: ``contentSize`` (bytes), ``sha256``, ``encodingFormat``, and ``exifData``
  PropertyValues ``aiidaNodeCount``, ``aiidaExportVersion``, ``aiidaGroups`` (RO-Crate's way to
  attach property/value pairs to a file);
- a CreateAction (linked from the root by ``mentions``): ``agent`` the hub user who published,
  ``instrument`` the software and versions (aiida-core that wrote the archive, mlkkr, Python),
  ``result`` the archive, ``endTime``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from rocrate.model.contextentity import ContextEntity
from rocrate.model.person import Person
from rocrate.rocrate import ROCrate

from mlkkr import __version__ as MLKKR_VERSION
from mlkkr.errors import InputError

METADATA_FILE = "ro-crate-metadata.json"
CRATE_VERSION = "1.2"
ARCHIVE_MEDIA_TYPE = "application/zip"
AIIDA_ARCHIVE_DOC = "https://aiida.readthedocs.io/projects/aiida-core/en/stable/howto/share_data.html"


def _property(crate: ROCrate, ident: str, name: str, value: Any) -> ContextEntity:
    return crate.add(ContextEntity(crate, ident, properties={"@type": "PropertyValue", "name": name,
                                                             "value": value}))


def write_crate(folder: Path, entry: dict[str, Any], archive_file: str) -> Path:
    """Write ``folder/ro-crate-metadata.json`` describing ``folder/archive_file`` and ``entry``.

    ``entry`` is a catalog entry (see :class:`mlkkr.archive.store.Entry`): name, version, title,
    description, licence, authors, keywords, sha256, size, node_count, groups, export_version,
    aiida_version, published, owner.
    """
    crate = ROCrate(version=CRATE_VERSION)
    root = crate.root_dataset
    root["name"] = entry["title"]
    root["description"] = entry["description"] or entry["title"]
    root["identifier"] = f"{entry['name']}-{entry['version']}"
    root["version"] = str(entry["version"])
    root["datePublished"] = entry["published"]
    if entry["keywords"]:
        root["keywords"] = list(entry["keywords"])

    from mlkkr.archive.names import LICENCES

    licence = crate.add(ContextEntity(crate, LICENCES[entry["licence"]], properties={
        "@type": "CreativeWork", "name": entry["licence"], "identifier": entry["licence"]}))
    root["license"] = licence

    authors = []
    for index, author in enumerate(entry["authors"], start=1):
        ident = author.get("orcid") or f"#author-{index}"
        authors.append(crate.add(Person(crate, ident, properties={"name": author["name"]})))
    root["author"] = authors

    exif = [
        _property(crate, "#aiida-node-count", "aiidaNodeCount", entry["node_count"]),
        _property(crate, "#aiida-export-version", "aiidaExportVersion", entry["export_version"]),
        _property(crate, "#aiida-groups", "aiidaGroups",
                  json.dumps([{"label": g["label"], "uuid": g["uuid"]} for g in entry.get("groups", [])])),
    ]
    archive = crate.add_file(folder / archive_file, dest_path=archive_file, properties={
        "name": f"AiiDA archive {archive_file}",
        "description": f"AiiDA archive (format {entry['export_version']}) written by aiida-core "
                       f"{entry['aiida_version']}; import it with `verdi archive import` or "
                       "`mlkkr archive import`.",
        "encodingFormat": ARCHIVE_MEDIA_TYPE,
        "contentSize": str(entry["size"]),
        "sha256": entry["sha256"],
        "url": AIIDA_ARCHIVE_DOC,
    })
    archive["exifData"] = exif

    software = [
        crate.add(ContextEntity(crate, "https://www.aiida.net/", properties={
            "@type": "SoftwareApplication", "name": "aiida-core", "version": entry["aiida_version"]})),
        crate.add(ContextEntity(crate, "#mlkkr", properties={
            "@type": "SoftwareApplication", "name": "mlkkr", "version": MLKKR_VERSION})),
        crate.add(ContextEntity(crate, "https://www.python.org/", properties={
            "@type": "SoftwareApplication", "name": "Python", "version": platform.python_version()})),
    ]
    agent = crate.add(Person(crate, f"#hub-user-{entry['owner']}", properties={
        "name": entry["owner"], "description": "the platform (JupyterHub) user who published this item"}))
    action = crate.add(ContextEntity(crate, "#publish", properties={
        "@type": "CreateAction",
        "name": f"Publication of {entry['name']}-{entry['version']} to the mlkkr shared store",
        "endTime": entry["published"],
    }))
    action["agent"] = agent
    action["instrument"] = software
    action["result"] = archive
    root["mentions"] = [action]
    crate.metadata.write(folder)
    return folder / METADATA_FILE


def _ids(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def read_crate(folder: str | Path) -> dict[str, Any]:
    """The fields of a crate written by :func:`write_crate`, read back with the ``rocrate`` library."""
    folder = Path(folder)
    if not (folder / METADATA_FILE).is_file():
        raise InputError("crate", str(folder), reason=f"no {METADATA_FILE} in this folder")
    try:
        crate = ROCrate(folder)
    except Exception as exc:  # noqa: BLE001 - rocrate raises many kinds; any means unreadable
        raise InputError("crate", str(folder / METADATA_FILE), reason=f"not readable RO-Crate metadata "
                         f"({type(exc).__name__}: {exc})") from None
    root = crate.root_dataset
    licence = root.get("license")
    archives = [e for e in crate.data_entities if str(e.id).endswith(".aiida")]
    if len(archives) != 1:
        raise InputError("crate", str(folder), reason="the crate does not describe exactly one .aiida file")
    archive = archives[0]
    exif = {p.get("name"): p.get("value") for p in _ids(archive.get("exifData"))}
    action = next((e for e in _ids(root.get("mentions")) if e.type == "CreateAction"), None)
    software = {s.get("name"): s.get("version") for s in _ids(action.get("instrument"))} if action else {}
    authors = []
    for person in _ids(root.get("author")):
        orcid = person.id if str(person.id).startswith("https://orcid.org/") else None
        authors.append({"name": person.get("name"), "orcid": orcid})
    return {
        "title": root.get("name"),
        "description": root.get("description"),
        "identifier": root.get("identifier"),
        "version": root.get("version"),
        "datePublished": root.get("datePublished"),
        "keywords": _ids(root.get("keywords")),
        "licence": licence.get("identifier") if licence is not None and hasattr(licence, "get") else None,
        "licence_url": licence.id if licence is not None and hasattr(licence, "id") else licence,
        "authors": authors,
        "archive": {
            "file": archive.id,
            "sha256": archive.get("sha256"),
            "contentSize": int(archive.get("contentSize")),
            "encodingFormat": archive.get("encodingFormat"),
            "node_count": exif.get("aiidaNodeCount"),
            "export_version": exif.get("aiidaExportVersion"),
            "groups": json.loads(exif.get("aiidaGroups") or "[]"),
        },
        "publisher": action.get("agent").get("name") if action and action.get("agent") is not None else None,
        "software": software,
    }
