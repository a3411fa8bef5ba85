"""Inputs are checked before anything heavy starts (issue 26)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vdsr_deploy.errors import InvalidInputError
from vdsr_deploy.job.inputs import check_inputs_exist


def test_inputs_that_name_nothing_are_refused_by_name(tmp_path: Path) -> None:
    missing, glob = str(tmp_path / "nope.png"), str(tmp_path / "none" / "*.png")
    with pytest.raises(InvalidInputError) as caught:
        check_inputs_exist([missing, glob])
    assert str(caught.value) == f"{missing}, {glob}: no such file, folder, or matching glob"


def test_one_existing_input_is_enough_and_uris_are_left_to_the_job(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    check_inputs_exist([str(tmp_path / "nope.png"), str(tmp_path / "a.png")])  # the job reports nope.png
    check_inputs_exist([str(tmp_path / "*.png")])  # a glob that matches
    check_inputs_exist([str(tmp_path)])  # a folder (not walked here)
    check_inputs_exist(["s3://bucket/scans"])
