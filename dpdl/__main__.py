"""``python -m dpdl`` is the ``dpdl`` command."""

from dpdl.cli import main

raise SystemExit(main())
