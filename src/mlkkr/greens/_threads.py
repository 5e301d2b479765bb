"""Run the engine's linear algebra with single-threaded BLAS/LAPACK.

The engine works on batches of many small matrices (16 × 16 … 500 × 500). A threaded BLAS spins up
its threads for every one of them, which on a busy machine costs 10–30× the work itself (measured:
26 inversions of 150 × 150 take 0.04 s CPU single-threaded, 1.3 s with two OpenBLAS threads on a
loaded 2-core machine). The limit applies only inside the decorated calls and is restored after.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None


def _get_controller() -> ThreadpoolController:
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller


def single_threaded[F: Callable[..., Any]](func: F) -> F:
    """Decorator: call ``func`` with BLAS limited to one thread."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _get_controller().limit(limits=1, user_api="blas"):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
