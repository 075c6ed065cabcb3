"""What report.html costs the local job: whole runs with and without it, side by side.

    uv run python bench/report_html.py [--rounds 3] [--rows 100000]

Each round runs ``scripts/train_and_transform.py --local`` twice in fresh
processes (so matplotlib's import is paid every time, as a user pays it), once
as it is and once with the report step replaced by a no-op, alternating which
goes first. Prints min/median/max wall time of both and their ratio, plus the
report step alone. Target: the report adds under 10% to a default run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = """
import sys, time
mode = sys.argv[1]
sys.argv = ["train_and_transform.py", *sys.argv[2:]]
sys.path.insert(0, {scripts!r})
import model.pipeline, model.report_html
real = model.report_html.add_html_report
def timed(workdir, summary):
    started = time.perf_counter()
    path = real(workdir, summary)
    print(f"REPORT_SECONDS {{time.perf_counter() - started:.3f}}", file=sys.stderr)
    return path
model.pipeline.add_html_report = timed if mode == "with" else (lambda *a: None)
import train_and_transform
sys.exit(train_and_transform.main())
"""


def run_once(mode: str, rows: int, workdir: Path) -> tuple[float, float | None]:
    """Wall seconds of one whole run, and the report step's seconds (with the report)."""
    code = RUN.format(scripts=str(ROOT / "scripts"))
    argv = [sys.executable, "-c", code, mode, "--local", "--rows", str(rows), "--no-progress"]
    argv += ["--workdir", str(workdir)]
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"run failed ({mode}):\n{proc.stderr[-2000:]}")
    if mode == "with" and not (workdir / "report.html").is_file():
        sys.exit("the run with the report wrote no report.html")
    report = [line for line in proc.stderr.splitlines() if line.startswith("REPORT_SECONDS")]
    return elapsed, float(report[0].split()[1]) if report else None


def stats(values: list[float]) -> str:
    return (
        f"min {min(values):6.2f}  median {statistics.median(values):6.2f}  max {max(values):6.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"with": [], "without": []}
    report_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-report-") as temp:
        for round_index in range(args.rounds):
            order = ["with", "without"] if round_index % 2 == 0 else ["without", "with"]
            for mode in order:
                elapsed, report = run_once(mode, args.rows, Path(temp) / f"{mode}-{round_index}")
                times[mode].append(elapsed)
                if report is not None:
                    report_seconds.append(report)
                print(f"round {round_index + 1} {mode:>7} report: {elapsed:6.2f} s", flush=True)
    print(f"\nlocal job, {args.rows:,} rows, {args.rounds} rounds (seconds, whole process)")
    print(f"  without report  {stats(times['without'])}")
    print(f"  with report     {stats(times['with'])}")
    print(f"  report step     {stats(report_seconds)}")
    ratio = statistics.median(times["with"]) / statistics.median(times["without"])
    share = statistics.median(report_seconds) / statistics.median(times["with"])
    print(f"  ratio with/without (medians) {ratio:.3f}  (target < 1.10)")
    print(f"  report step / whole run (medians) {share:.1%}  (the part noise cannot hide)")
    return 0 if ratio < 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
