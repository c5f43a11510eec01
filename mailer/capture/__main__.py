"""``python -m mailer.capture``: see :mod:`mailer.capture.cli`."""

from mailer.capture.cli import main

raise SystemExit(main())
