"""``mlkkr archive``: publish a Group to the shared FAIR store; list, show, verify and import from it."""

from __future__ import annotations

import sys

import click

from mlkkr.commands._common import emit, handle_errors, json_option

_url = click.option("--url", envvar="MLKKR_ARCHIVE_URL",
                    help="The archive service [env MLKKR_ARCHIVE_URL; a user server has it].")
_TOKEN_FROM_FILE = "mlkkr.archive.token_from_file"


def _read_token_file(ctx, param, value):
    if value:
        from mlkkr.archive.client import read_token_file
        from mlkkr.errors import InputError

        try:
            ctx.meta[_TOKEN_FROM_FILE] = read_token_file(value)
        except InputError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


def _token(func):
    """``--token`` (visible in ``ps``) and ``--token-file``; without either, mlkkr.archive.client.resolve_token
    reads $MLKKR_ARCHIVE_TOKEN, the file in $MLKKR_ARCHIVE_TOKEN_FILE, then $JUPYTERHUB_API_TOKEN."""
    func = click.option("--token", callback=lambda ctx, param, value: value or ctx.meta.get(_TOKEN_FROM_FILE),
                        help="Hub token. Visible to every user of this machine (ps, /proc): prefer "
                             "$MLKKR_ARCHIVE_TOKEN or --token-file [default: $MLKKR_ARCHIVE_TOKEN, else the "
                             "file in $MLKKR_ARCHIVE_TOKEN_FILE, else $JUPYTERHUB_API_TOKEN].")(func)
    return click.option("--token-file", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                        callback=_read_token_file,
                        help="A file holding the hub token (its first line), e.g. mode 0600 "
                             "[env MLKKR_ARCHIVE_TOKEN_FILE].")(func)


_store = click.option("--store", type=click.Path(file_okay=False),
                      help="Read the store folder directly [default: $MLKKR_STORE if readable, else --url].")
_version = click.option("--version", "version", help="Version number [default: the latest].")


def _progress() -> bool:
    return sys.stderr.isatty()


def _load_profile() -> None:
    from aiida import load_profile
    from aiida.common.exceptions import ConfigurationError, ProfileConfigurationError

    from mlkkr.errors import ServiceError

    try:
        load_profile()
    except (ConfigurationError, ProfileConfigurationError) as exc:
        raise ServiceError(f"no AiiDA profile: {exc}. Run `mlkkr setup` first.") from None


def _source(store, url, token):
    from mlkkr.archive.client import open_source

    return open_source(store, url, token)


def _entry_line(e) -> str:
    return (f"{e.name:<28} {e.version:>4}  {e.published[:10]}  {e.owner:<12} {e.node_count:>8}  "
            f"{e.licence:<12} {e.title}")


@click.group("archive", context_settings={"help_option_names": ["-h", "--help"]})
def archive() -> None:
    """The shared FAIR store of AiiDA archives (RO-Crate metadata, checksums, a catalog).

    Publishing goes through the hub's archive service with your hub token; the store is read-only to
    user servers. A published name+version never changes.
    """


@archive.command("publish")
@click.argument("group")
@click.option("--title", help="Title of the dataset (required).")
@click.option("--licence", "--license", "licence", help="SPDX licence id, e.g. CC-BY-4.0 (required).")
@click.option("--author", "authors", multiple=True,
              help="An author, repeatable: 'Jane Doe' or 'Jane Doe <ORCID iD>' (at least one).")
@click.option("--description", help="A description (up to 4000 characters).")
@click.option("--keyword", "keywords", multiple=True, help="A keyword, repeatable.")
@click.option("--name", help="Item name in the store [default: made from the group's label].")
@_version
@click.option("--workdir", type=click.Path(file_okay=False, exists=True),
              help="Folder for the temporary archive [default: the system's temporary folder].")
@_url
@_token
@json_option
@handle_errors
def publish(group, title, licence, authors, description, keywords, name, version, workdir, url, token, as_json):
    """Publish GROUP (label, pk or UUID) of your profile as the next version of an item.

    The archive is written by aiida-core (as `verdi archive create -G`), checksummed, and uploaded to
    the archive service, which checks it, writes it with its RO-Crate metadata and records it.
    """
    from mlkkr.archive.client import client_from_env, publish_group

    _load_profile()
    client = client_from_env(url, token)
    entry = publish_group(group, client=client, title=title, licence=licence, authors=authors, name=name,
                          description=description, keywords=keywords, version=version, progress=_progress(),
                          workdir=workdir)
    emit(entry.as_dict(), as_json, lambda d: f"published {entry.ident}: {entry.node_count} nodes, "
         f"{entry.size} bytes, sha256 {entry.sha256}")


