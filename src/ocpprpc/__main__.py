"""``python -m ocpprpc serve`` / ``python -m ocpprpc station``: see :mod:`ocpprpc._cli`."""

import sys

from ._cli import main

sys.exit(main())
