"""Run a Batch Transform over a directory against a model server that is already up.

What SageMaker does, reproduced on one machine (../shared/notes/sagemaker-contract.md):
every file under the input path (recursively) is split into mini-batches
(``records``), ``MaxConcurrentTransforms`` requests are in flight at any time
(one thread and one keep-alive connection each), answers are assembled in input
order into ``<relative path>.out`` (``assembly``), and a file whose request keeps
failing gets no ``.out`` while the other files still finish. The run then ends
``Failed`` with a reason naming each failed file and the record.

Failures are named by ``explain`` (the record, or the batch's line range). A
``ServerWatch`` stops the whole run at once when the server dies or hangs, instead
of spending every remaining request's retries and timeouts on it. Every way out
(success, failure, Ctrl-C, SIGTERM, a dead server) removes this run's temporary
files, with Ctrl-C / SIGTERM held back while that clean-up runs; the temporary files
of earlier runs that were killed are removed when the next run starts.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from model.batch.assembly import (
    AtomicOutput,
    OutputProcessor,
    remove_own_temp_files,
    remove_stale_temp_files,
)
from model.batch.client import InvocationClient, InvocationError, IsolationGate
from model.batch.explain import explain_failure
from model.batch.filejob import (
    FileJob,
    FileResult,
    ProgressCallback,
    TransformResult,
    write_failure,
)
from model.batch.health import ServerWatch
from model.batch.inputs import (
    InputError,
    InputFile,
    OutputError,
    discover_inputs,
    prepare_output_dir,
    sniff_content_type,
)
from model.batch.params import ResolvedParameters
from model.batch.records import Batch, RecordError, iter_batches
from model.batch.server import ServerError

__all__ = [
    "FileResult",
    "InputError",
    "InputFile",
    "OutputError",
    "ProgressCallback",
    "TransformResult",
    "discover_inputs",
    "prepare_output_dir",
    "run_batch_transform",
    "sniff_content_type",
]


def run_batch_transform(
    host: str,
    port: int,
    inputs: Iterable[InputFile],
    output_dir: Path,
    parameters: ResolvedParameters,
    *,
    on_progress: ProgressCallback | None = None,
    watch: ServerWatch | None = None,
) -> TransformResult:
    """Transform every input file into ``output_dir`` against the server at host:port.

    Returns normally also when files failed (``result.status == "Failed"``). Raises
    ServerError when ``watch`` finds the server gone or hung (the files finished
    before keep their ``.out``), and re-raises Ctrl-C / SIGTERM; every temporary file
    is removed on every way out, and those of killed earlier runs on the way in.
    """
    if output_dir.is_dir():
        remove_stale_temp_files(output_dir)
    run = _Run(host, port, list(inputs), output_dir, parameters, on_progress, watch)
    started = time.perf_counter()
    try:
        run.execute()
    except BaseException:
        with _deferred_signals():
            run.shut_down()
        raise
    if run.fatal:
        with _deferred_signals():
            run.shut_down()
        written = sum(1 for job in run.jobs if job.finished_ok)
        raise ServerError(
            f"{run.fatal[0]} ({written} of {len(run.files)} files were written before it; "
            "the others have no .out)"
        )
    seconds = time.perf_counter() - started
    return TransformResult(
        files=[job.result() for job in run.jobs],
        parameters=parameters,
        seconds=seconds,
        input_bytes=sum(f.size for f in run.files),
    )


class _Run:
    """One transform: the feeding loop (main thread), the workers and the watch."""

    def __init__(
        self,
        host: str,
        port: int,
        files: list[InputFile],
        output_dir: Path,
        parameters: ResolvedParameters,
        on_progress: ProgressCallback | None,
        watch: ServerWatch | None,
    ) -> None:
        job = parameters.job
        self.files = files
        self.output_dir = output_dir
        self.parameters = parameters
        self.on_progress = on_progress
        self.watch = watch
        self.processor = OutputProcessor(parameters)
        concurrency = parameters.MaxConcurrentTransforms
        self.work: queue.Queue[tuple[FileJob, Batch] | None] = queue.Queue(maxsize=2 * concurrency)
        self.stop = threading.Event()
        self.done = threading.Event()
        self.fatal: list[str] = []
        self.jobs: list[FileJob] = []
        self.gate = IsolationGate()  # a batch that crashed a worker is retried alone
        self.clients = [
            InvocationClient(
                host,
                port,
                content_type=job.ContentType,
                accept=job.Accept,
                timeout=job.InvocationsTimeoutInSeconds,
                max_retries=job.InvocationsMaxRetries,
                on_answer=watch.answered if watch is not None else None,
                gate=self.gate,
            )
            for _ in range(concurrency)
        ]
        self.threads = [
            threading.Thread(
                target=self._worker, args=(client,), name=f"transform-{n}", daemon=True
            )
            for n, client in enumerate(self.clients)
        ]
        if watch is not None:
            self.threads.append(
                threading.Thread(target=self._watch, name="transform-watch", daemon=True)
            )

    def execute(self) -> None:
        """Feed every file's batches to the workers and wait for them."""
        for thread in self.threads:
            thread.start()
        job_parameters = self.parameters.job
        for source in self.files:
            if self.stop.is_set():
                break
            job = _open_job(source, self.output_dir, self.on_progress)
            self.jobs.append(job)
            if job.failed:
                job.close()
                continue
            try:
                with source.path.open("rb") as stream:
                    for batch in iter_batches(
                        stream,
                        limit=self.parameters.max_payload_bytes,
                        split_type=job_parameters.SplitType,
                        batch_strategy=self.parameters.BatchStrategy,
                        row_filter=job_parameters.input_filter,
                        binary=job_parameters.is_binary,
                    ):
                        if self.stop.is_set():
                            job.fail("interrupted")  # never published short of its batches
                        if job.failed:
                            break
                        job.submitted()
                        if not _put(self.work, (job, batch), self.stop):
                            job.fail("interrupted")
                            job.batch_done()  # never handed to a worker
            except RecordError as error:
                job.fail(str(error))
            except OSError as error:
                job.fail(f"cannot read the file ({error.strerror or error})")
            except BaseException:  # Ctrl-C / SIGTERM mid-file: never publish what was read
                job.fail("interrupted")
                raise
            finally:
                job.close()
        workers = self.threads[: len(self.clients)]
        for _ in workers:
            _put(self.work, None, self.stop)
        for thread in workers:
            while thread.is_alive() and not self.stop.is_set():
                thread.join(timeout=0.5)
        self.done.set()

    def _worker(self, client: InvocationClient) -> None:
        while True:
            item = self.work.get()
            if item is None:
                client.close()
                return
            job, batch = item
            try:
                if self.stop.is_set():
                    job.fail("interrupted")  # never committed short of this batch
                if job.failed:
                    continue
                sent_before = client.requests_sent
                try:
                    response = client.invoke(batch.payload)
                except InvocationError as failure:
                    if failure.status is None and self.watch is not None:
                        gone = self.watch.gone()  # not this file's fault: the server died
                        if gone is not None:
                            self._fail_run(gone)
                    if not self.stop.is_set():
                        job.fail(explain_failure(client, batch, failure))
                    continue
                finally:
                    job.sent(client.requests_sent - sent_before)
                job.deliver(batch, self.processor.process(batch, response))
            except RecordError as error:
                job.fail(str(error))
            except OSError as error:  # writing the .out
                job.fail(write_failure(job, error))
            except Exception as error:  # one file's bug must not stop the others
                job.fail(f"{batch.describe_lines()}: unexpected error: {error!r}")
            finally:
                job.batch_done()

    def _watch(self) -> None:
        assert self.watch is not None
        while not self.done.wait(_WATCH_INTERVAL):
            reason = self.watch.problem()
            if reason is not None:
                self._fail_run(reason)
                return

    def _fail_run(self, reason: str) -> None:
        """The server is gone or hung: stop every request, fail the run with ``reason``."""
        if not self.fatal:
            self.fatal.append(reason)
        self.stop.set()
        self.gate.close()
        for client in self.clients:
            client.abort()

    def shut_down(self) -> None:
        """Stop everything in flight, drop unfinished files, join the threads."""
        self.stop.set()
        self.done.set()
        self.gate.close()
        for client in self.clients:
            client.abort()
        for job in self.jobs:
            job.abandon()
        _release(self.work, len(self.clients))
        deadline = time.monotonic() + _JOIN_SECONDS
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        remove_own_temp_files(self.output_dir)


_WATCH_INTERVAL = 0.5
_JOIN_SECONDS = 10.0


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold Ctrl-C / SIGTERM while cleaning up, then deliver them: a second Ctrl-C
    must not cut the clean-up short and leave temporary files behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda signum, _: caught.append(signum)) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signal.raise_signal(caught[0])


def _open_job(source: InputFile, output_dir: Path, on_progress: ProgressCallback | None) -> FileJob:
    target = output_dir / source.output_name
    try:
        return FileJob(source, AtomicOutput(target), on_progress)
    except OSError as error:
        job = FileJob(source, None, on_progress)
        job.fail(f"cannot create {target}: {error.strerror or error}")
        return job


def _put(work: queue.Queue, item: object, stop: threading.Event) -> bool:
    """``work.put`` that stays responsive to Ctrl-C while the queue is full."""
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            work.put(item, timeout=0.5)
            return True
    return False


def _release(work: queue.Queue, threads: int) -> None:
    """Empty the queue and hand every worker its stop sentinel (never blocks)."""
    with contextlib.suppress(queue.Empty):
        while True:
            work.get_nowait()
    for _ in range(threads):
        with contextlib.suppress(queue.Full):
            work.put_nowait(None)
