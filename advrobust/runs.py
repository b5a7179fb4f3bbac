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
``os.replace``, so a killed process never leaves a half-written file behind. The commit protocol
(checksums, the npz+json pair, directory replacement, locks, leftovers) is in ``docs/internals.md``.
"""
from __future__ import annotations

import errno
import hashlib
import inspect
import io
import json
import os
import pickle
import platform
import shutil
import socket
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._version import __version__
from .data import load_dataset
from .errors import UserError
from .jsonio import to_json
from .models import build_model, check_size, check_spec, param_count
from .norms import NORMS

MODEL_FORMAT = "advrobust-model/1"
RUN_FILE = "run.json"
MODEL_FILE = "model.pt"


# --------------------------------------------------------------------------- atomic writes
_UMASK: int | None = None


def _file_mode() -> int:
    """0o666 less the process's umask: the mode ``open()`` would give a new file.

    ``tempfile.mkstemp`` creates files 0600, which breaks shared file systems where workers run
    as other users; the finished file gets the ordinary mode instead.
    """
    global _UMASK
    if _UMASK is None:
        try:  # Linux: read it without changing it (os.umask is process-wide, threads could race)
            line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("Umask:"))
            _UMASK = int(line.split()[1], 8)
        except (OSError, StopIteration, ValueError, IndexError):
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return 0o666 & ~_UMASK


def disk_error(exc: OSError, path: str | os.PathLike) -> UserError:
    """A UserError for an OSError met while writing ``path`` (disk full, read-only, permissions)."""
    what = exc.strerror or str(exc)
    fix = {errno.ENOSPC: "free some space (or choose another --out) and rerun; files already there are unchanged",
           errno.EDQUOT: "free some space in your quota and rerun; files already there are unchanged",
           errno.EROFS: "the file system is read-only; choose another --out",
           errno.EACCES: "choose an --out you may write to",
           errno.EPERM: "choose an --out you may write to"}.get(exc.errno, "fix that and rerun; "
                                                                      "files already there are unchanged")
    return UserError(f"cannot write {path}: {what}; {fix}")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file + fsync + os.replace).

    The file gets the umask's mode (not mkstemp's 0600). An OSError (disk full, read-only file
    system, no permission) is a :class:`UserError` naming the path; ``path`` is then unchanged
    and no temporary file is left behind.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), _file_mode())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise disk_error(exc, path) from None
        raise
    return path


def file_digest(path: str | os.PathLike) -> dict:
    """``{"sha256": hex, "bytes": size}`` of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return {"sha256": h.hexdigest(), "bytes": size}


def verify_digest(path: str | os.PathLike, expected: Any, *, fix: str) -> None:
    """UserError when ``path``'s sha256 or size differs from ``expected`` (a :func:`file_digest`).

    ``expected`` None (a record written before checksums were kept) passes unchecked.
    """
    if expected is None:
        return
    if not isinstance(expected, dict) or not isinstance(expected.get("sha256"), str):
        raise UserError(f"the checksum recorded for {path} is malformed ({expected!r}); {fix}")
    got = file_digest(path)
    if got["sha256"] != expected["sha256"]:
        raise UserError(f"{path} is corrupt: its sha256 {got['sha256'][:12]}... ({got['bytes']} bytes) differs "
                        f"from the {expected['sha256'][:12]}... ({expected.get('bytes')} bytes) recorded when it "
                        f"was written; {fix}")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Strict JSON (NaN -> null, inf -> "inf"), written atomically."""
    return atomic_write_text(path, to_json(obj) + "\n")


def atomic_save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """``numpy.savez_compressed`` into memory, then an atomic write."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
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
    return _load_npz_checked(Path(path), what)[0]


