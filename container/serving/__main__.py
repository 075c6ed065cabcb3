"""`python -m serving [serve]`, the image's ENTRYPOINT; same as the `serve` script."""

import sys

from serving.cli import main

sys.exit(main())
