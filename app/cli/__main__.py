"""``python -m runlake.app.cli``: the same as the ``runlake`` console script."""

import sys

from runlake.app.cli import main

sys.exit(main())
