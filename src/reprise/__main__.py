"""``python -m reprise``: the ``reprise`` command, for when its script is not on ``PATH``."""

import sys

from reprise.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
