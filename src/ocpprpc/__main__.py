"""``python -m ocpprpc serve`` / ``python -m ocpprpc station``: see :mod:`ocpprpc._cli.commands`."""

import sys

from ._cli.commands import main

sys.exit(main())
