"""Errors shared by every layer of mlkkr.

Every user-facing entry point validates its input and raises :class:`InputError` naming the bad
field and what is allowed. The CLI turns it into a one-line message and exit code 2 (click's usage
error convention); apps show it next to the field. This module imports nothing but the standard
library, so the innermost layers (``greens``, ``descriptors``, ``models``, ``data``) may use it.
"""

from __future__ import annotations

from collections.abc import Iterable


class MlkkrError(Exception):
    """Base class of mlkkr's own errors."""


class InputError(MlkkrError, ValueError):
    """Bad user input: names the field, the value given and what is allowed.

    >>> str(InputError("impurity.element", "Xx", allowed=["Fe", "Co"]))
    "impurity.element: 'Xx' is not allowed; allowed: Fe, Co"
    """

    def __init__(self, field: str, value: object = None, *, allowed: Iterable[object] | str | None = None,
                 reason: str | None = None) -> None:
        self.field = field
        self.value = value
        if allowed is not None and not isinstance(allowed, str):
            allowed = ", ".join(str(a) for a in allowed)
        self.allowed = allowed
        self.reason = reason
        head = f"{field}: {value!r} is not allowed" if reason is None else f"{field}: {reason}"
        if allowed:
            head += f"; allowed: {allowed}"
        super().__init__(head)


class ServiceError(MlkkrError, RuntimeError):
    """A service (database, broker, hub, proxy) is missing or down; the message says what to do."""
