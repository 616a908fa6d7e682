"""``python -m thyronet`` runs the command line."""

import sys

from thyronet.apps.cli import main

sys.exit(main())
