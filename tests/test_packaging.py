"""Installing is quiet (issue 26): the licence is an SPDX expression, which the setuptools the
build requires understands (a ``{ text = ... }`` table makes it print a deprecation warning
several times before the useful lines)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


def test_the_licence_is_an_spdx_string_and_setuptools_is_new_enough_for_it() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    requirement = next(r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools"))
    match = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", requirement)
    assert match and int(match.group(1)) >= 77, requirement  # PEP 639 license expressions
