"""``python -m advrobust``: lists every command, runs one, and rejects unknown ones with exit 2."""
from __future__ import annotations

import subprocess
import sys

from advrobust.__main__ import COMMANDS, command_module, main


def test_every_listed_command_is_a_module_with_main():
    for name, text in COMMANDS:
        module = command_module(name)
        assert callable(module.main) and text


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
        module = command_module(name)
        try:
            module.main([])
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
