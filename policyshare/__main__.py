"""``python -m policyshare`` runs the command line."""

from policyshare.cli import main

raise SystemExit(main())
