"""``python -m advrobust``: the commands, one line each; ``python -m advrobust CMD ARGS`` runs one
(the same as ``python -m advrobust.CMD ARGS``). The list and the dispatch live in
:mod:`advrobust.cli`."""

if __name__ == "__main__":
    from advrobust.cli import main

    raise SystemExit(main())
