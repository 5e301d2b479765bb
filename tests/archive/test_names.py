"""Validation of every user-given field: each bad value is refused with the field named."""

from __future__ import annotations

import pytest

from mlkkr.archive.names import (
    LICENCES,
    PublishRequest,
    orcid_checksum_ok,
    parse_author,
    slug,
    validate_licence,
    validate_name,
    validate_version,
)
from mlkkr.errors import InputError

SHA = "ab" * 32


@pytest.mark.parametrize("name", ["../evil", "..", "/etc/passwd", "a/b", "a\\b", ".hidden", "~root", "", "A-Upper",
                                  "x" * 65, "with space", "a..b", "dataset.aiida", "-lead", "trail-", "nul\x00",
                                  "newline\n", "fe-jij\n"])
def test_names_that_are_paths_or_unsafe_are_refused(name):
    with pytest.raises(InputError) as info:
        validate_name(name)
    assert info.value.field == "name"
    assert "a-z" in str(info.value)  # says what is allowed


@pytest.mark.parametrize("name", ["fe-jij", "cu.zn_imp-2", "a", "x" * 64, "set-2026.1"])
def test_good_names(name):
    assert validate_name(name) == name


def test_slug_makes_names_from_group_labels():
    assert slug("My KKR set #1") == "my-kkr-set-1"
    assert slug("../../etc") == "etc"
    assert slug("Übung.aiida") == "ubung"
    assert slug("!!!") == ""
    for label in ["a/b/c", "..", "x" * 200, "Fe@Cu (bcc)"]:
        made = slug(label)
        assert made == "" or validate_name(made) == made


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "abc", True, 0, 10**10, "1e3"])
def test_bad_versions(value):
    with pytest.raises(InputError) as info:
        validate_version(value)
    assert info.value.field == "version"


def test_versions():
    assert validate_version(None) is None
    assert validate_version("7") == 7
    assert validate_version(3) == 3
    with pytest.raises(InputError):
        validate_version(None, required=True)


def test_licence_is_an_spdx_id_from_the_list():
    assert validate_licence("cc-by-4.0") == "CC-BY-4.0"
    for bad in [None, "", "GPL", "proprietary"]:
        with pytest.raises(InputError) as info:
            validate_licence(bad)
        assert info.value.field == "licence"
        assert "CC-BY-4.0" in str(info.value)
    assert all(url.startswith("https://spdx.org/licenses/") for url in LICENCES.values())


def test_authors_and_orcid():
    assert parse_author("Jane Doe").orcid is None
    author = parse_author("Josiah  Carberry <0000-0002-1825-0097>")
    assert (author.name, author.orcid) == ("Josiah Carberry", "https://orcid.org/0000-0002-1825-0097")
    assert parse_author("J. C. <https://orcid.org/0000-0002-1825-0097>").orcid.endswith("0097")
    assert orcid_checksum_ok("0000-0001-5109-3700") and not orcid_checksum_ok("0000-0001-5109-3701")
    for bad in ["", "<0000-0002-1825-0097>", "Jane <0000-0002-1825-0098>", "Jane <orcid>", "Jane\x07"]:
        with pytest.raises(InputError) as info:
            parse_author(bad)
        assert info.value.field == "author"


def _build(**overrides):
    fields = dict(name="ds", title="A dataset", licence="MIT", authors=["Jane"], sha256=SHA)
    fields.update(overrides)
    return PublishRequest.build(**fields)


@pytest.mark.parametrize(("field", "value"), [
    ("title", None), ("title", "  "), ("title", "ab"), ("title", "x" * 301), ("licence", None),
    ("authors", []), ("sha256", "xyz"), ("sha256", None), ("name", "../x"), ("version", "latest"),
    ("description", "d" * 4001), ("keywords", ["k" * 65]),
])
def test_publish_request_refuses_missing_or_bad_fields(field, value):
    with pytest.raises(InputError) as info:
        _build(**{field: value})
    expected = {"authors": "author", "keywords": "keyword"}.get(field, field)
    assert info.value.field == expected


def test_publish_request_round_trips_through_a_query_string():
    request = _build(authors=["Jane <0000-0002-1825-0097>", "Bob"], keywords=["kkr", "Fe"], version=3,
                     description="line one\nline two")
    query: dict[str, list[str]] = {}
    for key, value in request.to_query():
        query.setdefault(key, []).append(value)
    assert PublishRequest.from_query("ds", query) == request
    with pytest.raises(InputError) as info:
        PublishRequest.from_query("ds", {**query, "owner": ["mallory"]})
    assert info.value.field == "owner"
    with pytest.raises(InputError) as info:
        PublishRequest.from_query("ds", {**query, "title": ["a title", "another"]})
    assert info.value.field == "title"