def _load_npz_checked(path: Path, what: str) -> tuple[dict, dict | None]:
    """The arrays of an .npz and, for attack results, the JSON summary committed with it (checked
    against the npz's sha256 and row count where the summary records them)."""
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    summary = _results_summary(path)
    expected = (summary or {}).get("npz")
    if expected is not None:
        if not isinstance(expected, dict) or not isinstance(expected.get("sha256"), str):
            raise UserError(f"{path.with_suffix('.json')}: key 'npz' is malformed; rerun {_rerun_hint(path)}")
        if file_digest(path)["sha256"] != expected["sha256"]:
            raise UserError(f"{path} does not match its summary {path.with_suffix('.json').name} (a different "
                            "sha256): the pair is out of step, as when the command writing it is interrupted or "
                            f"a file is changed by hand; rerun {_rerun_hint(path)}")
    try:
        with np.load(path, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{what} {path} is corrupt ({exc}); delete it and rerun the command that writes it") from None
    rows = (summary or {}).get("npz", {}).get("rows") if isinstance((summary or {}).get("npz"), dict) else None
    if rows is not None:
        got = {len(v) for v in out.values() if getattr(v, "ndim", 0) >= 1}
        if got != {rows}:
            raise UserError(f"{path} holds {sorted(got)} rows but its summary {path.with_suffix('.json').name} "
                            f"says {rows}; rerun {_rerun_hint(path)}")
    return out, summary


def _rerun_hint(npz: Path) -> str:
    parts = npz.stem.split("-")
    if len(parts) == 3 and parts[0] == "attack":
        return f"python -m advrobust.attack {npz.parent} --norm {parts[1]} --split {parts[2]}"
    return "see docs/internals.md"


def _results_summary(npz: Path) -> dict | None:
    """The JSON summary committed with an ``attack-<norm>-<split>.npz`` (the pair's commit record).

    None for other .npz files. The JSON is written after the npz and names its sha256 and row
    count; an npz without its JSON was left by an interrupted command and is refused. Summaries
    written before the checksum was kept (no ``npz`` key) are accepted as they are.
    """
    if not (npz.name.startswith("attack-") and npz.suffix == ".npz"):
        return None
    js = npz.with_suffix(".json")
    if not js.is_file():
        raise UserError(f"{npz} has no summary {js.name} beside it: the command writing the pair was interrupted "
                        f"before committing it; rerun {_rerun_hint(npz)}")
    rec = read_json(js, what="results summary")
    if not isinstance(rec, dict):
        raise UserError(f"{js} is not a results summary; rerun {_rerun_hint(npz)}")
    return rec


def commit_results(stem: str | os.PathLike, arrays: dict, record: dict) -> dict:
    """Write ``<stem>.npz`` then ``<stem>.json`` as one unit: the JSON, written last, names the
    npz's sha256 and row count (``record["npz"]``), so a reader can tell a pair left out of step
    by an interrupted command (:func:`load_npz` refuses it). Returns the record as written."""
    stem = Path(stem)
    npz = stem.with_name(stem.name + ".npz")
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    rows = {len(v) for v in arrays.values() if getattr(np.asarray(v), "ndim", 0) >= 1}
    record = {**record, "npz": {"file": npz.name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                                "rows": rows.pop() if len(rows) == 1 else None}}
    atomic_write_bytes(npz, data)
    atomic_write_json(stem.with_name(stem.name + ".json"), record)
    return record


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
        try:
            out[mod] = metadata.version({"sklearn": "scikit-learn"}.get(mod, mod))
        except metadata.PackageNotFoundError:
            out[mod] = None
    out["advrobust"] = __version__
    return out


def device_info(device: Any) -> dict:
    """Device name plus, for CUDA, the GPU model; for CPU, the thread count."""
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
    spec = check_spec(obj["spec"])
    state = obj["state_dict"]
    if not isinstance(state, dict) or not all(hasattr(v, "numel") for v in state.values()):
        raise UserError(f"checkpoint {path} has a malformed state_dict (expected a dict of tensors)")
    held = sum(int(v.numel()) for v in state.values())
    if held != param_count(spec):  # before build_model allocates what the spec asks for
        raise UserError(f"checkpoint {path} does not match its own spec: the spec {spec} has {param_count(spec):,} "
                        f"parameters, the file holds {held:,}; retrain it with python -m advrobust.train")
    check_size(spec)
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
    _results: Any = field(default=None, repr=False)

    @property
    def spec(self) -> dict:
        return self.meta["spec"]

    @property
    def data(self):
        """The run's data set, rebuilt deterministically from ``meta['spec']['data']``."""
        if self._data is None:
            self._data = load_dataset(**self.meta["spec"]["data"])
        return self._data

    @property
    def results(self) -> "RunResults":
        """What the run directory holds beyond the model: attack results (with certified and exact
        bounds), Lipschitz estimates, intrinsic dimension (:func:`load_results`, read once)."""
        if self._results is None:
            self._results = load_results(self.path)
        return self._results


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
    meta = read_run_record(path, require_spec=True)
    if (path / MODEL_FILE).is_file():
        verify_digest(path / MODEL_FILE, (meta.get("files") or {}).get(MODEL_FILE),
                      fix=f"retrain it with python -m advrobust.train --out {path} --overwrite (same settings)")
    model, _ = load_model(path / MODEL_FILE, device=device)
    return Run(path=path, meta=meta, model=model)


_RECORD_INTS = ("params", "n", "n_test", "d", "classes", "seed", "epochs")
_RECORD_NUMS = ("train_accuracy", "test_accuracy", "train_loss", "test_loss", "wall_time_s", "label_noise")
_RECORD_TABLES = ("data_meta", "intrinsic_dim", "request", "files", "versions", "device")


def read_run_record(path: str | os.PathLike, *, require_spec: bool = False) -> dict:
    """Read ``<path>/run.json`` and check the types of the fields readers use.

    A wrong type (``spec.data`` a string, ``params`` a string, an unknown data option) is a
    UserError naming the file, the key and what it must be, not a traceback deep in a reader.
    ``require_spec``: the record must hold ``spec.data`` (what rebuilds the run's data set).
    """
    path = Path(path)
    f = path / RUN_FILE
    meta = read_json(f, what="run record")
    fix = f"restore it, or retrain with python -m advrobust.train --out {path} --overwrite"

    def bad(key: str, must: str, value: Any) -> UserError:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        got = "it is missing or null" if value is None else f"got {type(value).__name__} {shown}"
        return UserError(f"{f}: key {key!r} must be {must}, {got}; {fix}")

    if not isinstance(meta, dict):
        raise UserError(f"{f} is not an advrobust run record (expected a JSON object); {fix}")
    for key in _RECORD_INTS:
        v = meta.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise bad(key, "an integer", v)
    for key in _RECORD_NUMS:
        v = meta.get(key)
        if v is not None and v not in ("inf", "-inf") and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise bad(key, "a number", v)
    for key in _RECORD_TABLES:
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise bad(key, "a table", meta[key])
    if "spec" not in meta and not require_spec:
        return meta
    spec = meta.get("spec")
    if not isinstance(spec, dict):
        raise bad("spec", "a table with data, model and train", spec)
    data = spec.get("data")
    if not isinstance(data, dict):
        raise bad("spec.data", "a table of advrobust.data.load_dataset arguments", data)
    allowed = set(inspect.signature(load_dataset).parameters)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise UserError(f"{f}: key 'spec.data' has unknown option(s) {', '.join(map(repr, unknown))}; "
                        f"allowed: {', '.join(sorted(allowed))}; {fix}")
    for key in ("model", "train"):
        if spec.get(key) is not None and not isinstance(spec[key], dict):
            raise bad(f"spec.{key}", "a table", spec[key])
    return meta


def _hidden_below(p: Path, root: Path) -> bool:
    """True when a folder between ``root`` and ``p`` is hidden (a .partial-/.old- leftover, a temp dir)."""
    try:
        rel = p.relative_to(root)
    except ValueError:
        return False
    return any(part.startswith(".") for part in rel.parts)


def find_runs(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand arguments into run directories: a run dir itself, or every run dir below a folder."""
    out: list[Path] = []
    for p in map(Path, paths):
        if is_run_dir(p):
            out.append(p)
        elif p.is_dir():
            # hidden folders (a kill's .NAME.partial-PID / .NAME.old-PID, see docs/internals.md) are never runs
            found = sorted(q.parent for q in p.rglob(RUN_FILE)
                           if is_run_dir(q.parent) and not _hidden_below(q.parent, p))
            if not found:
                raise UserError(f"no run directories under {p} (a run directory holds {RUN_FILE} and {MODEL_FILE})")
            out.extend(found)
        else:
            raise UserError(f"run directory not found: {p}")
    return out


def results_stem(norm: str, split: str) -> str:
    """``attack-l2-train`` for norm 'l2' and split 'train'."""
    return f"attack-{norm}-{split}"


# --------------------------------------------------------------------------- a run's results (the one loader)
#: the norms and splits attack results are written for (``attack-<norm>-<split>.npz``)
RESULT_NORMS = tuple(NORMS)
RESULT_SPLITS = ("train", "test")
LIPSCHITZ_FILE = "lipschitz.json"
INTRINSIC_FILE = "intrinsic.json"


@dataclass
class RunResults:
    """A run directory's record and every result already in it; no model, nothing recomputed.

    What ``advrobust.compare`` and ``advrobust.report`` read (:func:`load_results`). ``results`` maps
    ``(norm, split)`` to ``(arrays, summary)``: the arrays of ``attack-<norm>-<split>.npz`` (always
    with ``best_radius``) and its JSON summary. ``lipschitz`` is ``lipschitz.json`` (None if absent),
    ``intrinsic`` the intrinsic-dimension record (``run.json["intrinsic_dim"]``, else
    ``intrinsic.json`` for runs trained before it was recorded; None if neither).
    """

    path: Path
    meta: dict
    results: dict = field(default_factory=dict)
    lipschitz: dict | None = None
    intrinsic: dict | None = None

    def lipschitz_entry(self, norm: str) -> dict | None:
        """The Lipschitz estimates for input norm ``norm``: ``by_norm[norm]``, or the record itself
        when it is an old single-norm record for that norm (``{"norm": ..., "margin": ...}``)."""
        lip = self.lipschitz
        if lip is None:
            return None
        by = lip.get("by_norm")
        if isinstance(by, dict) and isinstance(by.get(norm), dict):
            return by[norm]
        return lip if lip.get("norm") == norm and isinstance(lip.get("margin"), dict) else None


def result_norms(path: str | os.PathLike) -> set[str]:
    """The norms with an ``attack-<norm>-<split>.npz`` in a run directory (the files are not read)."""
    return {norm for norm in RESULT_NORMS for split in RESULT_SPLITS
            if (Path(path) / f"{results_stem(norm, split)}.npz").is_file()}


def load_results(path: str | os.PathLike, *, norms: Any = RESULT_NORMS) -> RunResults:
    """Read a run directory's ``run.json``, attack results for ``norms`` (both splits),
    ``lipschitz.json`` and intrinsic-dimension record.

    Absent files are absent entries (a run is compared and reported whatever it holds); a corrupt
    or foreign file is a :class:`UserError` naming it and the command that rewrites it.
    """
    path = Path(path)
    meta = read_run_record(path)
    out = RunResults(path=path, meta=meta)
    for norm in norms:
        for split in RESULT_SPLITS:
            npz = path / f"{results_stem(norm, split)}.npz"
            if not npz.is_file():
                continue
            arrays, summary = _load_npz_checked(npz, "attack results")
            if "best_radius" not in arrays:
                raise UserError(f"{npz} has no best_radius array; delete it and rerun {_rerun_hint(npz)}")
            out.results[(norm, split)] = (arrays, summary)
    lf = path / LIPSCHITZ_FILE
    if lf.is_file():
        lip = read_json(lf, what="Lipschitz file")
        if not isinstance(lip, dict):
            raise UserError(f"{lf} is not a Lipschitz record; delete it and rerun python -m advrobust.lipschitz {path}")
        out.lipschitz = lip
    rec = meta.get("intrinsic_dim")
    if not isinstance(rec, dict) and (path / INTRINSIC_FILE).is_file():
        rec = read_json(path / INTRINSIC_FILE, what="intrinsic-dimension record")
    out.intrinsic = rec if isinstance(rec, dict) else None
    return out


# --------------------------------------------------------------------------- locks, replacement, leftovers
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:
        return False
    return True


class DirLock:
    """An exclusive lock on a directory's contents, held while a command writes there.

    The lock is ``fcntl.flock`` on a file (``lock_path``) that records the holder's PID, host and
    command, removed on release. The kernel drops a flock when its holder dies, even by ``kill -9``,
    so the file a killed holder leaves behind is stale by construction: the next writer takes it
    over and the file then names the new holder.
    Where flock is unavailable (some network file systems), the file is created exclusively and a
    lock whose PID is dead on this host is taken over. A second writer gets a :class:`UserError`
    naming the holder's PID.
    """

    def __init__(self, lock_path: str | os.PathLike, *, what: str):
        self.path = Path(lock_path)
        self.what = what
        self._fd: int | None = None
        self._exclusive_file = False

    def _holder(self) -> dict:
        try:
            rec = json.loads(self.path.read_text(encoding="utf-8") or "{}")
            return rec if isinstance(rec, dict) else {}
        except (OSError, ValueError):
            return {}

    def _busy(self, holder: dict) -> UserError:
        pid, host = holder.get("pid", "?"), holder.get("host", "?")
        cmd = holder.get("command")
        return UserError(f"{self.what} is in use by process {pid} on {host}"
                         + (f" ({cmd[:80]})" if isinstance(cmd, str) else "")
                         + f"; wait for it to finish or stop it (lock file {self.path})")

    def _stamp(self) -> bytes:
        return (to_json({"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:200]},
                        indent=None) + "\n").encode()

    def acquire(self) -> "DirLock":
        try:
            import fcntl
        except ImportError:  # not a POSIX system
            self._acquire_by_pid()
            return self
        for _ in range(100):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _file_mode())
            except OSError as exc:
                raise disk_error(exc, self.path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._busy(self._holder()) from None
            except OSError:  # flock not supported here: exclusive creation plus the PID check
                os.close(fd)
                self._acquire_by_pid()
                return self
            try:  # the holder before us may have removed the file between our open and flock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, self._stamp(), 0)
            self._fd = fd
            return self
        raise self._busy(self._holder())

    def _acquire_by_pid(self) -> None:
        for _ in range(2):
            holder = self._holder()
            pid = holder.get("pid")
            if holder and not (isinstance(pid, int) and holder.get("host") == socket.gethostname()
                               and not _pid_alive(pid)):
                raise self._busy(holder)
            stale = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
            try:  # take a dead holder's file away (only one contender's rename succeeds)
                os.replace(self.path, stale)
                stale.unlink()
            except FileNotFoundError:
                pass
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _file_mode())
            except FileExistsError:
                continue
            os.write(fd, self._stamp())
            os.close(fd)
            self._exclusive_file = True
            return
        raise self._busy(self._holder())

    def release(self) -> None:
        if self._fd is not None:
            # remove the file while still holding the flock (a contender that opened it checks, once
            # it holds the flock, that the path still names the file it locked), then drop the flock
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
        if self._exclusive_file:
            self.path.unlink(missing_ok=True)
            self._exclusive_file = False

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def run_lock(run_dir: str | os.PathLike) -> DirLock:
    """The lock of a run directory: ``.<name>.lock`` beside it (train replaces the folder itself)."""
    run_dir = Path(os.path.abspath(run_dir))
    return DirLock(run_dir.parent / f".{run_dir.name}.lock", what=f"run directory {run_dir}")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the complete folder ``new`` at ``target``, replacing what is there.

    Where the kernel can swap two paths atomically (Linux renameat2), ``target`` holds the old
    folder or the new one at every instant; the old one, now at ``new``'s name, is then deleted.
    Elsewhere the old folder is first renamed to ``.<name>.old-<pid>``, which
    :func:`recover_leftovers` puts back if the process dies before the new one is in place.
    """
    new, target = Path(new), Path(target)
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        os.replace(new, target)  # onto nothing or an empty folder
        return
    if _exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)  # now the old run
        return
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _leftover_pid(name: str, target: str, kind: str) -> int | None:
    prefix = f".{target}.{kind}-"
    if not name.startswith(prefix):
        return None
    try:
        return int(name[len(prefix):])
    except ValueError:
        return None


def recover_leftovers(target: str | os.PathLike) -> list[str]:
    """Deal with what a killed writer of run directory ``target`` left beside it.

    ``.<name>.old-<pid>`` (the old run, moved aside by :func:`replace_dir` where paths cannot be
    swapped atomically) goes back to ``target`` if nothing is there, else is deleted;
    ``.<name>.partial-<pid>`` (a run being assembled) is deleted. Only leftovers of processes no
    longer alive are touched; call it holding :func:`run_lock`. Returns what was done, one line each.
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    done = []
    for p in sorted(target.parent.iterdir()):
        for kind in ("old", "partial"):
            pid = _leftover_pid(p.name, target.name, kind)
            if pid is None or (pid != os.getpid() and _pid_alive(pid)):
                continue
            if kind == "old" and not target.exists() and (p / RUN_FILE).is_file():
                os.replace(p, target)
                done.append(f"restored {target} from {p.name}")
            else:
                shutil.rmtree(p, ignore_errors=True)
                done.append(f"removed {p.name}")
    return done
