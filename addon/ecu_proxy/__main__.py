"""Allow ``python -m ecu_proxy``."""

import sys

from .cli import main

sys.exit(main())
