"""Count the samples an attack passes forward and backward through a model.

The cost of an attack is reported in samples, not calls: a forward pass on a batch of 32
counts 32, so attacks that shrink their batch as points break are credited for it.

Usage::

    with count_passes(model) as counter:
        adv = attack(model, x, y, norm=2.0, steps=100)
    counter.forward, counter.backward   # ints, samples

Forward passes are counted by a forward hook on ``model`` (the batch size of the first input);
backward passes by a tensor hook attached to the model's output, which fires when a gradient
flows back through the output (via ``.backward()`` or ``torch.autograd.grad``). A backward pass
that flows through the same output twice counts twice. Hooks are removed on exit even when the
attack raises.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from torch import Tensor, nn


@dataclass
class PassCounter:
    """Running totals, in samples."""

    forward: int = 0
    backward: int = 0
    calls_forward: int = 0
    calls_backward: int = 0


def _batch_size(obj) -> int:
    if isinstance(obj, Tensor):
        return int(obj.shape[0]) if obj.ndim > 0 else 1
    if isinstance(obj, (tuple, list)) and obj:
        return _batch_size(obj[0])
    return 0


@contextmanager
def count_passes(model: nn.Module) -> Iterator[PassCounter]:
    """Count samples passed forward and backward through ``model`` inside the block.

    Parameters
    ----------
    model : nn.Module
        The module to instrument (its top level: inner submodules are not counted twice).

    Yields
    ------
    PassCounter
        Updated in place; read ``forward`` and ``backward`` after the block.
    """
    counter = PassCounter()

    def on_forward(_module, args, output):
        n = _batch_size(args)
        counter.forward += n
        counter.calls_forward += 1
        if isinstance(output, Tensor) and output.requires_grad:
            def on_grad(grad: Tensor) -> None:
                counter.backward += n
                counter.calls_backward += 1

            output.register_hook(on_grad)

    handle = model.register_forward_hook(on_forward)
    try:
        yield counter
    finally:
        handle.remove()


__all__ = ["PassCounter", "count_passes"]
