"""container tests (a package, so that its conftest is not imported as a bare `conftest` module)."""
