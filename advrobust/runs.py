"""Run directories: the on-disk format every stage reads and writes.

A run directory holds

``run.json``
    spec (data, model, training), seed, params, n, d, classes, accuracies, losses,
    interpolated, epochs, wall_time_s, versions, device, command.
``model.pt``
    ``{"format": "advrobust-model/1", "spec": <model spec dict>, "state_dict": ...}``,
    loadable with ``torch.load(..., weights_only=True)``.
``attack-<norm>-<split>.npz`` and ``attack-<norm>-<split>.json``
    per-sample attack results and their summary (see ``docs/internals.md``).
``lipschitz.json``
    Lipschitz estimates.

Every write goes to a temporary file in the same directory and is moved into place with
``os.replace``, so a killed process never leaves a half-written file behind.
"""
from __future__ import annotations

import io
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._cli import UserError, to_json

MODEL_FORMAT = "advrobust-model/1"
RUN_FILE = "run.json"
MODEL_FILE = "model.pt"


# --------------------------------------------------------------------------- atomic writes
def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Strict JSON (NaN -> null, inf -> "inf"), written atomically."""
    return atomic_write_text(path, to_json(obj) + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """``numpy.savez_compressed`` into memory, then an atomic write."""
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def read_json(path: str | os.PathLike, *, what: str = "file") -> Any:
    """Read JSON; a missing or corrupt file is a UserError naming the path."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc}); "
                        "delete it and rerun the command that writes it") from None


def load_npz(path: str | os.PathLike, *, what: str = "results file") -> dict:
    """Load an .npz fully into a dict of arrays; UserError if missing or corrupt."""
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{what} {path} is corrupt ({exc}); delete it and rerun the command that writes it") from None


# --------------------------------------------------------------------------- provenance
def versions() -> dict:
    """Library versions worth recording beside every result."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("torch", "numpy", "scipy", "sklearn", "foolbox", "matplotlib"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", None)
            continue
        # not imported yet: read the installed version instead of importing it (importing
        # foolbox and matplotlib alone takes seconds); an absent library is recorded as None
        from importlib import metadata

        try:
            out[mod] = metadata.version({"sklearn": "scikit-learn"}.get(mod, mod))
        except metadata.PackageNotFoundError:
            out[mod] = None
    from . import __version__

    out["advrobust"] = __version__
    return out


def device_info(device: Any) -> dict:
    """Device name plus, for CUDA, the GPU model; for CPU, the thread count."""
    import torch

    dev = torch.device(device)
    info = {"device": str(dev)}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    else:
        info["threads"] = torch.get_num_threads()
        info["cpu"] = platform.processor() or platform.machine()
    return info


# --------------------------------------------------------------------------- models
def save_model(path: str | os.PathLike, model: Any, spec: dict) -> Path:
    """Save ``{"format", "spec", "state_dict"}``; the spec rebuilds the module (models.build_model)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_torch_save(path, {"format": MODEL_FORMAT, "spec": dict(spec), "state_dict": state})


def load_model(path: str | os.PathLike, *, device: Any = "cpu"):
    """Load a model saved by :func:`save_model`; returns ``(model, spec)``.

    Uses ``torch.load(..., weights_only=True)``: nothing is unpickled. A missing, corrupt or
    foreign file is a :class:`UserError`.
    """
    import pickle
    import zipfile

    import torch

    from .models import build_model

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"checkpoint {path} is corrupt or not a safe advrobust checkpoint ({first[:160]})") from None
    if not isinstance(obj, dict) or obj.get("format") != MODEL_FORMAT or "spec" not in obj or "state_dict" not in obj:
        raise UserError(f"{path} is not an advrobust checkpoint (expected a dict with format {MODEL_FORMAT!r}, "
                        "spec and state_dict); save models with advrobust.runs.save_model")
    spec = obj["spec"]
    model = build_model(spec)
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"checkpoint {path} does not match its own spec {spec}: {str(exc).splitlines()[0]}") from None
    model.eval()
    return model.to(device), spec


# --------------------------------------------------------------------------- runs
@dataclass
class Run:
    """A loaded run directory: its record, model and (lazily) its data set."""

    path: Path
    meta: dict
    model: Any
    _data: Any = field(default=None, repr=False)

    @property
    def spec(self) -> dict:
        return self.meta["spec"]

    @property
    def data(self):
        """The run's data set, rebuilt deterministically from ``meta['spec']['data']``."""
        if self._data is None:
            from .data import load_dataset

            self._data = load_dataset(**self.meta["spec"]["data"])
        return self._data


def is_run_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / RUN_FILE).is_file() and (p / MODEL_FILE).is_file()


def load_run(path: str | os.PathLike, *, device: Any = "cpu") -> Run:
    """Load a run directory written by ``python -m advrobust.train`` (model on ``device``)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run directory not found: {path} (create one with python -m advrobust.train --out {path})")
    if not (path / RUN_FILE).is_file():
        raise UserError(f"{path} is not a run directory: it has no {RUN_FILE} (create one with python -m advrobust.train)")
    meta = read_json(path / RUN_FILE, what="run record")
    if not isinstance(meta, dict) or "spec" not in meta:
        raise UserError(f"{path / RUN_FILE} is not an advrobust run record (no 'spec')")
    model, _ = load_model(path / MODEL_FILE, device=device)
    return Run(path=path, meta=meta, model=model)


def find_runs(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand arguments into run directories: a run dir itself, or every run dir below a folder."""
    out: list[Path] = []
    for p in map(Path, paths):
        if is_run_dir(p):
            out.append(p)
        elif p.is_dir():
            found = sorted(q.parent for q in p.rglob(RUN_FILE) if is_run_dir(q.parent))
            if not found:
                raise UserError(f"no run directories under {p} (a run directory holds {RUN_FILE} and {MODEL_FILE})")
            out.extend(found)
        else:
            raise UserError(f"run directory not found: {p}")
    return out


def results_stem(norm: str, split: str) -> str:
    """``attack-l2-train`` for norm 'l2' and split 'train'."""
    return f"attack-{norm}-{split}"
