"""Benchmark: our attacks vs foolbox 3's at equal steps on trained digits MLPs, and their cost.

    python experiments/bench_attacks.py                # n=200, steps=100, widths 16 and 512
    python experiments/bench_attacks.py --n 50 --steps 50 --norms l2 --sections strength

Strength section: for each model (a narrow and a wide MLP trained here on scikit-learn's digits,
full batch, to interpolation) and each norm, every attack, ours and foolbox's, runs on the same n
training points. Reported per attack: median verified radius (inf counts as larger than any
radius), success rate, wall time, passes per point. Our cascade's per-sample radius (the minimum
over the default cascade's attacks, which all run on every point) is compared with the
per-sample best of all foolbox attacks: ratio of medians and median of per-sample ratios.

Cost section: each of our minimal attacks against a bare loop that does the same number of
forward and backward passes per sample on the same batch (cross-entropy, input gradient, signed
step; see bare_loop), at each batch size of --cost-batches: wall time (fastest of alternating
repeats) and peak memory, the largest extra tensor memory held at once during one more call of
each (CUDA's max_memory_allocated on GPU; on CPU the allocation events torch.profiler records,
see peak_bytes). The timed calls run without the profiler. foolbox's FMN and DDN (--cost-foolbox)
are measured the same way, as a reference for what a published implementation costs.

Prints Markdown tables and the provenance (versions, device, threads, seed).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attacks.norms import INF, NORMS  # noqa: E402
from advrobust.evaluate import DEFAULT_CASCADES, verify  # noqa: E402
from attacks import ATTACKS  # noqa: E402
from attacks.counting import count_passes  # noqa: E402
from attacks.foolbox_adapter import foolbox_info  # noqa: E402
from experiments.memory import peak_bytes  # noqa: E402

FOOLBOX = {
    2.0: ["L2FMNAttack", "DDNAttack", "L2CarliniWagnerAttack", "L2DeepFoolAttack", "L2BrendelBethgeAttack"],
    INF: ["LInfFMNAttack", "LinfDeepFoolAttack"],
    1.0: ["L1FMNAttack", "EADAttack"],
}


def train_mlp(width: int, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0, epochs: int = 2000) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), width), nn.ReLU(), nn.Linear(width, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if loss.item() < 1e-2 and (model(x).argmax(1) == y).all():
            break
    return model.eval()


def bare_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, forward: int, backward: int) -> None:
    """``forward`` forward passes and ``backward`` input-gradient passes on the batch.

    Each forward pass is followed by a backward pass while backward passes remain, then by a
    signed step; an attack with more backward than forward passes (one backward per candidate
    class, say) gets the extra backward passes through the last graph.
    """
    xa = x.clone()
    for i in range(max(forward, backward)):
        if i < forward:
            xin = xa.detach().requires_grad_(i < backward)
            out = model(xin)
            if i >= backward:
                continue
            loss = nn.functional.cross_entropy(out, y)
        (g,) = torch.autograd.grad(loss, xin, retain_graph=i + 1 < backward and i + 1 >= forward)
        if i < forward:
            xa = (xin.detach() + 1e-3 * g.sign()).clamp(0, 1)


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t0


def run_one(fn, model, x, y, norm, device, repeats=1):
    with count_passes(model) as c:
        adv, dt = timed(lambda: fn(model, x, y), device)
    for _ in range(repeats - 1):  # the machine may be shared: keep the fastest of the repeats
        dt = min(dt, timed(lambda: fn(model, x, y), device)[1])
    r, oob, nan = verify(model, x, y, adv.detach(), norm=norm)
    return {"radius": r.cpu().numpy(), "time": dt, "fwd": c.forward, "bwd": c.backward,
            "oob": int(oob.sum()), "nan": int(nan.sum())}


def _attack_kwargs(info, norm, steps, seed):
    kw = {"norm": norm, "steps": steps}
    if "seed" in info.fn.__code__.co_varnames:
        kw["seed"] = seed
    return kw


def cost(model, x, y, norm, steps, device, seed, names, repeats, foolbox=()):
    """Time and peak memory of each attack against a bare loop of the same passes on the same batch.

    Passes are counted per sample (attacks/counting.py); the bare loop does the rounded per-sample
    numbers of forward and backward passes on the whole batch. Attack and bare loop alternate,
    ``repeats`` times each, and the fastest of each is kept; the memory of each is measured in one
    more call. ``foolbox`` names foolbox 3 attack classes measured the same way, as a reference:
    what the published implementations cost against the same bare loop.
    """
    rows = {}
    runs = []
    for name in names:
        info = ATTACKS[name]
        runs.append((name, info.fn, _attack_kwargs(info, norm, steps, seed)))
    for cls in foolbox:
        runs.append((f"fb:{cls}", foolbox_info(cls).fn, {"norm": norm, "steps": steps, "seed": seed}))
    for name, fn, kw in runs:
        run = lambda: fn(model, x, y, **kw)  # noqa: E731
        with count_passes(model) as c:
            run()
        f, b = round(c.forward / len(x)), round(c.backward / len(x))
        bare = lambda: bare_loop(model, x, y, f, b)  # noqa: E731
        t_att, t_bare = math.inf, math.inf
        for _ in range(repeats):
            t_att = min(t_att, timed(run, device)[1])
            t_bare = min(t_bare, timed(bare, device)[1])
        rows[name] = {"fwd": f, "bwd": b, "time": t_att, "bare_time": t_bare,
                      "mem": peak_bytes(run, device), "bare_mem": peak_bytes(bare, device)}
    return rows


def report_cost(width, norm, rows, steps, n):
    nm = {1.0: "L1", 2.0: "L2", INF: "Linf"}[norm]
    print(f"\n### Cost: MLP width {width}, {nm}, batch of {n}, {steps} steps\n")
    print("| attack | fwd/pt | bwd/pt | time ms | bare loop ms | time / bare | peak MiB | bare MiB | peak mem / bare |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        tr, mr = r["time"] / r["bare_time"], r["mem"] / r["bare_mem"]
        print(f"| {name} | {r['fwd']} | {r['bwd']} | {1e3 * r['time']:.1f} | {1e3 * r['bare_time']:.1f} | {tr:.3f} | "
              f"{r['mem'] / 2**20:.2f} | {r['bare_mem'] / 2**20:.2f} | {mr:.3f} |")
    if rows:
        tmax = max(rows, key=lambda k: rows[k]["time"] / rows[k]["bare_time"])
        mmax = max(rows, key=lambda k: rows[k]["mem"] / rows[k]["bare_mem"])
        print(f"\nworst time ratio {rows[tmax]['time'] / rows[tmax]['bare_time']:.3f} ({tmax}), "
              f"worst memory ratio {rows[mmax]['mem'] / rows[mmax]['bare_mem']:.3f} ({mmax})")


def _med(r: np.ndarray) -> float:
    s = np.sort(r)
    return float(s[(len(s) - 1) // 2]) if len(s) else math.nan  # lower median: inf-safe


def _f(v, digits=4):
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:.{digits}g}"


def bench(width, model, x, y, norm, steps, device, seed, skip, bb_n, bb_steps, repeats):
    ours = [n for n, i in ATTACKS.items() if i.kind == "minimal" and i.supports(norm) and n not in skip]
    rows = []
    results = {}
    for name in ours:
        info = ATTACKS[name]
        kw = _attack_kwargs(info, norm, steps, seed)
        try:
            res = run_one(lambda m, a, b: info.fn(m, a, b, **kw), model, x, y, norm, device, repeats)
        except Exception as exc:  # an unfinished attack is reported, not fatal
            rows.append((name, f"error: {type(exc).__name__}: {str(exc)[:60]}"))
            continue
        results[name] = res
    for cls in FOOLBOX[norm]:
        info = foolbox_info(cls)
        bb = "BrendelBethge" in cls
        if bb and bb_n == 0:
            continue
        if bb and importlib.util.find_spec("numba") is None:
            rows.append((f"fb:{cls}", "skipped: foolbox's Brendel-Bethge needs numba (pip install numba)"))
            continue
        xs, ys = (x[:bb_n], y[:bb_n]) if bb else (x, y)
        st = bb_steps if bb else steps
        try:
            res = run_one(lambda m, a, b: info.fn(m, a, b, norm=norm, steps=st, seed=seed), model, xs, ys, norm, device,
                          1 if bb else repeats)
        except Exception as exc:
            rows.append((f"fb:{cls}", f"error: {type(exc).__name__}: {str(exc)[:60]}"))
            continue
        if bb:  # a subset only (foolbox's Brendel-Bethge runs a per-sample solver): reported apart
            res["subset"] = len(xs)
            res["steps"] = st
        results[f"fb:{cls}"] = res
    return results, rows


def report(width, norm, results, errors, steps, n):
    nm = {1.0: "L1", 2.0: "L2", INF: "Linf"}[norm]
    print(f"\n### MLP width {width}, {nm}, {n} points, {steps} steps\n")
    print("| attack | median radius | success | time s | fwd/pt | bwd/pt |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        if "subset" in r:
            ref = {k: _med(v["radius"][: r["subset"]]) for k, v in results.items() if "subset" not in v}
            best = min(ref, key=ref.get)
            print(f"| {name} (first {r['subset']} points, {r['steps']} steps) | {_f(_med(r['radius']))} "
                  f"(best other on these points: {best} {_f(ref[best])}) | {np.isfinite(r['radius']).mean():.3f} | "
                  f"{r['time']:.2f} | {r['fwd'] / r['subset']:.0f} | {r['bwd'] / r['subset']:.0f} |")
            continue
        print(f"| {name} | {_f(_med(r['radius']))} | {np.isfinite(r['radius']).mean():.3f} | {r['time']:.2f} | "
              f"{r['fwd'] / n:.0f} | {r['bwd'] / n:.0f} |")
    for name, msg in errors:
        print(f"| {name} | {msg} | | | | |")
    ours = {k: v for k, v in results.items() if not k.startswith("fb:")}
    fb = {k: v for k, v in results.items() if k.startswith("fb:") and "subset" not in v}
    if not ours or not fb:
        return {}
    best_ours = min(ours, key=lambda k: _med(ours[k]["radius"]))
    best_fb = min(fb, key=lambda k: _med(fb[k]["radius"]))
    casc = [a for a in DEFAULT_CASCADES[norm] if a in ours]
    r_c = np.min([ours[a]["radius"] for a in casc], axis=0)
    r_fb = np.min([v["radius"] for v in fb.values()], axis=0)
    both = np.isfinite(r_c) & np.isfinite(r_fb)
    ratio_med = _med(r_c) / _med(r_fb)
    med_ratio = float(np.median(r_c[both] / r_fb[both])) if both.any() else math.nan
    print(f"\nbest single: ours {best_ours} {_f(_med(ours[best_ours]['radius']))} vs foolbox {best_fb} "
          f"{_f(_med(fb[best_fb]['radius']))}; cascade ({'+'.join(casc)}) median {_f(_med(r_c))} vs per-sample best "
          f"of foolbox {_f(_med(r_fb))}: ratio of medians {ratio_med:.4f}, median per-sample ratio {med_ratio:.4f}; "
          f"cascade unbroken {int((~np.isfinite(r_c)).sum())}, foolbox-best unbroken {int((~np.isfinite(r_fb)).sum())}")
    return {"ratio_medians": ratio_med, "median_ratio": med_ratio}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--widths", default="16,512")
    ap.add_argument("--norms", default="l2,linf,l1")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="pgd-min,apgd-min",
                    help="our attacks to leave out (the epsilon searches cost ~20x the steps)")
    ap.add_argument("--repeats", type=int, default=1, help="time each attack and bare loop this often, keep the fastest")
    ap.add_argument("--bb-n", type=int, default=25, help="points for foolbox's Brendel-Bethge (0: skip it)")
    ap.add_argument("--bb-steps", type=int, default=20, help="steps for foolbox's Brendel-Bethge")
    ap.add_argument("--sections", default="strength,cost", help="strength (ours vs foolbox), cost (ours vs bare loop)")
    ap.add_argument("--cost-batches", default="200,all",
                    help="batch sizes of the cost section (first training points; all: the whole training set)")
    ap.add_argument("--cost-skip", default="", help="our attacks to leave out of the cost section")
    ap.add_argument("--cost-foolbox", default="L2FMNAttack,DDNAttack,LInfFMNAttack,L1FMNAttack",
                    help="foolbox attacks timed against the same bare loop, as a reference ('': none)")
    ap.add_argument("--cost-repeats", type=int, default=3, help="alternating repeats of attack and bare loop")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = ap.parse_args(argv)
    cost_fb = list(filter(None, args.cost_foolbox.split(",")))
    known_fb = {c for v in FOOLBOX.values() for c in v}
    unknown_fb = [c for c in cost_fb if c not in known_fb]
    if unknown_fb:
        ap.error(f"--cost-foolbox: unknown {', '.join(unknown_fb)}; known: {', '.join(sorted(known_fb))}")
    from advrobust.data import load_dataset
    from advrobust.runs import device_info, versions

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    sections = set(args.sections.split(","))
    device = torch.device(args.device)
    ds = load_dataset("digits")
    x_tr, y_tr = ds.x_train.to(device), ds.y_train.to(device)
    batches = [len(x_tr) if b == "all" else int(b) for b in args.cost_batches.split(",")]
    print(f"# attack benchmark: digits ({len(x_tr)} train points), n={args.n}, steps={args.steps}, seed={args.seed}, "
          f"repeats={args.repeats}, skip={args.skip}, Brendel-Bethge on {args.bb_n} points with {args.bb_steps} steps; "
          f"cost batches {batches}, cost repeats {args.cost_repeats}, cost skip {args.cost_skip or '-'}")
    print("command: python " + " ".join(sys.argv))
    print(f"versions: {versions()}\ndevice: {device_info(device)}")
    t0 = time.perf_counter()
    for width in (int(w) for w in args.widths.split(",")):
        model = train_mlp(width, x_tr, y_tr, seed=args.seed).to(device)
        with torch.no_grad():
            acc = (model(x_tr).argmax(1) == y_tr).float().mean().item()
        for p in model.parameters():
            p.requires_grad_(False)
        print(f"\nMLP width {width}: {sum(p.numel() for p in model.parameters())} params, train accuracy {acc:.4f}")
        x, y = x_tr[: args.n], y_tr[: args.n]
        for norm in (NORMS[s] for s in args.norms.split(",")):
            if "strength" in sections:
                results, errors = bench(width, model, x, y, norm, args.steps, device, args.seed,
                                        set(filter(None, args.skip.split(","))), args.bb_n, args.bb_steps,
                                        args.repeats)
                report(width, norm, results, errors, args.steps, len(x))
            if "cost" in sections:
                skip = set(filter(None, args.cost_skip.split(",")))
                names = [k for k, i in ATTACKS.items() if i.kind == "minimal" and i.supports(norm) and k not in skip]
                fb = [c for c in cost_fb if c in FOOLBOX[norm]]
                for nb in batches:
                    rows = cost(model, x_tr[:nb], y_tr[:nb], norm, args.steps, device, args.seed, names,
                                args.cost_repeats, fb)
                    report_cost(width, norm, rows, args.steps, nb)
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
