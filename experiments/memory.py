"""Peak tensor memory of one call, shared by the benchmarks (bench_attacks, bench_train)."""
from __future__ import annotations

import gc

import torch


def peak_bytes(fn, device: torch.device) -> float:
    """Peak bytes of tensors alive at once while ``fn()`` runs, beyond those alive before it.

    CUDA: the caching allocator's max_memory_allocated. CPU: ``torch.profiler`` with
    ``profile_memory=True`` records every allocation and free of PyTorch's CPU allocator; the
    peak of their running sum, in time order, is the largest extra tensor memory held at once.
    (The process's resident set is no use here: the tensors of these attacks are kilobytes, below
    the C allocator's granularity, and what it keeps cached depends on what ran before.)
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - base)
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()  # > 0 allocation, < 0 free
        peak = max(peak, live)
    return float(peak)
