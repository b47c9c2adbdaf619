"""``python -m mlipress``: the command line (:func:`mlipress.cli.main`)."""

from mlipress.cli import main

raise SystemExit(main())
