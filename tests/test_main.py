"""``python -m advrobust``: lists every command, runs one, and rejects unknown ones with exit 2."""
from __future__ import annotations

import runpy
import subprocess
import sys

import pytest

from advrobust.cli import COMMANDS, command_main, main


def test_every_listed_command_is_a_module_with_main():
    for name, text in COMMANDS:
        assert callable(command_main(name)) and text


# runpy warns that the module was imported before it is run as __main__: that import is the point
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("name", ["train", "attack", "lipschitz", "sweep", "intrinsic", "compare", "report"])
def test_library_module_runs_its_command_through_its_main_guard(name, monkeypatch, capsys):
    """``python -m advrobust.CMD`` (the library module's ``__main__`` guard, run here in-process by
    runpy) runs the command line of ``advrobust.cli.CMD``: the same help, the same usage errors."""
    def run(module: str, *argv: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", [module, *argv])
        with pytest.raises(SystemExit) as stop:
            runpy.run_module(module, run_name="__main__", alter_sys=False)
        out = capsys.readouterr()
        return stop.value.code, out.out, out.err

    code, text, _ = run(f"advrobust.{name}", "--help")
    assert code == 0 and f"usage: python -m advrobust.{name}" in text
    assert run(f"advrobust.cli.{name}", "--help") == (0, text, "")
    code, _, err = run(f"advrobust.{name}", "--no-such-flag")
    assert code == 2 and err.startswith("error: ") and err.endswith(f"(see python -m advrobust.{name} --help)\n")
    assert len(err.splitlines()) == 1


def test_lists_commands_and_rejects_unknown(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name}" in out for name, _ in COMMANDS)
    assert main(["nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown command 'nosuch'")


def test_dispatches_to_the_command(tmp_path):
    missing = tmp_path / "nope"
    proc = subprocess.run([sys.executable, "-m", "advrobust", "attack", str(missing)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: run directory not found: {missing} "
                                                f"(create one with python -m advrobust.train --out {missing})"]


def test_every_flag_of_every_command_has_help(monkeypatch):
    """Walks each command's parser (caught at parse_args) and checks every argument has help text."""
    import argparse

    class Got(Exception):
        pass

    def grab(self, *a, **k):
        raise Got(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    seen = 0
    for name, _ in COMMANDS:
        try:
            command_main(name)([])
        except Got as g:
            parser = g.args[0]
        else:
            raise AssertionError(f"{name}.main never parsed its arguments")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            seen += 1
            assert action.help and action.help != argparse.SUPPRESS, (name, action.option_strings or action.dest)
    assert seen > 50
