"""``python -m jupyter_mlcontainer.cli ARGS``: the same as ``jupyter mlcontainer ARGS`` (the tests
run the CLI this way, with the Python under test)."""

import sys

from . import main

sys.exit(main())
