"""Per-user PostgreSQL databases for the service mode: one role and one database per hub user.

The hub runs :func:`ensure_user_database` before it starts a user's server and hands the credentials
to the server in ``MLKKR_DB_*`` variables; :mod:`mlkkr.aiida.profile` then builds the profile on it.
Passwords are random, made once, and kept (mode 0600) in the hub's secrets folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

from mlkkr.errors import ServiceError


def database_name(username: str) -> str:
    """``mlkkr_<name>_<hash>``: a safe identifier, unique per hub user (names may differ only in '.')."""
    safe = re.sub(r"[^a-z0-9_]", "_", username.lower())[:40]
    return f"mlkkr_{safe}_{hashlib.sha256(username.encode()).hexdigest()[:6]}"


def _password(secrets_dir: Path, username: str) -> tuple[str, bool]:
    path = secrets_dir / f"db-{database_name(username)}.json"
    if path.exists():
        return json.loads(path.read_text())["password"], False
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    password = secrets.token_urlsafe(24)
    fd, tmp = tempfile.mkstemp(dir=secrets_dir, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        json.dump({"password": password}, handle)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return password, True


def ensure_user_database(pg: dict[str, Any], username: str, secrets_dir: Path) -> dict[str, Any]:
    """Create (or keep) the user's role and database; return the ``MLKKR_DB_*`` values.

    ``pg`` is the ``[postgres]`` settings section (host, port, admin_user, admin_password, admin_database).
    """
    import psycopg
    from psycopg import sql

    name = database_name(username)
    password, new_password = _password(secrets_dir, username)
    try:
        conn = psycopg.connect(host=pg["host"], port=pg["port"], user=pg["admin_user"],
                               password=pg["admin_password"] or None, dbname=pg["admin_database"],
                               autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        raise ServiceError(
            f"cannot reach PostgreSQL at {pg['host']}:{pg['port']} as {pg['admin_user']!r}: "
            f"{str(exc).strip()}. Start PostgreSQL or fix [postgres] in the hub's settings."
        ) from None
    with conn:
        role_exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        if not role_exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)))
        elif new_password:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)))
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL(
                "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            ).format(sql.Identifier(name), sql.Identifier(name)))
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
    return {"MLKKR_DB_HOST": pg["host"], "MLKKR_DB_PORT": str(pg["port"]), "MLKKR_DB_NAME": name,
            "MLKKR_DB_USER": name, "MLKKR_DB_PASSWORD": password}


def drop_user_database(pg: dict[str, Any], username: str, secrets_dir: Path) -> None:
    """Remove the user's database, role and stored password (used when an admin deletes a user)."""
    import psycopg
    from psycopg import sql

    name = database_name(username)
    with psycopg.connect(host=pg["host"], port=pg["port"], user=pg["admin_user"],
                         password=pg["admin_password"] or None, dbname=pg["admin_database"],
                         autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
    (secrets_dir / f"db-{name}.json").unlink(missing_ok=True)
