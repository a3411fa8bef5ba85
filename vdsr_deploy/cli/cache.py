"""``vdsr cache``: where the cache folder is, what is in it (with sizes), and clearing it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from vdsr_deploy.cli.common import app, counted, escape, make_console, user_errors
from vdsr_deploy.cli.options import EnginesOption


@app.command()
def cache(
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove what vdsr cached there (other files are kept).")
    ] = False,
    engines_dir: EnginesOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the cache folder (exported ONNX, INT8 models, quality records, TensorRT engines)
    with sizes, or clear it with --clear.

    Everything there is made again when needed: clearing costs the next run its export or
    engine build. Set VDSR_CACHE_DIR to move the cache; --engines-dir picks another folder
    for one command.
    """
    from vdsr_deploy.errors import InvalidInputError
    from vdsr_deploy.runtime.cache import cache_dir_source, cache_entries, clear_cache, default_cache_dir

    directory = engines_dir if engines_dir is not None else default_cache_dir()
    source = "--engines-dir" if engines_dir is not None else cache_dir_source()
    with user_errors():
        if directory.exists() and not directory.is_dir():
            raise InvalidInputError(f"{directory}: expected a cache folder, got a file")
        entries = cache_entries(directory)
        cleared = clear_cache(directory) if clear else None
    if as_json:
        data: dict[str, Any] = {
            "cache_dir": str(directory),
            "source": source,
            "entries": [{"path": str(e.path), "bytes": e.bytes, "ours": e.ours} for e in entries],
            "total_bytes": sum(e.bytes for e in entries),
        }
        if cleared is not None:
            kept = [str(p) for p in cleared.kept]
            data["cleared"] = {"removed": cleared.removed, "bytes": cleared.bytes, "kept": kept}
        typer.echo(json.dumps(data, indent=2))
        return
    _render(directory, source, entries, cleared)


def _render(directory: Path, source: str, entries: list[Any], cleared: Any) -> None:
    from vdsr_deploy.runtime.cache import human_bytes

    console = make_console()
    if directory.exists():
        total = human_bytes(sum(e.bytes for e in entries))
        contents = f"{counted(len(entries), 'entry', 'entries')}, {total}"
    else:
        contents = "does not exist yet"
    console.print(f"cache {escape(str(directory))} (from {escape(source)}): {contents}", soft_wrap=True)
    if cleared is not None:
        freed = human_bytes(cleared.bytes)
        console.print(f"cleared {counted(cleared.removed, 'entry', 'entries')}, {freed}")
        for path in cleared.kept:
            console.print(f"  kept {escape(path.name)} (not made by vdsr)", soft_wrap=True)
        return
    for entry in entries:
        mark = "" if entry.ours else "  (not made by vdsr: never cleared)"
        console.print(f"  {human_bytes(entry.bytes):>9}  {escape(entry.path.name)}{mark}", soft_wrap=True)
