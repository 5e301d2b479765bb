"""The OpenAPI 3.1 description of the archive service's REST API (served at ``api/openapi.json``).

The component schemas are JSON Schema 2020-12 (as OpenAPI 3.1 uses); the tests validate the
service's real responses against them, so the description cannot drift from the code unnoticed.
"""

from __future__ import annotations

from typing import Any

from mlkkr import __version__
from mlkkr.archive.names import (
    AUTHORS_MAX,
    DESCRIPTION_MAX,
    KEYWORDS_MAX,
    LICENCES,
    MAX_VERSION,
    NAME_PATTERN,
    TITLE_MAX,
    TITLE_MIN,
)

_AUTHOR = {"type": "object", "required": ["name", "orcid"], "properties": {
    "name": {"type": "string"},
    "orcid": {"type": ["string", "null"], "description": "https://orcid.org/... or null"}}}

ENTRY = {
    "type": "object",
    "description": "A catalog entry: one published (or withdrawn) name+version.",
    "required": ["name", "version", "owner", "title", "licence", "authors", "sha256", "size", "node_count",
                 "export_version", "aiida_version", "published", "status", "archive_file", "folder"],
    "properties": {
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "version": {"type": "integer", "minimum": 1},
        "owner": {"type": "string", "description": "the hub user who published it"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "licence": {"type": "string", "enum": sorted(LICENCES)},
        "authors": {"type": "array", "items": _AUTHOR},
        "keywords": {"type": "array", "items": {"type": "string"}},
        "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        "size": {"type": "integer", "description": "bytes of the archive"},
        "node_count": {"type": "integer", "minimum": 1},
        "groups": {"type": "array", "items": {"type": "object", "properties": {
            "label": {"type": "string"}, "uuid": {"type": "string"}}}},
        "export_version": {"type": "string"},
        "aiida_version": {"type": "string"},
        "published": {"type": "string", "format": "date-time"},
        "status": {"type": "string", "enum": ["published", "withdrawn"]},
        "withdrawn_by": {"type": ["string", "null"]},
        "withdrawn_at": {"type": ["string", "null"]},
        "archive_file": {"type": "string"},
        "folder": {"type": "string"},
    },
}

CRATE = {
    "type": "object",
    "description": "The fields of the item's ro-crate-metadata.json, as read back with the rocrate library.",
    "required": ["title", "licence", "authors", "datePublished", "archive", "publisher", "software"],
    "properties": {
        "title": {"type": "string"}, "description": {"type": "string"}, "identifier": {"type": "string"},
        "version": {"type": "string"}, "datePublished": {"type": "string"},
        "keywords": {"type": "array", "items": {"type": "string"}},
        "licence": {"type": "string"}, "licence_url": {"type": "string"},
        "authors": {"type": "array", "items": _AUTHOR},
        "archive": {"type": "object", "required": ["file", "sha256", "contentSize", "node_count"]},
        "publisher": {"type": "string"},
        "software": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}

ERROR = {
    "type": "object",
    "required": ["status", "error"],
    "properties": {
        "status": {"type": "integer"},
        "error": {"type": "string", "description": "what is wrong, in one line"},
        "field": {"type": ["string", "null"], "description": "the bad field, for input errors"},
        "allowed": {"type": ["string", "null"], "description": "what the field allows"},
    },
}

SCHEMAS: dict[str, Any] = {
    "Entry": ENTRY,
    "EntryList": {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Entry"}}}},
    "Item": {"type": "object", "required": ["entry"], "properties": {
        "entry": {"$ref": "#/components/schemas/Entry"},
        "crate": {"oneOf": [{"$ref": "#/components/schemas/Crate"}, {"type": "null"}]}}},
    "Crate": CRATE,
    "User": {"type": "object", "required": ["name", "kind", "admin"], "properties": {
        "name": {"type": "string"}, "kind": {"type": "string"}, "admin": {"type": "boolean"}}},
    "Info": {"type": "object", "required": ["service", "version", "max_upload_bytes", "licences"],
             "properties": {"service": {"type": "string"}, "version": {"type": "string"},
                            "max_upload_bytes": {"type": "integer"},
                            "licences": {"type": "array", "items": {"type": "string"}},
                            "aiida_export_version": {"type": "string"}}},
    "Owner": {"type": "object", "required": ["name", "owner", "since"], "properties": {
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "owner": {"type": "string", "description": "who may publish the name's next versions"},
        "since": {"type": "string", "format": "date-time"},
        "transferred_by": {"type": ["string", "null"], "description": "the hub admin who gave it, if one did"},
        "previous_owner": {"type": "string", "description": "in the answer of a transfer"}}},
    "Error": ERROR,
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _json(description: str, schema: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


AUTH_ERRORS = {"401": _error("no or invalid hub token"),
               "403": _error("the token does not grant access:services!service=archive")}
NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "pattern": NAME_PATTERN},
        "description": "item name (never a path: '/', '..' and leading dots are refused)"}
VERSION = {"name": "version", "in": "path", "required": True,
           "schema": {"oneOf": [{"type": "integer", "minimum": 1}, {"const": "latest"}]}}


def openapi(api_url: str) -> dict[str, Any]:
    """The OpenAPI document; ``api_url`` is the service's API prefix (``/services/archive/api``)."""
    publish_params = [
        {"name": "title", "in": "query", "required": True,
         "schema": {"type": "string", "minLength": TITLE_MIN, "maxLength": TITLE_MAX}},
        {"name": "licence", "in": "query", "required": True, "schema": {"type": "string", "enum": sorted(LICENCES)},
         "description": "SPDX identifier (case-insensitive); 'license' is accepted too"},
        {"name": "author", "in": "query", "required": True, "style": "form", "explode": True,
         "schema": {"type": "array", "minItems": 1, "maxItems": AUTHORS_MAX, "items": {"type": "string"}},
         "description": "repeat for each author: 'Name' or 'Name <ORCID iD>'"},
        {"name": "sha256", "in": "query", "required": True,
         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
         "description": "SHA-256 of the body; a mismatch (truncated or altered upload) is refused"},
        {"name": "version", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
         "description": "omit to get the next free version (concurrent publishes get distinct ones)"},
        {"name": "description", "in": "query", "required": False,
         "schema": {"type": "string", "maxLength": DESCRIPTION_MAX}},
        {"name": "keyword", "in": "query", "required": False, "style": "form", "explode": True,
         "schema": {"type": "array", "maxItems": KEYWORDS_MAX, "items": {"type": "string"}}},
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mlkkr archive service",
            "version": __version__,
            "description": "The shared FAIR store of AiiDA archives with RO-Crate metadata. Authenticate with "
                           "a JupyterHub token (`Authorization: token <token>`) that has the scope "
                           "access:services!service=archive (a user server's JUPYTERHUB_API_TOKEN has it).",
        },
        "servers": [{"url": api_url.rstrip("/")}],
        "security": [{"hubToken": []}],
        "paths": {
            "/": {"get": {"summary": "Service information", "operationId": "info",
                          "responses": {"200": _json("service information", "Info"), **AUTH_ERRORS}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi", "security": [],
                                      "responses": {"200": {"description": "OpenAPI 3.1 document"}}}},
            "/user": {"get": {"summary": "Who the token belongs to", "operationId": "whoami",
                              "responses": {"200": _json("the hub user", "User"), **AUTH_ERRORS}}},
            "/items": {"get": {
                "summary": "List published items", "operationId": "list",
                "parameters": [
                    {"name": "name", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "withdrawn", "in": "query", "required": False,
                     "schema": {"type": "boolean"}, "description": "include withdrawn versions"}],
                "responses": {"200": _json("the catalog", "EntryList"), "400": _error("bad name"),
                              **AUTH_ERRORS}}},
            "/items/{name}": {
                "parameters": [NAME],
                "get": {"summary": "All published versions of one name", "operationId": "versions",
                        "responses": {"200": _json("versions", "EntryList"), "400": _error("bad name"),
                                      **AUTH_ERRORS}},
                "post": {
                    "summary": "Publish an AiiDA archive as the next (or the given) version of this name",
                    "operationId": "publish",
                    "parameters": publish_params,
                    "requestBody": {"required": True, "content": {"application/octet-stream": {
                        "schema": {"type": "string", "format": "binary"}}},
                        "description": "the archive, as written by aiida-core (verdi archive create)"},
                    "responses": {
                        "201": _json("published", "Entry"),
                        "400": _error("bad metadata, checksum mismatch, or not a readable archive of the current "
                                      "format (truncated, altered, too old)"),
                        "401": AUTH_ERRORS["401"],
                        "403": _error("the token does not grant access:services!service=archive, or the "
                                      "name belongs to another user (its first publisher)"),
                        "409": _error("this name+version exists (published versions are immutable)"),
                        "413": _error("larger than the store's upload limit"),
                    }},
            },
            "/items/{name}/owner": {
                "parameters": [NAME],
                "get": {"summary": "Who owns a name (its first publisher, or whom a hub admin gave it)",
                        "operationId": "owner",
                        "responses": {"200": _json("the owner", "Owner"), "404": _error("no such item"),
                                      **AUTH_ERRORS}},
                "post": {"summary": "Give a name to another user (hub admins only)", "operationId": "transfer",
                         "parameters": [{"name": "owner", "in": "query", "required": True,
                                         "schema": {"type": "string"}, "description": "the new owner"}],
                         "responses": {"200": _json("the new owner, with previous_owner", "Owner"),
                                       "400": _error("bad user name"), "401": AUTH_ERRORS["401"],
                                       "403": _error("not a hub admin"), "404": _error("no such item")}},
            },
            "/items/{name}/{version}": {
                "parameters": [NAME, VERSION],
                "get": {"summary": "One version: its catalog entry and RO-Crate metadata", "operationId": "show",
                        "responses": {"200": _json("the item", "Item"), "404": _error("no such item"),
                                      **AUTH_ERRORS}},
                "delete": {"summary": "Withdraw a version (its owner or a hub admin); the name+version stays taken",
                           "operationId": "withdraw",
                           "responses": {"200": _json("the withdrawn entry", "Entry"),
                                         "401": AUTH_ERRORS["401"],
                                         "403": _error("another user's item (only its publisher or a hub "
                                                       "admin withdraws it)"),
                                         "404": _error("no such item"), "410": _error("withdrawn already")}},
            },
            "/items/{name}/{version}/archive": {
                "parameters": [NAME, VERSION],
                "get": {"summary": "Download the archive", "operationId": "download",
                        "responses": {"200": {"description": "the .aiida file; X-Checksum-Sha256 header",
                                              "content": {"application/zip": {
                                                  "schema": {"type": "string", "format": "binary"}}}},
                                      **AUTH_ERRORS, "404": _error("no such item"), "410": _error("withdrawn")}},
            },
            "/items/{name}/{version}/ro-crate-metadata.json": {
                "parameters": [NAME, VERSION],
                "get": {"summary": "The RO-Crate metadata file as stored", "operationId": "crate",
                        "responses": {"200": {"description": "JSON-LD", "content": {"application/ld+json": {}}},
                                      **AUTH_ERRORS, "404": _error("no such item"), "410": _error("withdrawn")}},
            },
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"hubToken": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "'token <JupyterHub API token>'"}},
        },
    }
