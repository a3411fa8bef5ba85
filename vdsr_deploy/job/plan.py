"""Planning a job before any pixel is read: every input file gets its output path
(:func:`plan_job`: the input tree kept under the output folder, colliding names renamed, no
output replacing an input), then the resume manifest decides what is done again
(:func:`plan_resume`: complete outputs and files not made by us are skipped, with reasons)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vdsr_deploy.errors import ConfigError, ImageReadError
from vdsr_deploy.imageio import FORMAT_SUFFIX, IMAGE_SUFFIXES, output_format, stale_temporaries
from vdsr_deploy.job.config import JobConfig, WorkItem
from vdsr_deploy.job.inputs import expand_spec
from vdsr_deploy.job.manifest import Manifest, settings_key
from vdsr_deploy.job.remote import RemotePath, location
from vdsr_deploy.job.report import Failure, Note, Skipped

# (input order, source, target)
_Planned = tuple[int, Path, Path]


def is_single_file_output(output: Path) -> bool:
    """``output`` names one image file (an image suffix and not an existing folder)."""
    return output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir()


def manifest_folder(config: JobConfig) -> Path:
    """The folder whose resume manifest and job lock the job uses."""
    return config.output.parent if is_single_file_output(config.output) else config.output


def plan_outputs(config: JobConfig) -> tuple[list[WorkItem], list[Failure]]:
    """Map every input to an output path; missing inputs and self-overwrites are failures.
    (:func:`plan_job` also returns the entries skipped while walking folders.)"""
    items, failures, _ = plan_job(config)
    return items, failures


def plan_job(config: JobConfig) -> tuple[list[WorkItem], list[Failure], list[Skipped]]:
    """Map every input to an output path; missing inputs and self-overwrites are failures,
    image-named folder entries that are not regular files are skipped (with the reason).

    One input file and an output with an image suffix: that file. Otherwise the output is a
    folder and the input tree is kept under it: relative to the input folder when there is
    one root, else relative to the common ancestor of all inputs (``a/x.png`` and
    ``b/x.png`` -> ``out/a/x.png``, ``out/b/x.png``). Names that would still collide (``x.jpg``
    and ``x.png`` written as PNG) get the source suffix added (``x-jpg.png``). Files inside the
    output folder are never inputs, and no output may replace an input.
    """
    single_file = is_single_file_output(config.output)
    exclude = None if single_file else config.output.resolve()
    found, failures, walk_skipped = _find_inputs(config, exclude)
    if not found and not failures:
        raise ImageReadError(_nothing_found(config, walk_skipped))
    if single_file and len(found) > 1:
        raise ConfigError(
            f"--output {config.output} is a file name but {len(found)} images were found; "
            "give a folder"
        )
    inputs = {p.resolve() for p, _ in found}
    items, refused = _place(_natural_targets(config, found, single_file), inputs, single_file)
    return items, failures + refused, walk_skipped


def _find_inputs(
    config: JobConfig, exclude: Path | None
) -> tuple[list[tuple[Path, Path]], list[Failure], list[Skipped]]:
    """Every input file once, with its root: ``(file, root)`` in input order."""
    failures: list[Failure] = []
    walk_skipped: list[Skipped] = []
    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for spec in config.inputs:
        expanded = expand_spec(spec, config.recursive, exclude)
        if expanded is None:
            failures.append(Failure(location(spec), "no such file, folder, or matching glob"))
            continue
        walk_skipped.extend(Skipped(entry, None, reason) for entry, reason in expanded.skipped)
        for file in expanded.files:
            try:
                key = file.resolve()
            except (RuntimeError, OSError) as error:  # a link loop (RuntimeError before 3.13)
                failures.append(Failure(file, f"link that cannot be followed ({_why(error)})"))
                continue
            if key not in seen:
                seen.add(key)
                found.append((file, expanded.root))
    return found, failures, walk_skipped


def _why(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return "symbolic link loop" if "loop" in str(error).lower() else str(error)


def _nothing_found(config: JobConfig, skipped: list[Skipped]) -> str:
    names = ", ".join(config.inputs)
    shown = "; ".join(f"{entry.source}: {entry.reason}" for entry in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    passed_over = f"; passed over: {shown}{more}" if skipped else ""
    return (
        f"no image found in {names} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}"
        f"{' in subfolders too' if config.recursive else ''}){passed_over}"
    )


def _natural_targets(
    config: JobConfig, found: list[tuple[Path, Path]], single_file: bool
) -> list[_Planned]:
    """Each file's output path before collisions are settled."""
    roots = sorted({_absolute(root) for _, root in found})
    base = _common_root(roots)
    planned: list[_Planned] = []
    for order, (source, _root) in enumerate(found):
        if single_file:
            planned.append((order, source, config.output))
            continue
        fmt = output_format(source, config.fmt or _default_format(source))
        relative = _absolute(source).relative_to(base)
        planned.append((order, source, config.output / relative.with_suffix(FORMAT_SUFFIX[fmt])))
    return planned


