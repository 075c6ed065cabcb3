"""``python -m model.cloud``: the cloud run without the script (same function it calls)."""

import sys

from model.cloud.run import main

if __name__ == "__main__":
    sys.exit(main())
