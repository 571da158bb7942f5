"""``python -m torsion``: the ``torsion`` command line, as the console script runs it."""

import sys

from torsion import main

if __name__ == "__main__":
    sys.exit(main())
