"""Allow ``python -m v4runtime``."""

import sys

from v4runtime.cli import main

sys.exit(main())
