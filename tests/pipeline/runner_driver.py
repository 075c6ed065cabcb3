"""A local transform in its own process, on the stand-in server, for signal tests.

    python runner_driver.py INPUT OUTPUT [DELAY]

Runs exactly what ``scripts/local_transform.py`` runs around the job (``run_main``:
one-line errors, exit 130 on SIGINT and 143 on SIGTERM), with ``fake_server.py`` as
the model server so a test can interrupt it at any moment within a second.
"""

from __future__ import annotations

import sys
from pathlib import Path

from model.artifact import write_archive_bytes
from model.batch.local import ServerOptions, run_local_transform
from model.batch.params import TransformJobParameters
from model.console import run_main

FAKE = (sys.executable, str(Path(__file__).with_name("fake_server.py")))


def main() -> int:
    input_dir, output_dir = Path(sys.argv[1]), Path(sys.argv[2])
    delay = sys.argv[3] if len(sys.argv) > 3 else "0.01"
    archive = output_dir.parent / "model.tar.gz"

    def job() -> int:
        write_archive_bytes({"model.joblib": b"not used"}, archive)
        result = run_local_transform(
            archive,
            input_dir,
            output_dir,
            TransformJobParameters(
                MaxPayloadInMB=1, MaxConcurrentTransforms=2, Environment={"FAKE_DELAY": delay}
            ),
            server=ServerOptions(command=FAKE),
        )
        print(result.transform.status, flush=True)
        return 0 if result.transform.status == "Completed" else 1

    return run_main(job)


if __name__ == "__main__":
    sys.exit(main())
