"""``python -m mailer.faults``: see :mod:`mailer.faults.cli`."""

from mailer.faults.cli import main

raise SystemExit(main())
