"""``python -m budget_manager.cli``: the ``budget-manager`` command."""

import sys

from . import main

sys.exit(main())