@archive.command("list")
@click.option("--name", help="Only the versions of this name.")
@click.option("--withdrawn", is_flag=True, help="Include withdrawn versions.")
@_store
@_url
@_token
@json_option
@handle_errors
def list_(name, withdrawn, store, url, token, as_json):
    """List the published items (every version)."""
    source = _source(store, url, token)
    entries = source.entries(name, include_withdrawn=withdrawn)

    def human(_):
        if not entries:
            return f"the store ({source.where}) is empty"
        head = f"{'name':<28} {'ver':>4}  {'published':<10}  {'owner':<12} {'nodes':>8}  {'licence':<12} title"
        return "\n".join([head] + [_entry_line(e) + ("  [withdrawn]" if e.status != "published" else "")
                                   for e in entries])

    emit([e.as_dict() for e in entries], as_json, human)


@archive.command("show")
@click.argument("name")
@_version
@_store
@_url
@_token
@json_option
@handle_errors
def show(name, version, store, url, token, as_json):
    """Show one item: its catalog entry and its RO-Crate metadata."""
    source = _source(store, url, token)
    entry = source.get(name, version)
    crate = source.crate(entry) if entry.status == "published" else None
    data = {"entry": entry.as_dict(), "crate": crate}

    def human(d):
        e = d["entry"]
        lines = [f"{e['name']}-{e['version']}: {e['title']}",
                 f"  status     {e['status']}" + (f" by {e['withdrawn_by']} on {e['withdrawn_at']}"
                                                  if e["status"] != "published" else ""),
                 f"  published  {e['published']} by {e['owner']}",
                 f"  licence    {e['licence']}",
                 "  authors    " + "; ".join(a["name"] + (f" <{a['orcid']}>" if a["orcid"] else "")
                                            for a in e["authors"]),
                 f"  keywords   {', '.join(e['keywords'])}",
                 f"  nodes      {e['node_count']} (AiiDA {e['aiida_version']}, format {e['export_version']})",
                 f"  groups     {', '.join(g['label'] for g in e['groups'])}",
                 f"  archive    {e['folder']}/{e['archive_file']} ({e['size']} bytes)",
                 f"  sha256     {e['sha256']}"]
        if e["description"]:
            lines.append(f"  description {e['description']}")
        return "\n".join(lines)

    emit(data, as_json, human)


@archive.command("verify")
@click.argument("item")
@_version
@click.option("--sha256", help="For a file: the checksum it must have.")
@_store
@_url
@_token
@json_option
@handle_errors
def verify(item, version, sha256, store, url, token, as_json):
    """Check ITEM (a name in the store, or a path to a .aiida file): checksum, aiida's reader, node count.

    Exits 1 when a check fails.
    """
    from mlkkr.archive.client import verify_file, verify_item

    if _is_file(item):
        report = verify_file(item, sha256, progress=_progress())
    else:
        report = verify_item(_source(store, url, token), item, version, progress=_progress())

    def human(r):
        what = r.get("file") or f"{r['name']}-{r['version']}"
        if r["ok"]:
            return f"{what}: OK ({r['node_count']} nodes, sha256 {r['sha256']})"
        return f"{what}: FAILED\n" + "\n".join(f"  - {p}" for p in r["problems"])

    emit(report, as_json, human)
    if not report["ok"]:
        sys.exit(1)


@archive.command("import")
@click.argument("item")
@_version
@click.option("--sha256", help="For a file: the checksum it must have (checked before importing).")
@_store
@_url
@_token
@json_option
@handle_errors
def import_(item, version, sha256, store, url, token, as_json):
    """Import ITEM (a name in the store, or a path to a .aiida file) into your profile.

    The checksum is checked first; aiida's importer then runs in one transaction, so a bad archive
    changes nothing.
    """
    from mlkkr.archive.client import import_file, import_item

    _load_profile()
    if _is_file(item):
        report = import_file(item, sha256, progress=_progress())
    else:
        report = import_item(_source(store, url, token), item, version, progress=_progress())
    emit(report, as_json, lambda r: f"imported {r.get('name', r.get('file'))}"
         f"{'-' + str(r['version']) if 'version' in r else ''}: {r['new_nodes']} new nodes "
         f"(profile now {r['nodes_after']}), group {r['import_group']}")


@archive.command("withdraw")
@click.argument("name")
@click.option("--version", "version", required=True, help="The version to withdraw.")
@_url
@_token
@json_option
@handle_errors
def withdraw(name, version, url, token, as_json):
    """Withdraw a version you published (hub admins: any). Its files go; the name+version stays taken."""
    from mlkkr.archive.client import client_from_env

    entry = client_from_env(url, token).withdraw(name, version)
    emit(entry.as_dict(), as_json, lambda d: f"withdrawn {entry.ident}")


@archive.command("transfer")
@click.argument("name")
@click.option("--to", "owner", required=True, help="The hub user who is to own the name.")
@_url
@_token
@json_option
@handle_errors
def transfer(name, owner, url, token, as_json):
    """Give a name to another user (hub admins only): they may then publish its next versions.

    A name belongs to its first publisher; the versions published already keep their publisher.
    """
    from mlkkr.archive.client import client_from_env

    result = client_from_env(url, token).transfer(name, owner)
    emit(result, as_json, lambda d: f"{d['name']}: owner {d['previous_owner']} -> {d['owner']}")


def _is_file(item: str) -> bool:
    return "/" in item or item.endswith(".aiida")
