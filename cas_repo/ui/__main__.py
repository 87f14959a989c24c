"""``python -m cas_repo.ui [--repo STORE] [--host H] [--port P]``: the same as ``cas-repo ui``."""

import sys

from ..cli import main

sys.exit(main(["ui", *sys.argv[1:]]))
