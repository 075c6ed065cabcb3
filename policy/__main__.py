"""CrossGuard entry point: serves infra.crossguard's policies to the Pulumi CLI.

Run by `pulumi preview --policy-pack policy`; the policies themselves live (and are
tested) in infra/, so this file only makes the project importable and starts the pack.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infra.crossguard import serve

serve()
