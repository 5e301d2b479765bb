"""Validation of every field a user gives when publishing or reading the store.

Each check raises :class:`~mlkkr.errors.InputError` naming the field and what is allowed. The same
functions run in the CLI (fail before a long export) and in the service (never trust the client).
Standard library only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from mlkkr.errors import InputError

#: Item names: lower-case letters, digits, '.', '_' and '-'; they become folder and file names, so no
#: separators, no leading dot, no '..'.
NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$"
_NAME = re.compile(NAME_PATTERN)
NAME_RULE = ("1-64 characters of a-z, 0-9, '.', '_' and '-', starting and ending with a letter or "
             "digit, without '..' and not ending in '.aiida'")
MAX_VERSION = 10**9

#: Licences the store accepts (SPDX identifiers) -> their canonical URL. Open licences that Materials
#: Cloud Archive and Zenodo accept for data and code.
LICENCES: dict[str, str] = {spdx: f"https://spdx.org/licenses/{spdx}" for spdx in (
    "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CC0-1.0",
    "ODbL-1.0", "ODC-By-1.0", "PDDL-1.0",
    "MIT", "BSD-2-Clause", "BSD-3-Clause", "Apache-2.0", "GPL-3.0-or-later", "LGPL-3.0-or-later",
)}

TITLE_MIN, TITLE_MAX = 3, 300
DESCRIPTION_MAX = 4000
AUTHORS_MAX, AUTHOR_MAX = 100, 200
KEYWORDS_MAX, KEYWORD_MAX = 32, 64
_ORCID = re.compile(r"^(?:https?://orcid\.org/)?(\d{4}-\d{4}-\d{4}-\d{3}[\dX])$")
_AUTHOR = re.compile(r"^(?P<name>[^<>]+?)\s*(?:<(?P<orcid>[^<>]+)>)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _clean_text(field_name: str, value: object, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise InputError(field_name, value, reason=f"must be text, got {type(value).__name__}")
    text = unicodedata.normalize("NFC", value).strip()
    for char in text:
        if unicodedata.category(char) == "Cc" and not (multiline and char in "\n\t"):
            raise InputError(field_name, value, reason="contains a control character")
    return text


def validate_name(value: object, field_name: str = "name") -> str:
    """An item name that is safe as a file and folder name (no path tricks)."""
    if not isinstance(value, str) or not value:
        raise InputError(field_name, value, reason="a name is required", allowed=NAME_RULE)
    if "/" in value or "\\" in value or value.startswith((".", "~")) or "\x00" in value:
        raise InputError(field_name, value, reason="path separators, leading dots and '~' are not "
                         "allowed in a name (it is not a path)", allowed=NAME_RULE)
    if not _NAME.fullmatch(value) or ".." in value or value.endswith(".aiida"):
        raise InputError(field_name, value, allowed=NAME_RULE)
    return value


USERNAME_RULE = "a hub user name: 1-255 characters, no spaces, control characters or '/'"


def validate_username(value: object, field_name: str = "owner") -> str:
    """A hub user name as the store records it (an owner): the hub's own names are all this."""
    if not isinstance(value, str) or not value:
        raise InputError(field_name, value, reason="a user name is required", allowed=USERNAME_RULE)
    if len(value) > 255 or "/" in value or any(c.isspace() or unicodedata.category(c) == "Cc" for c in value):
        raise InputError(field_name, value, allowed=USERNAME_RULE)
    return value


def slug(label: str) -> str:
    """A valid item name made from a group label (``"My KKR set #1"`` -> ``"my-kkr-set-1"``); may be ''."""
    text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"[^a-z0-9._-]+", "-", text)
    text = re.sub(r"\.{2,}", ".", text).strip("._-")[:64].strip("._-")
    if text.endswith(".aiida"):
        text = text[: -len(".aiida")].strip("._-")
    return text


def validate_version(value: object, field_name: str = "version", *, required: bool = False) -> int | None:
    """A version: a positive integer (``None`` when not given and not required: the store picks)."""
    if value is None or value == "":
        if required:
            raise InputError(field_name, value, reason="a version is required", allowed=f"1 to {MAX_VERSION}")
        return None
    if isinstance(value, bool):
        raise InputError(field_name, value, allowed=f"an integer from 1 to {MAX_VERSION}")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,10}", value.strip()):
            raise InputError(field_name, value, allowed=f"an integer from 1 to {MAX_VERSION}")
        value = int(value.strip())
    if not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise InputError(field_name, value, allowed=f"an integer from 1 to {MAX_VERSION}")
    return value


def validate_title(value: object) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError("title", value, reason="a title is required (--title)")
    text = " ".join(_clean_text("title", value).split())
    if not TITLE_MIN <= len(text) <= TITLE_MAX:
        raise InputError("title", value, reason=f"must be {TITLE_MIN} to {TITLE_MAX} characters long")
    return text


def validate_description(value: object) -> str:
    if value is None:
        return ""
    text = _clean_text("description", value, multiline=True)
    if len(text) > DESCRIPTION_MAX:
        raise InputError("description", f"{text[:40]}...", reason=f"is longer than {DESCRIPTION_MAX} characters")
    return text


