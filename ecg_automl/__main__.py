"""``python -m ecg_automl`` runs the CLI."""

import sys

from ecg_automl.cli import main

sys.exit(main())
