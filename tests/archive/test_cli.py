"""``mlkkr archive`` and the import/verify functions in this process's throw-away AiiDA profile."""

from __future__ import annotations

import json

import pytest
from archivelib import array_checksums
from click.testing import CliRunner

from mlkkr.archive.aiida_io import import_checked, inspect_archive
from mlkkr.archive.names import PublishRequest
from mlkkr.archive.store import Store
from mlkkr.cli import main
from mlkkr.errors import InputError


def node_count() -> int:
    from aiida import orm

    return orm.QueryBuilder().append(orm.Node).count()


def invoke(*args: str):
    return CliRunner().invoke(main, ["archive", *args], catch_exceptions=False)


def test_import_checks_the_archive_first_and_changes_nothing_on_failure(aiida_profile_clean, archive_files):
    from aiida import orm

    assert node_count() == 0
    for path, expected, words in [
        (archive_files.good, "0" * 64, "checksum mismatch"),
        (archive_files.truncated, None, "nothing was imported"),
        (archive_files.altered, None, "nothing was imported"),
    ]:
        with pytest.raises(InputError) as info:
            import_checked(path, expected)
        assert info.value.field == "archive" and words in str(info.value)
        assert node_count() == 0

    report = import_checked(archive_files.good, archive_files.sha256)
    assert (report["nodes_before"], report["new_nodes"]) == (0, archive_files.node_count)
    uuids = set(orm.QueryBuilder().append(orm.Node, project="uuid").all(flat=True))
    assert uuids == archive_files.uuids
    arrays = orm.QueryBuilder().append(orm.ArrayData).all(flat=True)
    assert array_checksums(arrays) == archive_files.arrays
    assert orm.load_group("fixture-set").count() == 8
    again = import_checked(archive_files.good, archive_files.sha256)
    assert again["new_nodes"] == 0


def test_inspect_reports_what_aiida_reads(archive_files):
    info = inspect_archive(archive_files.good)
    assert info.node_count == archive_files.node_count
    assert info.groups[0]["label"] == "fixture-set"
    assert info.node_types["data.core.array.ArrayData."] == 3
    assert info.export_version == "main_0001"


@pytest.mark.parametrize(("args", "field"), [
    (["--licence", "MIT", "--author", "A"], "title"),
    (["--title", "A title", "--author", "A"], "licence"),
    (["--title", "A title", "--licence", "MIT"], "author"),
    (["--title", "A title", "--licence", "MIT", "--author", "A", "--name", "../etc"], "name"),
    (["--title", "A title", "--licence", "MIT", "--author", "A", "--version", "0"], "version"),
])
def test_publish_refuses_bad_metadata_before_exporting_or_connecting(aiida_profile, archive_files, args, field):
    # the URL answers nothing: the metadata is refused before any connection
    result = invoke("publish", "fixture-set", "--url", "http://127.0.0.1:9/services/archive/", "--token", "t", *args)
    assert result.exit_code == 2, result.output
    assert f"Error: {field}:" in result.output


def test_publish_names_a_missing_group_and_an_unreachable_service(aiida_profile, archive_files):
    result = invoke("publish", "no-such-group", "--title", "A title", "--licence", "MIT", "--author", "A",
                    "--url", "http://127.0.0.1:9/services/archive/")
    assert result.exit_code == 2 and "Error: group:" in result.output
    result = invoke("publish", "fixture-set", "--title", "A title", "--licence", "MIT", "--author", "A",
                    "--url", "http://127.0.0.1:9/services/archive/", "--token", "t")
    assert result.exit_code == 3 and "not reachable" in result.output
    result = invoke("publish", "fixture-set", "--title", "A title", "--licence", "MIT", "--author", "A", "--url", "")
    assert result.exit_code == 2 and "MLKKR_ARCHIVE_URL" in result.output


def test_list_show_verify_from_a_store_folder(tmp_path, archive_files):
    store = Store(tmp_path / "store")
    result = invoke("list", "--store", str(store.root), "--json")
    assert result.exit_code == 0 and json.loads(result.output) == []
    request = PublishRequest.build(name="fe-set", title="Fe set", licence="MIT", authors=["A"],
                                   sha256=archive_files.sha256)
    store.publish(archive_files.good, request, "alice")

    listed = json.loads(invoke("list", "--store", str(store.root), "--json").output)
    assert [(e["name"], e["version"], e["owner"]) for e in listed] == [("fe-set", 1, "alice")]
    human = invoke("list", "--store", str(store.root)).output
    assert "fe-set" in human and "Fe set" in human
    shown = json.loads(invoke("show", "fe-set", "--store", str(store.root), "--json").output)
    assert shown["crate"]["title"] == "Fe set" and shown["entry"]["sha256"] == archive_files.sha256
    missing = invoke("show", "nothing", "--store", str(store.root))
    assert missing.exit_code == 2 and "no such item" in missing.output
    wrong = invoke("show", "fe-set", "--version", "5", "--store", str(store.root))
    assert wrong.exit_code == 2 and "allowed: 1" in wrong.output

    verified = json.loads(invoke("verify", "fe-set", "--store", str(store.root), "--json").output)
    assert verified["ok"] and verified["node_count"] == archive_files.node_count
    good = invoke("verify", str(archive_files.good), "--sha256", archive_files.sha256)
    assert good.exit_code == 0 and "OK" in good.output
    bad = invoke("verify", str(archive_files.altered))
    assert bad.exit_code == 1 and "FAILED" in bad.output and "altered" in bad.output
    mismatch = invoke("verify", str(archive_files.good), "--sha256", "0" * 64)
    assert mismatch.exit_code == 1 and "sha256: expected" in mismatch.output


def test_import_of_a_bad_file_exits_2_and_names_the_problem(aiida_profile, archive_files):
    before = node_count()
    result = invoke("import", str(archive_files.truncated))
    assert result.exit_code == 2, result.output
    assert "Error: archive:" in result.output and "nothing was imported" in result.output
    assert node_count() == before


@pytest.mark.parametrize("kind", ["text", "empty", "truncated", "altered", "zip-not-aiida", "directory-name"])
def test_data_from_archive_refuses_a_corrupt_or_foreign_file_clearly(aiida_profile, archive_files, tmp_path, kind):
    """``mlkkr data from-archive`` on what is not a readable AiiDA archive: exit 2 and one line naming
    ARCHIVE, never a traceback; the user's profile is untouched and no output file is written."""
    import zipfile

    path = {"truncated": archive_files.truncated, "altered": archive_files.altered}.get(kind, tmp_path / "x.aiida")
    if kind == "text":
        path.write_text("this is a lab notebook, not an archive\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "zip-not-aiida":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("metadata.json", '{"no": "version"}')
    elif kind == "directory-name":
        path = tmp_path / "no-such.aiida"
    out = tmp_path / "out.h5"
    before = node_count()
    result = CliRunner().invoke(main, ["data", "from-archive", str(path), "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Error: ARCHIVE:" in result.output and "Traceback" not in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists() and node_count() == before
