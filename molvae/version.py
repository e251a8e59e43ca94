"""The version of molvae, in a module of its own that imports nothing of molvae.

Why not in the package root alone: the root also serves the lazy API (:mod:`molvae.api`), which
reaches the whole library, so a library module that records the version (a prepared folder's
manifest) would import everything that imports it. Both read it from here.
"""

from __future__ import annotations


def _version() -> str:
    """The installed distribution's version; in a source checkout that was never installed,
    the one pyproject.toml declares."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("molvae")
    except PackageNotFoundError:
        import re
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) \
            if pyproject.is_file() else None
        return found.group(1) if found else "0+unknown"


__version__ = _version()
