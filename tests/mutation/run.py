"""Mutation smoke check: small planted bugs that the test suite must catch.

Not part of the default pytest run (no ``test_`` file here). Each mutant replaces one exact
snippet of a source file (or a few, for a bug that spans two places) in a scratch copy of
the repository, never in the working tree, and runs the tests that guard that code. A
mutant is *caught* when those tests fail. The script exits non-zero when any mutant is
missed, when a mutant's original snippet is no longer found exactly once (a refactor
moved it: update the list, so a stale mutant cannot pass silently), or when the selected
tests fail on the unmutated copy (then "caught" would mean nothing).

Usage (from the repository root, in the project's environment)::

    python tests/mutation/run.py            # all mutants, 2 workers
    python tests/mutation/run.py -j 1 -k protocol   # names containing "protocol"
    python tests/mutation/run.py --list

Adding a mutant: copy an existing entry, paste the exact original text from the source
(whitespace included), write the bug, and name the narrowest tests that should catch it.
The scratch copy has no ``../shared/data`` beside it, so the MATLAB-oracle tests skip
there: protocol mutants must be caught by the constant checks alone, as on a fresh clone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutant:
    """``edits``: (original, replacement) pairs applied to ``file``; ``tests``: pytest args."""

    name: str
    file: str
    edits: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]


def mutant(name: str, file: str, original: str, replacement: str, *tests: str) -> Mutant:
    return Mutant(name, file, ((original, replacement),), tests)


# The scratch copy has no ../shared/data beside it, so the MATLAB-oracle tests skip there:
# protocol mutants must be caught by the constant checks alone.
PROTOCOL = "tests/test_protocol.py"
TILED = "tests/planes/test_tiling.py::test_tiled_equals_untiled"

MUTANTS: tuple[Mutant, ...] = (
    # --- tiling: exact by construction -----------------------------------------------------
    mutant(
        "tiling: core copied one pixel off",
        "vdsr_deploy/planes/tiling.py",
        "y.core_start - y.start : y.core_stop - y.start,",
        "y.core_start - y.start + 1 : y.core_stop - y.start + 1,",
        TILED,
    ),
    mutant(
        "tiling: too few tiles (floor instead of ceil)",
        "vdsr_deploy/planes/tiling.py",
        "count = math.ceil((length - 2 * halo) / core)",
        "count = max(2, math.floor((length - 2 * halo) / core))",
        "tests/planes/test_tiling.py::test_plan_axis_cores_partition_and_windows_stay_inside",
        TILED,
    ),
    mutant(
        "tiling: core boundary not centred in the overlap",
        "vdsr_deploy/planes/tiling.py",
        "boundaries.append((previous + tile + current) // 2)",
        "boundaries.append(previous + tile)",
        TILED,
    ),
    mutant(
        "tiling: tile == 2 * halo accepted",
        "vdsr_deploy/planes/tiling.py",
        "if self.tile and self.tile <= 2 * self.halo:",
        "if self.tile and self.tile < 2 * self.halo:",
        "tests/planes/test_tiling.py::test_tile_config_validation",
    ),
    # --- protocol (caught without the MATLAB oracles) ----------------------------------------
    mutant(
        "protocol: BT.601 Y coefficient typo",
        "vdsr_deploy/protocol.py",
        "[65.481, 128.553, 24.966],",
        "[65.481, 128.553, 24.996],",
        PROTOCOL,
    ),
    mutant(
        "protocol: BT.601 Cr coefficient typo",
        "vdsr_deploy/protocol.py",
        "[112.0, -93.786, -18.214],",
        "[112.0, -93.786, -18.241],",
        PROTOCOL,
    ),
    mutant(
        "protocol: bicubic a = -0.75 (PIL/OpenCV) instead of -0.5",
        "vdsr_deploy/protocol.py",
        "near = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)\n"
        "    far = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0)",
        "near = (1.25 * absx3 - 2.25 * absx2 + 1.0) * (absx <= 1)\n"
        "    far = (-0.75 * absx3 + 3.75 * absx2 - 6.0 * absx + 3.0)",
        PROTOCOL,
    ),
    mutant(
        "protocol: replicated instead of mirrored border",
        "vdsr_deploy/protocol.py",
        "mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])",
        "mirror = np.concatenate([np.arange(in_length), np.full(in_length, in_length - 1)])",
        PROTOCOL,
    ),
    mutant(
        "protocol: wrong sampling offset",
        "vdsr_deploy/protocol.py",
        "u = x / scale + 0.5 * (1.0 - 1.0 / scale)",
        "u = x / scale + 0.5 * (1.0 - scale)",
        PROTOCOL,
    ),
    mutant(
        "protocol: SSIM K2 0.02",
        "vdsr_deploy/protocol.py",
        "c2 = (0.03 * peak) ** 2",
        "c2 = (0.02 * peak) ** 2",
        PROTOCOL,
    ),
    mutant(
        "protocol: shave only the rows",
        "vdsr_deploy/protocol.py",
        "inner: NDArray[Any] = image[border:-border, border:-border]",
        "inner: NDArray[Any] = image[border:-border, :]",
        PROTOCOL,
    ),
    # --- colour and alpha ---------------------------------------------------------------------
    mutant(
        "colour: alpha inverted in finish",
        "vdsr_deploy/planes/colour.py",
        "[colour, prepared.alpha[..., None]]",
        "[colour, 1.0 - prepared.alpha[..., None]]",
        "tests/planes/test_colour.py",
    ),
    mutant(
        "colour: Cb and Cr swapped",
        "vdsr_deploy/planes/colour.py",
        "return PreparedImage(y, np.ascontiguousarray(upscaled[..., 1:]), alpha)",
        "return PreparedImage(y, np.ascontiguousarray(upscaled[..., :0:-1]), alpha)",
        "tests/planes/test_colour.py",
    ),
    mutant(
        "colour: gray mapped back with 255 instead of 219",
        "vdsr_deploy/planes/colour.py",
        "colour = ((y.astype(np.float32) * 255.0 - 16.0) / 219.0)[..., None]",
        "colour = ((y.astype(np.float32) * 255.0 - 16.0) / 255.0)[..., None]",
        "tests/planes/test_colour.py",
    ),
    # --- resume manifest and atomic writes ----------------------------------------------------
    mutant(
        "manifest: sizes compared, not SHA-256",
        "vdsr_deploy/job/manifest.py",
        "if (digest.size, digest.sha256) != (record.size, record.sha256):",
        "if digest.size != record.size:",
        "tests/job/test_manifest.py",
    ),
    mutant(
        "manifest: settings ignored",
        "vdsr_deploy/job/manifest.py",
        "if record.settings != settings:",
        "if False:",
        "tests/job/test_job.py::test_resume_skips_complete_outputs_and_redoes_the_rest",
    ),
    Mutant(
        "imageio: writer writes straight to the target",
        "vdsr_deploy/imageio/atomic.py",
        (
            (
                '        self.temporary = Path(name)\n'
                '        self._handle: IO[bytes] | None = os.fdopen(descriptor, "wb")',
                "        os.close(descriptor)\n"
                "        os.unlink(name)\n"
                "        self.temporary = target\n"
                '        self._handle: IO[bytes] | None = open(target, "wb")  # noqa: SIM115',
            ),
            (
                "                move_into_place(self.temporary, self.target, replace=self.overwrite)",
                "                if self.temporary != self.target:\n"
                "                    move_into_place(self.temporary, self.target, replace=self.overwrite)",
            ),
        ),
        ("tests/imageio/test_atomic_writes.py",),
    ),
    mutant(
        "imageio: samples truncated instead of rounded",
        "vdsr_deploy/imageio/write.py",
        "np.clip(np.rint(np.asarray(pixels, dtype=np.float64) * peak), 0, peak)",
        "np.clip(np.floor(np.asarray(pixels, dtype=np.float64) * peak), 0, peak)",
        "tests/imageio/test_imageio.py::test_quantize_rounds_half_to_even_and_clips",
    ),
    # --- the evaluation protocol's folder listing and HR crop (evaluate, parity, training) -------
    mutant(
        "evaluate: a folder named like an image is listed as one",
        "vdsr_deploy/imageio/folders.py",
        "if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()",
        "if p.suffix.lower() in IMAGE_SUFFIXES",
        "tests/evaluation/test_evaluate.py",
    ),
    mutant(
        "evaluate: HR not modcropped before scoring",
        "vdsr_deploy/evaluation/run.py",
        "cropped = np.asarray(protocol.modcrop(hr, scale), dtype=np.float64)",
        "cropped = np.asarray(hr, dtype=np.float64)",
        "tests/evaluation/test_evaluate.py",
        "tests/parity/test_parity.py::test_hr_images_give_task_psnr",
    ),
    # --- nothing of the user's is overwritten (issue 25) ---------------------------------------
    mutant(
        "publish: the record stays when a file appeared at the target",
        "vdsr_deploy/job/encode.py",
        "self.manifest.retract(task.item.target)  # recorded only what this job published",
        "pass",
        "tests/job/test_safety.py::test_1_a_file_that_appears_before_the_publish_is_left_alone",
    ),
    mutant(
        "publish: the rename replaces a file that appeared meanwhile",
        "vdsr_deploy/fileops.py",
        "    if replace:\n        os.replace(temporary, target)",
        "    if True:\n        os.replace(temporary, target)",
        "tests/job/test_safety.py::test_1_a_file_that_appears_before_the_publish_is_left_alone",
    ),
    mutant(
        "job lock: jobs above or inside the output folder not looked for",
        "vdsr_deploy/job/lock.py",
        "                self._refuse_nested_jobs()",
        "                pass",
        "tests/job/test_safety.py",
    ),
    mutant(
        "manifest: damaged lines not counted",
        "vdsr_deploy/job/manifest.py",
        "self.damaged += 1",
        "self.damaged += 0",
        "tests/job/test_safety.py",
    ),
    mutant(
        "manifest: a rechecked output that differs is replaced though no record names it",
        "vdsr_deploy/job/manifest.py",
        "        if key in self.named_by_damaged:\n",
        "        if True:\n",
        "tests/job/test_safety.py",
    ),
    mutant(
        "model identity: any ONNX runs as if --foreign-model",
        "vdsr_deploy/model/provenance.py",
        "    if foreign:\n        return",
        "    if True:\n        return",
        "tests/cli/test_hostile.py",
    ),
    mutant(
        "report: any existing file may be replaced",
        "vdsr_deploy/job/report.py",
        "if path.stat().st_size and not _is_report(path):",
        "if False:",
        "tests/cli/test_hostile.py::test_report_never_replaces_a_users_file",
    ),
    # --- the cluster driver's ledger ---------------------------------------------------------
    mutant(
        "cluster ledger: an image retried once more than allowed",
        "vdsr_deploy/job/ledger.py",
        "if entry.attempts > self.retries:",
        "if entry.attempts > self.retries + 1:",
        "tests/cluster/test_cluster.py::test_killed_worker_is_retried_and_a_poison_image_is_reported",
    ),
    # --- parity figures and the rendered report -----------------------------------------------
    mutant(
        "parity: identical share off by one",
        "vdsr_deploy/parity/figures.py",
        "return self.identical / self.pixels if self.pixels else 1.0",
        "return self.identical / (self.pixels + 1) if self.pixels else 1.0",
        "tests/parity/test_parity.py::test_figures_match_direct_numpy",
    ),
    mutant(
        "parity report: histogram cut one entry short",
        "vdsr_deploy/parity/report.py",
        'items = [f"{lsb}:{count}" for lsb, count in quant.histogram[:limit]]',
        'items = [f"{lsb}:{count}" for lsb, count in quant.histogram[: limit - 1]]',
        "tests/parity/test_parity_report.py",
    ),
    mutant(
        "parity report: '... max' shown one entry late",
        "vdsr_deploy/parity/report.py",
        "if len(quant.histogram) > limit:",
        "if len(quant.histogram) > limit + 1:",
        "tests/parity/test_parity_report.py",
    ),
    mutant(
        "parity report: per-image share of the wrong bit depth",
        "vdsr_deploy/parity/report.py",
        "fmt_share(image.quantized[0])",
        "fmt_share(image.quantized[-1])",
        "tests/parity/test_parity_report.py",
    ),
    # --- training resume ----------------------------------------------------------------------
    mutant(
        "train: resume skips the checkpoint's weights",
        "train/checkpoint.py",
        "        model.load_state_dict(model_state)\n",
        "        pass  # model.load_state_dict(model_state)\n",
        "tests/train/test_train.py::test_resumed_training_equals_uninterrupted_bit_for_bit",
    ),
    mutant(
        "train: resume skips the optimizer state",
        "train/checkpoint.py",
        "    optimizer.load_state_dict(_optimizer_state(meta, tensors, list(model.parameters())))\n",
        "    pass  # optimizer.load_state_dict(...)\n",
        "tests/train/test_train.py::test_resumed_training_equals_uninterrupted_bit_for_bit",
    ),
    mutant(
        "train: SIGTERM does not stop the run",
        "train/loop.py",
        "                if stop.is_set():\n                    return True\n",
        "",
        "tests/train/test_resume.py::test_sigterm_stops_after_the_step_keeps_the_checkpoint_and_restores_the_handler",
    ),
    # --- export -------------------------------------------------------------------------------
    mutant(
        "export: residual Add dropped",
        "vdsr_deploy/export/onnx.py",
        'helper.make_node("Add", [INPUT_NAME, current], [OUTPUT_NAME], name="global_residual")',
        'helper.make_node("Identity", [current], [OUTPUT_NAME], name="global_residual")',
        "tests/export/test_export.py",
    ),
    mutant(
        "export: last ReLU dropped",
        "vdsr_deploy/export/onnx.py",
        "if index < model.depth - 1:",
        "if index < model.depth - 2:",
        "tests/export/test_export.py",
    ),
    # --- INT8 quantization --------------------------------------------------------------------
    mutant(
        "quantize: last conv quantized too",
        "vdsr_deploy/export/quantize.py",
        'excluded = [convs[0], convs[-1], "global_residual"] if config.keep_float_ends else []',
        'excluded = [convs[0], "global_residual"] if config.keep_float_ends else []',
        "tests/export/test_quantize.py",
    ),
    mutant(
        "quantize: calibrated on HR instead of degraded inputs",
        "vdsr_deploy/export/quantize.py",
        "inputs.append(protocol.degrade(hr, scale))",
        "inputs.append(hr)",
        "tests/export/test_quantize.py",
    ),
    # --- the job of files (vdsr_deploy/job/) -----------------------------------------------------
    mutant(
        "job: colliding output names not renamed",
        "vdsr_deploy/job/plan.py",
        "        if target.resolve() in taken and not single_file:\n",
        "        if False:\n",
        "tests/job/test_job.py::test_names_never_collide_and_inputs_are_never_overwritten",
    ),
    mutant(
        "job: a band window reuses the previous window's rows one row off",
        "vdsr_deploy/job/prepare.py",
        "    keep = slice(span.start - start, None)\n",
        "    keep = slice(span.start - start + 1, None)\n",
        "tests/job/test_job.py::test_outputs_equal_the_single_image_pipeline",
    ),
    mutant(
        "job: the memory budget never waits",
        "vdsr_deploy/job/budget.py",
        "            while self.used and self.used + amount > self.capacity:\n",
        "            while False:\n",
        "tests/job/test_job.py::test_memory_budget_waits_for_room_and_runs_a_big_item_alone",
    ),
    mutant(
        "job: an item larger than the memory budget waits for ever",
        "vdsr_deploy/job/budget.py",
        "            while self.used and self.used + amount > self.capacity:\n",
        "            while self.used + amount > self.capacity:\n",
        "tests/job/test_job.py::test_memory_budget_waits_for_room_and_runs_a_big_item_alone",
    ),
    mutant(
        "job: stop not checked before a runner call",
        "vdsr_deploy/job/halt.py",
        "        if self._halted():\n"
        "            raise Stopped\n"
        "        try:\n"
        "            return self._runner.infer(batch)\n",
        "        try:\n"
        "            return self._runner.infer(batch)\n",
        "tests/job/test_job.py::test_stop_is_checked_between_runner_calls",
    ),
    # --- batching, benchmark ratios, CLI errors -----------------------------------------------
    mutant(
        "pipeline: tiles of different images never share a batch",
        "vdsr_deploy/planes/pipeline.py",
        "            if len(queue) == batch:\n",
        "            if len(queue) >= 1:\n",
        "tests/job/test_job.py::test_tiles_of_several_images_share_a_batch",
    ),
    mutant(
        "bench: ratio to the baseline inverted",
        "vdsr_deploy/bench/record.py",
        '"runtime": result["runtime"]["megapixels_per_second"]\n'
        '            / base["runtime"]["megapixels_per_second"]',
        '"runtime": base["runtime"]["megapixels_per_second"]\n'
        '            / result["runtime"]["megapixels_per_second"]',
        "tests/bench/test_harness.py::test_benchmark_numbers_and_schema",
    ),
    mutant(
        "bench: the ensemble workload times one plane, not eight",
        "vdsr_deploy/bench/workload.py",
        "batch=batch, ensemble=ensemble)",
        "batch=batch)",
        "tests/bench/test_workload.py",
    ),
    mutant(
        "cli: a user error escapes as a crash",
        "vdsr_deploy/cli/common.py",
        '    typer.echo(f"error: {message}", err=True)\n    raise typer.Exit(code)',
        '    typer.echo(f"error: {message}", err=True)\n    raise RuntimeError(message)',
        "tests/cli/test_cli.py::test_user_errors_are_one_sentence",
        "tests/cli/test_cli.py::test_tensorrt_absent_is_a_handled_error",
    ),
    mutant(
        "cli: an --onnx the torch backend would ignore is accepted",
        "vdsr_deploy/runtime/prepare.py",
        '    if spec.onnx is not None and artifact == "weights":\n',
        '    if spec.onnx is not None and artifact == "none":\n',
        "tests/cli/test_cli.py::test_a_file_the_backend_would_not_run_is_refused",
    ),
    mutant(
        "cli: the resume identity ignores a changed weights file",
        "vdsr_deploy/model/identity.py",
        '            parts.append(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}")\n',
        '            parts.append(f"{Path(path).name}")\n',
        "tests/model/test_model_files.py::test_identity_names_each_given_file_by_name_size_and_mtime",
    ),
    # --- issue 27: the blind-spot kinds (NaN, data, guards both ways, fallbacks, pairs, CLI) ---
    mutant(
        "nan: export verification checks only PyTorch's output for NaN/Inf",
        "vdsr_deploy/export/onnx.py",
        "        if nonfinite or nonfinite_reference:\n",
        "        if nonfinite_reference:\n",
        "tests/export/test_export.py::test_export_refuses_an_fp16_graph_that_overflows_to_nan",
    ),
    mutant(
        "nan: precision auto's worst cost drops a NaN (plain max)",
        "vdsr_deploy/precision/decision.py",
        "    if any(math.isnan(loss) for loss in losses):\n        return math.nan\n",
        "",
        "tests/precision/test_precision.py::test_auto_never_takes_a_path_whose_cost_is_nan",
    ),
    mutant(
        "nan: bench worst_costs drops a NaN (plain max)",
        "vdsr_deploy/bench/quality.py",
        "math.nan if math.isnan(loss) or math.isnan(previous) else max(previous, loss)",
        "max(previous, loss)",
        "tests/bench/test_quality.py",
    ),
    mutant(
        "nan: parity's worst task-PSNR delta by plain min",
        "vdsr_deploy/parity/figures.py",
        "hr_psnr_delta_worst=_nan_min(deltas) if deltas else None,",
        "hr_psnr_delta_worst=float(min(deltas)) if deltas else None,",
        "tests/parity/test_parity.py::test_a_nan_task_psnr_delta_fails_the_pair_wherever_it_stands",
    ),
    mutant(
        "nan: judge passes a NaN task-PSNR drop",
        "vdsr_deploy/parity/figures.py",
        "if worst is not None and not -worst <= tolerance.max_task_psnr_drop_db:",
        "if worst is not None and -worst > tolerance.max_task_psnr_drop_db:",
        "tests/parity/test_parity.py::test_a_nan_task_psnr_delta_fails_the_pair_wherever_it_stands",
    ),
    mutant(
        "data: a torn manifest line is not kept apart from the next record",
        "vdsr_deploy/job/manifest.py",
        'line = b"\\n" + line  # a torn last line stays torn, alone',
        "line = line",
        "tests/job/test_manifest.py::test_a_torn_last_line_cut_anywhere_even_inside_a_multibyte_character",
    ),
    mutant(
        "data: the manifest is decoded strictly (a line torn inside a character fails the load)",
        "vdsr_deploy/job/manifest.py",
        'read_text(encoding="utf-8", errors="replace")',
        'read_text(encoding="utf-8")',
        "tests/job/test_manifest.py::test_a_torn_last_line_cut_anywhere_even_inside_a_multibyte_character",
    ),
    mutant(
        "data: big-endian 16-bit RGB read with its high byte twice",
        "vdsr_deploy/imageio/read.py",
        '    "RGB;16B": "RGB;16L",\n',
        '    "RGB;16B": "RGB;16B",\n',
        "tests/imageio/test_imageio.py::test_big_endian_16bit_tiff_reads_exact_and_writes_back",
    ),
    mutant(
        "data: big-endian 16-bit gray reinterpreted as native order",
        "vdsr_deploy/imageio/read.py",
        "        return np.asarray(image).astype(np.uint16)[..., None], 16",
        "        return np.asarray(image).view(np.uint16)[..., None], 16",
        "tests/imageio/test_imageio.py::test_big_endian_16bit_tiff_reads_exact_and_writes_back",
    ),
    mutant(
        "guards: the shape profile ignores the batch axis",
        "vdsr_deploy/io_names.py",
        "return all(self.min[a] <= shape[a] <= self.max[a] for a in range(4))",
        "return all(self.min[a] <= shape[a] <= self.max[a] for a in range(1, 4))",
        "tests/backends/test_base.py::test_the_profile_guard_holds_on_every_axis_both_ways_in_both_forms",
    ),
    mutant(
        "guards: the shape profile ignores the width",
        "vdsr_deploy/io_names.py",
        "return all(self.min[a] <= shape[a] <= self.max[a] for a in range(4))",
        "return all(self.min[a] <= shape[a] <= self.max[a] for a in (0, 1, 2))",
        "tests/test_io_names.py",
    ),
    mutant(
        "guards: weights with Inf (not NaN) load",
        "vdsr_deploy/model/weights.py",
        "if not torch.isfinite(state[name]).all():",
        "if torch.isnan(state[name]).any():",
        "tests/model/test_model_weights.py::test_non_finite_weights_are_refused_on_load",
    ),
    mutant(
        "fallback: ENOLCK (no flock on this file system) is an error, not the PID check",
        "vdsr_deploy/job/lock.py",
        "if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):",
        "if error.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):",
        "tests/job/test_lock.py",
    ),
    mutant(
        "fallback: without flock, a holder on another host is taken over",
        "vdsr_deploy/job/lock.py",
        "        return holder  # cannot be checked from here: taken as live",
        "        return None",
        "tests/job/test_lock.py",
    ),
    mutant(
        "fallback: without fcntl, any lock is taken",
        "vdsr_deploy/job/lock.py",
        "        except ImportError:  # no flock on this platform: decide from the recorded PID\n"
        "            return self._lock_by_pid()",
        "        except ImportError:  # no flock on this platform: decide from the recorded PID\n"
        "            return True",
        "tests/job/test_lock.py",
    ),
    mutant(
        "fallback: a second bucket reuses the first bucket's filesystem (its region)",
        "vdsr_deploy/job/remote.py",
        "_filesystems.setdefault(_key(path.parts[:2]), filesystem)",
        "_filesystems.setdefault(_key(path.parts[:1]), filesystem)",
        "tests/job/test_remote.py::test_each_bucket_gets_its_own_filesystem",
    ),
    mutant(
        "pairs: the target is cropped but not augmented",
        "train/data.py",
        "targets[slot, 0] = dihedral(pair.target[window], transform)",
        "targets[slot, 0] = pair.target[window]",
        "tests/train/test_data.py",
    ),
    mutant(
        "pairs: augmentation draws rotations only, never a flip",
        "train/data.py",
        "transform = int(rng.integers(0, 8)) if self.augment else 0",
        "transform = int(rng.integers(0, 4)) if self.augment else 0",
        "tests/train/test_data.py",
    ),
    mutant(
        "paths: the device path runs without the ensemble",
        "vdsr_deploy/job/prepare.py",
        "if not use or config.pipeline.ensemble:",
        "if not use:",
        "tests/planes/test_device_pipeline.py::test_every_pipeline_option_gives_the_same_files_on_both_paths",
    ),
    mutant(
        "paths: precision auto treats ONNX Runtime's TensorRT provider as the CPU",
        "vdsr_deploy/backends/onnxruntime/__init__.py",
        '    if provider == "cpu":\n        return "cpu"',
        '    if provider != "cuda":\n        return "cpu"',
        "tests/runtime/test_resolve.py",
    ),
    mutant(
        "cli: --jobs with one number is an IndexError traceback",
        "vdsr_deploy/cli/upscale.py",
        "if len(values) != 2 or min(values) < 1:\n        raise ConfigError(f\"--jobs:",
        "if min(values) < 1:\n        raise ConfigError(f\"--jobs:",
        "tests/cli/test_cli_options.py::test_a_bad_value_is_one_clear_line",
    ),
    mutant(
        "cli: a --provider typo is ignored by the torch backend",
        "vdsr_deploy/backends/registry.py",
        "if self.provider not in PROVIDERS:",
        'if self.provider not in PROVIDERS and self.backend == "onnxruntime":',
        "tests/cli/test_cli_options.py::test_a_bad_value_is_one_clear_line",
    ),
    mutant(
        "cli: a file where an output folder goes is a traceback",
        "vdsr_deploy/cli/common.py",
        "    except OSError as error:\n        # a refusal",
        "    except FileNotFoundError as error:\n        # a refusal",
        "tests/cli/test_cli_options.py::test_a_bad_value_is_one_clear_line",
    ),
    mutant(
        "cli: train --time-budget nan reaches int()",
        "train/budget.py",
        "if not (math.isfinite(seconds) and seconds > 0):",
        "if seconds <= 0:",
        "tests/cli/test_cli_options.py::test_a_bad_value_is_one_clear_line",
    ),
    mutant(
        "cli: --actors without --cluster is silently ignored",
        "vdsr_deploy/cli/upscale.py",
        "        if cluster is None and value != default:\n",
        "        if cluster is None and value < default:\n",
        "tests/cli/test_cli_options.py::test_a_bad_value_is_one_clear_line",
    ),
)


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


@dataclass
class Outcome:
    mutant: Mutant
    state: str  # caught | MISSED | STALE (snippet not found exactly once) | ERROR
    seconds: float
    detail: str = ""


def source_files(root: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files (what a commit of the tree would hold)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=root, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [name for name in listed.split("\0") if name]


def make_scratch(root: Path, into: Path) -> Path:
    copy = into / "repo"
    for name in source_files(root):
        source = root / name
        if source.is_symlink() or not source.is_file():
            continue  # .venv and the like
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return copy


def pytest(copy: Path, args: Sequence[str], timeout: float, *, stop_early: bool = True) -> tuple[int, str]:
    # no bytecode cache: a same-size mutant written in the same second as the original
    # would otherwise be run from the original's stale .pyc
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=mutation", *args]
    if stop_early:
        command.insert(3, "-x")
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "timed out"
    tail = (done.stdout.strip().splitlines() or [""])[-1]
    return done.returncode, tail


def check_snippets(mutant: Mutant, copy: Path) -> str:
    text = (copy / mutant.file).read_text(encoding="utf-8") if (copy / mutant.file).is_file() else None
    if text is None:
        return f"{mutant.file} not found"
    for original, _ in mutant.edits:
        count = text.count(original)
        if count != 1:
            return f"original snippet found {count} times in {mutant.file}: {original[:60]!r}"
    return ""


def run_mutant(mutant: Mutant, copy: Path, timeout: float) -> Outcome:
    started = time.perf_counter()
    stale = check_snippets(mutant, copy)
    if stale:
        return Outcome(mutant, "STALE", 0.0, stale)
    path = copy / mutant.file
    original_text = path.read_text(encoding="utf-8")
    mutated = original_text
    for original, replacement in mutant.edits:
        mutated = mutated.replace(original, replacement, 1)
    path.write_text(mutated, encoding="utf-8")
    try:
        code, tail = pytest(copy, mutant.tests, timeout)
    finally:
        path.write_text(original_text, encoding="utf-8")
    # exit 1 = tests ran and failed; anything else (collection error, no tests, a broken
    # environment) proves nothing about the tests and is reported, never counted as caught
    state = {0: "MISSED", 1: "caught", 124: "caught"}.get(code, "ERROR")
    return Outcome(mutant, state, time.perf_counter() - started, tail)


def baseline(copies: Sequence[Path], mutants: Sequence[Mutant], timeout: float) -> str:
    """Every selected test must pass on the unmutated copies (their union, split over the
    copies and run side by side); returns pytest's last line of a failing part, if any."""
    selected = list(dict.fromkeys(test for m in mutants for test in m.tests))
    parts = [selected[index :: len(copies)] for index in range(len(copies))]
    with ThreadPoolExecutor(len(copies)) as pool:
        results = list(
            pool.map(lambda job: pytest(job[0], job[1], timeout, stop_early=False), zip(copies, parts, strict=True))
        )
    for (code, tail), part in zip(results, parts, strict=True):
        if part and not (code == 0 and " passed" in tail):
            return tail or f"pytest exit code {code}"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel scratch copies (2)")
    parser.add_argument("-k", "--select", default="", help="only mutants whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per test run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    options = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if options.select.lower() in m.name.lower()]
    if options.list:
        for m in chosen:
            say(f"{m.name}  [{m.file}]  -> {' '.join(m.tests)}")
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vdsr-mutation-") as scratch:
        scratches = [make_scratch(ROOT, Path(scratch) / str(i)) for i in range(max(1, options.jobs))]
        copies: Queue[Path] = Queue()
        for copy in scratches:
            copies.put(copy)
        if not options.no_baseline:
            failing = baseline(scratches, chosen, options.timeout)
            if failing:
                say("the selected tests fail WITHOUT any mutant (fix them, or run this in the")
                say(f"project's environment): {failing}")
                return 2
            say(f"baseline: the selected tests pass unmutated ({time.perf_counter() - started:.0f} s)")

        def work(m: Mutant) -> Outcome:
            copy = copies.get()
            try:
                outcome = run_mutant(m, copy, options.timeout)
            finally:
                copies.put(copy)
            say(f"  {outcome.state:<7} {outcome.seconds:5.1f} s  {m.name}")  # progress
            return outcome

        with ThreadPoolExecutor(max(1, options.jobs)) as pool:
            outcomes = list(pool.map(work, chosen))
    width = max(len(o.mutant.name) for o in outcomes)
    say(f"\n{'mutant':<{width}}  {'result':<7} {'s':>5}  tests")
    for o in outcomes:
        say(f"{o.mutant.name:<{width}}  {o.state:<7} {o.seconds:5.1f}  {' '.join(o.mutant.tests)}")
        if o.state != "caught":
            say(f"{'':<{width}}  -> {o.detail}")
    caught = sum(o.state == "caught" for o in outcomes)
    elapsed = time.perf_counter() - started
    say(f"\n{caught}/{len(outcomes)} caught in {elapsed:.0f} s ({options.jobs} workers)")
    return 0 if caught == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
