"""Segment Anything runs in a child process, never inside the server process.

PyTorch (SAM) and TensorFlow (the U-Net) do not share a process safely (their native runtimes
clash: importing torch after TensorFlow can crash the interpreter), and a crash in a proposal
generator must never take the server and its stored labels down with it. So the server starts
``python -m fosgate.jobs.sam_process SPEC.json``: the child loads the checkpoint once, writes one
label TIFF per tile and reports each on a JSON line; the parent stores them as proposals.

Protocol (stdout, one JSON object per line): ``{"ready": true}`` after loading, then
``{"index": i, "path": ..., "generated": n, "kept": k}`` per tile; on a known error the child
prints ``{"error": "Precondition"|"InvalidInput", "message": ...}`` and exits with status 3.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from fosgate.errors import Cancelled, FosgateError, InvalidInput, Precondition

ERRORS = {"Precondition": Precondition, "InvalidInput": InvalidInput}


def _spawn(spec: dict, workdir: Path) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    spec_path = workdir / "sam_spec.json"
    spec_path.write_text(json.dumps(spec))
    return subprocess.Popen([sys.executable, "-m", "fosgate.jobs.sam_process", str(spec_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _raise_for(msg: dict) -> None:
    raise ERRORS.get(msg.get("error", ""), InvalidInput)(msg.get("message", "Segment Anything failed."))


def check_sam(checkpoint: str | Path | None, model_type: str, workdir: Path, timeout: float = 300) -> None:
    """Load the checkpoint in a child process; raise a clear error if it is missing or damaged."""
    if not checkpoint:
        raise Precondition("Segment Anything is not configured on this server: start it with "
                           "--sam-checkpoint /path/to/sam_vit_b_01ec64.pth (the file is never downloaded).")
    if not Path(checkpoint).is_file():
        raise Precondition(f"The Segment Anything checkpoint '{checkpoint}' does not exist on the server.")
    proc = _spawn({"check": True, "checkpoint": str(checkpoint), "model_type": model_type}, workdir)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise Precondition("Loading the Segment Anything checkpoint took too long.") from None
    for line in out.splitlines():
        msg = json.loads(line)
        if "error" in msg:
            _raise_for(msg)
    if proc.returncode != 0:
        raise Precondition(f"Segment Anything could not start on the server ({err.strip()[-300:]}).")


def run_sam(spec: dict, workdir: Path, on_tile: Callable[[dict], None],
            should_cancel: Callable[[], bool] | None = None) -> None:
    """Run the child over ``spec["regions"]``; ``on_tile`` gets each tile's report as it arrives."""
    proc = _spawn(spec, workdir)
    assert proc.stdout is not None
    error: dict | None = None
    try:
        for line in proc.stdout:
            if should_cancel and should_cancel():
                proc.kill()
                raise Cancelled("Auto-labelling cancelled.")
            msg = json.loads(line)
            if "error" in msg:
                error = msg
            elif "index" in msg:
                on_tile(msg)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if error:
        _raise_for(error)
    if proc.returncode != 0:
        err = proc.stderr.read() if proc.stderr else ""
        raise FosgateError(f"Segment Anything stopped unexpectedly (exit {proc.returncode}): {err.strip()[-300:]}")


def main(spec_path: str) -> int:
    import numpy as np
    import tifffile

    spec = json.loads(Path(spec_path).read_text())

    def say(**msg) -> None:
        print(json.dumps(msg), flush=True)

    try:
        from fosgate.core.sam import SamFilter, SamProposer, load_sam, to_rgb8

        sam = load_sam(spec["checkpoint"], spec["model_type"])
        if spec.get("check"):
            say(ready=True)
            return 0
        from fosgate.core.normalize import Normalization
        from fosgate.core.slides import open_slide

        proposer = SamProposer(sam, SamFilter(**spec["filter"]), points_per_side=spec["points_per_side"])
        say(ready=True)
        out = Path(spec["out_dir"])
        out.mkdir(parents=True, exist_ok=True)
        with open_slide(spec["slide_path"], channel=spec.get("channel")) as slide:
            lo, hi = Normalization().stats(slide)
            for i, (x, y, w, h) in enumerate(spec["regions"]):
                labels, generated, kept = proposer(to_rgb8(slide.read(y, y + h, x, x + w), lo, hi))
                path = out / f"sam_{i:05d}.tif"
                tifffile.imwrite(path, labels.astype(np.uint32), compression="zlib")
                say(index=i, path=str(path), generated=generated, kept=kept)
    except (Precondition, InvalidInput) as exc:
        say(error=type(exc).__name__, message=str(exc))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
