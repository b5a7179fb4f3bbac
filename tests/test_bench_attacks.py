"""The attack benchmark's cost section measures what it says: its bare loop does exactly the
passes it is asked for, and its rows (ours and foolbox's) count the same passes as the attack."""
import importlib.util
import math
from pathlib import Path

import pytest
import torch

from attacks.counting import count_passes
from _nets import random_mlp

_SPEC = importlib.util.spec_from_file_location(
    "bench_attacks", Path(__file__).resolve().parents[1] / "experiments" / "bench_attacks.py")
bench = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(bench)


def _model_and_data(n=6):
    model = random_mlp(0, 8, [5])
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(n, 1, 2, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


@pytest.mark.parametrize("forward, backward", [(4, 4), (3, 7), (5, 2)])
def test_bare_loop_does_exactly_the_requested_passes(forward, backward):
    model, x, y = _model_and_data()
    with count_passes(model) as c:
        bench.bare_loop(model, x, y, forward, backward)
    assert (c.forward, c.backward) == (forward * len(x), backward * len(x))


def test_cost_rows_for_ours_and_foolbox_match_the_attack_passes():
    model, x, y = _model_and_data()
    rows = bench.cost(model, x, y, 2.0, 3, torch.device("cpu"), 0, ["fmn"], 1, ["DDNAttack"])
    assert list(rows) == ["fmn", "fb:DDNAttack"]
    with count_passes(model) as c:
        bench.ATTACKS["fmn"].fn(model, x, y, norm=2.0, steps=3)
    assert (rows["fmn"]["fwd"], rows["fmn"]["bwd"]) == (round(c.forward / len(x)), round(c.backward / len(x)))
    for r in rows.values():
        assert r["fwd"] >= 3 and r["bwd"] >= 3
        assert all(math.isfinite(r[k]) and r[k] > 0 for k in ("time", "bare_time", "mem", "bare_mem"))
