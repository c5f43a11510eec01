"""`python -m campaigns COMMAND`: see campaigns.cli."""

from campaigns.cli import main

raise SystemExit(main())
