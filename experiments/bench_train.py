"""Overhead of ``advrobust.train.train`` against a bare hand-written PyTorch loop.

Usage::

    python experiments/bench_train.py [--reps 7] [--threads 1] [--only NAME ...] [--json]

For each workload both implementations start from the same initial weights (``build_model``
with one seed), see the same tensors, build the same optimiser and take the same optimiser steps
in the same minibatch order; the script checks that they end with bit-identical weights, so the
comparison is of the same work. ``train`` additionally does what its contract requires: the
per-epoch interpolation check (interpolate mode), the loss history, a final evaluation on the
training and test sets (a fixed cost of about (n + n_test) / n / 3 of an epoch's work, which
is why very short budgets show the largest ratios), and (``train+bar``) a tqdm progress bar written to a discarded stream.

Time. One process, implementations alternated (and their order swapped every repetition) so
machine load drifts hit both alike; each number is the median of ``--reps`` (>= 5) timed calls,
after one untimed warm-up call of each. Ratio = median(train) / median(bare); target <= 1.10.

Memory. Python's ``tracemalloc`` does not see tensor storage (PyTorch allocates it in C++), and
``torch.cuda.max_memory_allocated`` exists only on GPUs. So we record every allocation and free
of PyTorch's CPU allocator during one call with ``torch.profiler`` (``profile_memory=True``; the
``[memory]`` events of its Kineto results, each with a signed byte count), replay them in time
order and take the peak of the running sum: the largest number of tensor bytes the call had
live at once beyond what existed before it (activations, gradients, optimiser state, evaluation
buffers, history). It is exact and deterministic, unlike RSS, which for these small workloads
mostly shows where glibc happened to place a few hundred KiB. Ratio = train / bare; target
<= 1.2. ``--rss`` adds the operating system's view: each (workload, implementation) in a fresh
subprocess that warms both implementations up on 8 points (imports, lazy set-ups), resets the
peak-RSS counter (``echo 5 > /proc/self/clear_refs``) and reports ``VmHWM`` minus the RSS before
the call (median of 3 subprocesses; noisy below a few MiB). With ``--device cuda`` the allocator
peak comes from ``torch.cuda.max_memory_allocated`` instead.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from advrobust.data import load_dataset  # noqa: E402
from advrobust.models import build_model, make_spec, param_count  # noqa: E402
from advrobust.train import TrainConfig, train  # noqa: E402
from experiments.memory import peak_bytes  # noqa: E402


@dataclass(frozen=True)
class Workload:
    name: str
    data: dict
    family: str
    width: int
    batch_size: int | None
    mode: str
    epochs: int


WORKLOADS = [
    Workload("digits-mlp64-full-budget", {"name": "digits"}, "mlp", 64, None, "budget", 300),
    Workload("digits-mlp64-full-interpolate", {"name": "digits"}, "mlp", 64, None, "interpolate", 3000),
    Workload("digits-mlp64-batch128", {"name": "digits"}, "mlp", 64, 128, "budget", 30),
    Workload("digits-cnn4-batch64", {"name": "digits"}, "cnn", 4, 64, "budget", 8),
    Workload("gaussian-mlp512-full", {"name": "gaussian", "n": 2048, "n_test": 512, "dim": 256, "classes": 10},
             "mlp", 512, None, "budget", 20),
]


def _setup(w: Workload, seed: int = 0):
    data = load_dataset(**w.data, seed=seed)
    spec = make_spec(w.family, w.width, input_shape=data.input_shape, classes=data.classes)
    return data, spec


def _config(w: Workload, device: str, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(batch_size=w.batch_size, mode=w.mode if epochs is None else "budget",
                       epochs=w.epochs if epochs is None else epochs, device=device)


def bare_loop(model, x, y, cfg: TrainConfig, epochs: int) -> None:
    """What one would write by hand: the same optimiser (fused Adam, as train uses), loss, steps
    and minibatch order."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, fused=True)
    n = y.shape[0]
    batch = n if cfg.batch_size is None else min(cfg.batch_size, n)
    if batch == n:
        for _ in range(epochs):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(x.device)
        for i in range(0, n, batch):
            rows = order[i:i + batch]
            loss = F.cross_entropy(model(x[rows]), y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _run(impl: str, model, data, x, y, cfg: TrainConfig, steps_epochs: int):
    if impl == "bare":
        bare_loop(model, x, y, cfg, steps_epochs)
        return None
    if impl == "train":
        return train(model, data, cfg, progress=False)
    with contextlib.redirect_stderr(io.StringIO()):  # train+bar: the progress bar, drawn to a discarded stream
        return train(model, data, cfg, progress=True)


def _bare_epochs(w: Workload, data, spec, cfg: TrainConfig) -> int:
    """Epochs the bare loop runs: the budget, or as many as train() needed to interpolate."""
    if w.mode == "budget":
        return w.epochs
    rec = train(build_model(spec, seed=cfg.seed), data, cfg, progress=False)
    return rec["epochs"]


def time_workload(w: Workload, *, reps: int, device: str) -> dict:
    data, spec = _setup(w)
    cfg = _config(w, device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    epochs = _bare_epochs(w, data, spec, cfg)
    impls = ["bare", "train", "train+bar"]
    times = {k: [] for k in impls}
    finals = {}
    for rep in range(reps + 1):  # rep 0 is the warm-up
        order = impls if rep % 2 == 0 else impls[::-1]
        for impl in order:
            model = build_model(spec, seed=cfg.seed).to(device)
            _sync(device)
            t0 = time.perf_counter()
            _run(impl, model, data, x, y, cfg, epochs)
            _sync(device)
            if rep:
                times[impl].append(time.perf_counter() - t0)
            finals[impl] = [p.detach().cpu().clone() for p in model.parameters()]
    same = all(torch.equal(a, b) for impl in impls[1:] for a, b in zip(finals["bare"], finals[impl]))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"workload": w.name, "params": param_count(spec), "n": data.meta["n"], "epochs": epochs,
            "batch_size": w.batch_size, "mode": w.mode, "same_final_weights": same,
            "median_s": med, "min_s": {k: min(v) for k, v in times.items()},
            "time_ratio": med["train"] / med["bare"], "time_ratio_with_bar": med["train+bar"] / med["bare"]}


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def allocator_peak(w: Workload, impl: str, *, device: str) -> int:
    """Peak bytes of tensors live at once during one call, beyond those alive before it."""
    data, spec = _setup(w)
    cfg = _config(w, device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    epochs = _bare_epochs(w, data, spec, cfg)
    model = build_model(spec, seed=cfg.seed).to(device)
    return int(peak_bytes(lambda: _run(impl, model, data, x, y, cfg, epochs), torch.device(device)))


def memory_child(name: str, impl: str, device: str) -> dict:
    """Runs in a subprocess: peak extra memory of one call of ``impl`` on workload ``name``."""
    w = next(w for w in WORKLOADS if w.name == name)
    data, spec = _setup(w)
    cfg = _config(w, device)
    x, y = data.x_train.to(device), data.y_train.to(device)
    epochs = _bare_epochs(w, data, spec, cfg)
    # Warm-up of both implementations on 8 points with a width-1 model: imports (tqdm, the
    # optimiser's torch._dynamo) and lazy one-off set-ups happen here, while the allocator's
    # caches stay nearly empty, so the measured call pays for its own tensors.
    tiny_spec = make_spec(w.family, 1, input_shape=data.input_shape, classes=data.classes)
    tiny = SimpleNamespace(x_train=data.x_train[:8].clone(), y_train=data.y_train[:8].clone(),
                           y_train_clean=data.y_train[:8].clone(), x_test=data.x_test[:8].clone(),
                           y_test=data.y_test[:8].clone())
    for warm in ("bare", "train"):
        _run(warm, build_model(tiny_spec).to(device), tiny, tiny.x_train.to(device), tiny.y_train.to(device),
             _config(w, device, epochs=1), 1)
    model = build_model(spec, seed=cfg.seed).to(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        _run(impl, model, data, x, y, cfg, epochs)
        torch.cuda.synchronize()
        return {"peak_extra_bytes": torch.cuda.max_memory_allocated() - before, "how": "cuda max_memory_allocated"}
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    before = _status_kb("VmRSS")
    _run(impl, model, data, x, y, cfg, epochs)
    return {"peak_extra_bytes": (_status_kb("VmHWM") - before) * 1024, "how": "VmHWM - VmRSS (KiB pages)"}


def memory_workload(w: Workload, *, device: str) -> dict:
    peaks = {impl: allocator_peak(w, impl, device=device) for impl in ("bare", "train")}
    return {"peak_mib": {k: v / 2**20 for k, v in peaks.items()},
            "memory_ratio": peaks["train"] / peaks["bare"] if peaks["bare"] > 0 else float("nan")}


def rss_workload(w: Workload, *, device: str, threads: int, repeats: int = 3) -> dict:
    peaks = {"bare": [], "train": []}
    for _ in range(repeats):
        for impl in peaks:
            cmd = [sys.executable, __file__, "--child", w.name, impl, "--device", device, "--threads", str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
            peaks[impl].append(json.loads(out.stdout.strip().splitlines()[-1])["peak_extra_bytes"])
    med = {k: statistics.median(v) for k, v in peaks.items()}
    return {"rss_peak_extra_mib": {k: v / 2**20 for k, v in med.items()},
            "rss_ratio": med["train"] / med["bare"] if med["bare"] > 0 else float("nan"),
            "rss_samples_mib": {k: [round(b / 2**20, 2) for b in v] for k, v in peaks.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7, help="timed repetitions per implementation (>= 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="*", default=None, help="workload names to run")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory measurement")
    ap.add_argument("--rss", action="store_true", help="also measure peak RSS in subprocesses (slow, noisy)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs=2, metavar=("WORKLOAD", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(memory_child(*args.child, args.device)))
        return 0
    if args.reps < 5:
        ap.error("--reps must be >= 5 (medians of fewer are too noisy)")
    chosen = [w for w in WORKLOADS if args.only is None or w.name in args.only]
    from advrobust.runs import device_info, versions

    results = []
    for w in chosen:
        r = time_workload(w, reps=args.reps, device=args.device)
        if not args.no_memory:
            r.update(memory_workload(w, device=args.device))
        if args.rss:
            r.update(rss_workload(w, device=args.device, threads=args.threads))
        results.append(r)
        if not args.json:
            mem = "" if args.no_memory else (f"  tensors peak {r['peak_mib']['train']:.3f}/{r['peak_mib']['bare']:.3f} MiB"
                                             f" ratio {r['memory_ratio']:.3f}")
            if args.rss:
                mem += (f"  RSS {r['rss_peak_extra_mib']['train']:.2f}/{r['rss_peak_extra_mib']['bare']:.2f} MiB"
                        f" ratio {r['rss_ratio']:.3f}")
            print(f"{w.name:30s} p={r['params']:<7d} epochs={r['epochs']:<5d} "
                  f"bare {r['median_s']['bare']:.3f}s train {r['median_s']['train']:.3f}s "
                  f"ratio {r['time_ratio']:.3f} (with bar {r['time_ratio_with_bar']:.3f})"
                  f"{mem}  same weights: {r['same_final_weights']}", flush=True)
    summary = {"results": results, "reps": args.reps, "threads": args.threads, "device": device_info(args.device),
               "versions": versions(), "command": " ".join(["python", "experiments/bench_train.py", *(argv or sys.argv[1:])])}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        worst_t = max(r["time_ratio"] for r in results)
        line = f"worst time ratio {worst_t:.3f} (target <= 1.10)"
        if not args.no_memory:
            line += f"; worst memory ratio {max(r['memory_ratio'] for r in results):.3f} (target <= 1.2)"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