def validate_licence(value: object) -> str:
    """An SPDX licence identifier from :data:`LICENCES` (case-insensitive); returns the canonical id."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError("licence", value, reason="a licence is required (--licence)", allowed=LICENCES)
    if isinstance(value, str):
        for spdx in LICENCES:
            if spdx.lower() == value.strip().lower():
                return spdx
    raise InputError("licence", value, allowed=LICENCES)


def orcid_checksum_ok(orcid: str) -> bool:
    """ISO 7064 MOD 11-2 check digit of an ORCID iD (``0000-0002-1825-0097``)."""
    digits = orcid.replace("-", "")
    total = 0
    for char in digits[:-1]:
        total = (total + int(char)) * 2
    check = (12 - total % 11) % 11
    return digits[-1] == ("X" if check == 10 else str(check))


@dataclass(frozen=True)
class Author:
    """A person: a name and optionally an ORCID iD (as ``https://orcid.org/...``)."""

    name: str
    orcid: str | None = None

    def __str__(self) -> str:
        return f"{self.name} <{self.orcid}>" if self.orcid else self.name


def parse_author(value: object) -> Author:
    """``"Jane Doe"`` or ``"Jane Doe <0000-0002-1825-0097>"`` (or the full ORCID URL in the brackets)."""
    if isinstance(value, Mapping):
        value = f"{value.get('name', '')} <{value['orcid']}>" if value.get("orcid") else value.get("name")
    text = _clean_text("author", value if value is not None else "")
    match = _AUTHOR.fullmatch(text)
    if not text or not match:
        raise InputError("author", value, reason="give a name, optionally followed by an ORCID iD in "
                         "angle brackets", allowed="'Jane Doe' or 'Jane Doe <0000-0002-1825-0097>'")
    name = " ".join(match["name"].split())
    if len(name) > AUTHOR_MAX:
        raise InputError("author", value, reason=f"a name is at most {AUTHOR_MAX} characters")
    orcid = None
    if match["orcid"] is not None:
        found = _ORCID.fullmatch(match["orcid"].strip())
        if not found or not orcid_checksum_ok(found[1]):
            raise InputError("author", value, reason=f"{match['orcid']!r} is not a valid ORCID iD "
                             "(16 digits in groups of four, with a correct check digit)")
        orcid = f"https://orcid.org/{found[1]}"
    return Author(name, orcid)


def validate_authors(values: Iterable[object] | None) -> list[Author]:
    authors = [parse_author(v) for v in (values or [])]
    if not authors:
        raise InputError("author", None, reason="at least one author is required (--author, repeatable)")
    if len(authors) > AUTHORS_MAX:
        raise InputError("author", len(authors), reason=f"at most {AUTHORS_MAX} authors")
    return authors


def validate_keywords(values: Iterable[object] | None) -> list[str]:
    keywords: list[str] = []
    for value in values or []:
        text = " ".join(_clean_text("keyword", value).split())
        if not 1 <= len(text) <= KEYWORD_MAX:
            raise InputError("keyword", value, reason=f"a keyword is 1 to {KEYWORD_MAX} characters")
        if text not in keywords:
            keywords.append(text)
    if len(keywords) > KEYWORDS_MAX:
        raise InputError("keyword", len(keywords), reason=f"at most {KEYWORDS_MAX} keywords")
    return keywords


def validate_sha256(value: object, field_name: str = "sha256") -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value.strip().lower()):
        raise InputError(field_name, value, reason="must be the 64 hexadecimal digits of a SHA-256 checksum")
    return value.strip().lower()


@dataclass(frozen=True)
class PublishRequest:
    """What a client asks to publish: validated, so the store can trust every field."""

    name: str
    title: str
    licence: str
    authors: tuple[Author, ...]
    sha256: str
    version: int | None = None
    description: str = ""
    keywords: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def build(cls, *, name: object, title: object, licence: object, authors: Iterable[object] | None,
              sha256: object, version: object = None, description: object = None,
              keywords: Iterable[object] | None = None) -> PublishRequest:
        return cls(
            name=validate_name(name),
            title=validate_title(title),
            licence=validate_licence(licence),
            authors=tuple(validate_authors(authors)),
            sha256=validate_sha256(sha256),
            version=validate_version(version),
            description=validate_description(description),
            keywords=tuple(validate_keywords(keywords)),
        )

    @classmethod
    def from_query(cls, name: str, query: Mapping[str, list[str]]) -> PublishRequest:
        """From URL query arguments (``author`` and ``keyword`` repeat); unknown keys are refused."""
        known = {"title", "licence", "license", "author", "keyword", "description", "sha256", "version"}
        for key in query:
            if key not in known:
                raise InputError(key, reason="unknown publish parameter", allowed=sorted(known - {"license"}))

        def one(key: str) -> str | None:
            values = query.get(key) or []
            if len(values) > 1:
                raise InputError(key, values, reason="given more than once")
            return values[0] if values else None

        return cls.build(name=name, title=one("title"), licence=one("licence") or one("license"),
                         authors=query.get("author"), sha256=one("sha256"), version=one("version"),
                         description=one("description"), keywords=query.get("keyword"))

    def to_query(self) -> list[tuple[str, str]]:
        pairs = [("title", self.title), ("licence", self.licence), ("sha256", self.sha256)]
        pairs += [("author", str(a)) for a in self.authors]
        pairs += [("keyword", k) for k in self.keywords]
        if self.description:
            pairs.append(("description", self.description))
        if self.version is not None:
            pairs.append(("version", str(self.version)))
        return pairs

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["authors"] = [asdict(a) for a in self.authors]
        data["keywords"] = list(self.keywords)
        return data