def _place(
    planned: list[_Planned], inputs: set[Path], single_file: bool
) -> tuple[list[WorkItem], list[Failure]]:
    """Settle collisions (the later name gets the source suffix added) and refuse outputs
    that would replace an input; items come back in input order."""
    # A file whose suffix already matches its output keeps the plain name (x.png -> x.png).
    planned = sorted(planned, key=lambda p: (p[2].suffix.lower() != p[1].suffix.lower(), p[0]))
    failures: list[Failure] = []
    placed: list[tuple[int, WorkItem]] = []
    taken: dict[Path, Path] = {}
    for order, source, target in planned:
        note = None
        if target.resolve() in taken and not single_file:
            target, note = _renamed(source, target, taken, inputs)
        resolved = target.resolve()
        if resolved in inputs:
            failures.append(
                Failure(source, f"output {target} would overwrite an input; choose another output")
            )
            continue
        taken[resolved] = source
        placed.append((order, WorkItem(source, target, note)))
    return [item for _, item in sorted(placed, key=lambda p: p[0])], failures


def _renamed(
    source: Path, target: Path, taken: dict[Path, Path], inputs: set[Path]
) -> tuple[Path, str]:
    """A free name for ``source``'s output, whose natural ``target`` is taken, and the note."""
    stem = f"{target.stem}-{source.suffix.lstrip('.').lower() or 'file'}"
    candidate = target.with_name(stem + target.suffix)
    counter = 2
    while candidate.resolve() in taken or candidate.resolve() in inputs:
        candidate = target.with_name(f"{stem}-{counter}{target.suffix}")
        counter += 1
    other = taken[target.resolve()]
    return candidate, f"output renamed to {candidate.name}: {target.name} is the output of {other}"


def _default_format(source: Path) -> str:
    suffix = source.suffix.lower().lstrip(".")
    name = {"jpeg": "jpg", "tif": "tiff"}.get(suffix, suffix)
    return name if name in FORMAT_SUFFIX else "png"


def _absolute(path: Path) -> Path:
    """Absolute and normalised, symlinks kept (so files under a root stay under it)."""
    return path if isinstance(path, RemotePath) else Path(os.path.abspath(path))


def _common_root(roots: list[Path]) -> Path:
    if not roots:
        return Path(".")
    if not any(isinstance(r, RemotePath) for r in roots):
        return Path(os.path.commonpath([str(r) for r in roots]))
    common = list(roots[0].parts)
    for root in roots[1:]:
        same = 0
        while same < min(len(common), len(root.parts)) and common[same] == root.parts[same]:
            same += 1
        del common[same:]
    if len(common) < 1 or not all(type(r) is type(roots[0]) for r in roots):
        raise ConfigError("inputs are on different filesystems; upscale each in its own run")
    return type(roots[0])(*common)


@dataclass
class ResumePlan:
    """What a job will do, decided before any pixel is read: ``todo`` (item, whether it may
    replace an existing output), what is ``skipped`` or ``failed`` and why, ``notes`` (why an
    output is redone), the ``settings`` key outputs are recorded under, and the manifest."""

    todo: list[tuple[WorkItem, bool]]
    skipped: list[Skipped]
    failed: list[Failure]
    notes: list[Note]
    settings: str
    manifest: Manifest


def plan_resume(
    config: JobConfig,
    runner_label: str,
    *,
    halted: Callable[[], bool] | None = None,
    planned: tuple[list[WorkItem], list[Failure], list[Skipped]] | None = None,
) -> ResumePlan:
    """:func:`plan_job` (or its result, ``planned``, made before the job lock was taken)
    checked against the resume manifest (see docs/batch.md). Checking an output hashes it:
    once ``halted()`` the rest is left in ``todo`` unchecked (a stopped job lists it as
    unfinished)."""
    items, failures, walk_skipped = planned if planned is not None else plan_job(config)
    p = config.pipeline
    settings = settings_key(
        {
            "scale": p.scale,
            "runner": runner_label,
            "model": config.model,
            "quality": config.quality,
            # only when on, so outputs made before the option existed still resume
            **({"ensemble": True} if p.ensemble else {}),
        }
    )
    plan = ResumePlan([], walk_skipped, failures, [], settings, Manifest(manifest_folder(config)))
    for position, item in enumerate(items):
        if config.overwrite:
            plan.todo.append((item, True))
            continue
        if halted is not None and halted():
            plan.todo.extend((rest, False) for rest in items[position:])
            break
        verdict = plan.manifest.verdict(item.target, item.source, settings)
        if verdict.state in ("foreign", "other_settings", "complete"):
            plan.skipped.append(Skipped(item.source, item.target, verdict.reason))
            # a job killed between publishing an output (a hard link) and removing its
            # temporary name leaves that name behind, beside a complete output
            for stale in stale_temporaries(item.target):
                stale.unlink(missing_ok=True)
            continue
        if verdict.reason != "new":
            plan.notes.append(Note(item.source, verdict.reason))
        plan.todo.append((item, verdict.replace_existing and item.target.exists()))
    return plan


