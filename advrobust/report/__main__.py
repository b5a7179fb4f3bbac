"""``python -m advrobust.report``: the command line lives in :mod:`advrobust.cli.report`."""
from advrobust.cli.report import main
from advrobust.cli._common import run_main

raise SystemExit(run_main(main))
