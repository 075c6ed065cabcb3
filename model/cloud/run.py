"""``train_and_transform.py --stack dev``: the whole run on a deployed stack.

Order (each step is checked before the next costs anything):

1. read the stack's outputs (Automation API, or ``--outputs-file``) and check the
   AWS credentials, account and region against them;
2. generate data and train with the same ``model/`` code as ``--local``;
3. upload ``model.tar.gz`` under ``runs/<stack>/<run id>/``, create the SageMaker
   Model, point the current-model SSM parameter at it;
4. upload the transform input (several CSV files) under the run's prefix, or with
   ``--via-lambda`` under the trigger's input prefix;
5. start the transform job (or find the ones the trigger started), follow it;
6. download the ``.out`` files, score them against the held-out labels and print
   the same summary as ``--local``.

Whatever ends the run, the resources it created are printed with the commands that
clean them up, and ``run.json`` in the run directory lets ``--resume`` finish it.

The options and the checks that need no AWS live in ``model.cloud.options``; they
are re-exported here (``from model.cloud.run import build_parser`` keeps working).
This module imports only the standard library at the top: the script imports it to
build its parser, and ``--help`` / ``--local`` must stay fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.cloud.options import (
    DEFAULT_BASE,
    DEFAULT_STACK,
    REPO_ROOT,
    SCRIPT,
    add_cloud_arguments,
    add_training_arguments,
    build_parser,
    check_options,
    cloud_requested,
)
from model.errors import UserError

if TYPE_CHECKING:
    from model.batch.params import TransformJobParameters
    from model.cloud.aws import AwsContext
    from model.cloud.job import JobResult
    from model.cloud.outputs import StackOutputs
    from model.cloud.state import RunState
    from model.data import Dataset
    from model.pipeline import DataSettings
    from model.report import RunSummary

__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_STACK",
    "REPO_ROOT",
    "SCRIPT",
    "add_cloud_arguments",
    "add_training_arguments",
    "build_parser",
    "cloud_requested",
    "main",
    "run_cloud",
    "score_files",
]

OutputReader = Callable[[str, Path], Mapping[str, Any]]
Say = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m model.cloud``."""
    args = build_parser().parse_args(argv)
    from model.console import run_main

    return run_main(lambda: run_cloud(args))


def run_cloud(
    args: argparse.Namespace,
    read_outputs: OutputReader | None = None,
    *,
    ask: Any = True,
    say: Say | None = None,
) -> int:
    """Run the cloud path for parsed ``args``; returns the exit status.

    ``read_outputs(stack, project_dir)`` gives the stack's outputs (default: the
    Automation API; ``--outputs-file`` wins over both). ``ask`` answers the Ctrl-C
    question (default: ``input`` when stdin is a terminal, else the job is left
    running). User errors print one line plus what was created, and return 1.
    """
    say = say or _stderr
    from model.cloud.job import JobInterruptedError
    from model.console import Terminated

    run = _CloudRun(args, read_outputs, ask=ask, say=say)
    try:
        return run.execute()
    except JobInterruptedError as interrupted:
        say(f"interrupted: {interrupted}")
        run.finish_report()
        return interrupted.exit_code
    except UserError as error:
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
        say(f"error: {message}")
        run.finish_report()
        return 1
    except KeyboardInterrupt as interrupt:
        say("interrupted" if not isinstance(interrupt, Terminated) else "terminated")
        run.finish_report()
        return 143 if isinstance(interrupt, Terminated) else 130
    except Exception:
        # A bug or an AWS answer nobody expected: the traceback is for the report, and
        # the user still learns what exists in AWS now.
        run.finish_report()
        raise


class _CloudRun:
    """One run's state; ``execute`` is the step list of the module docstring."""

    def __init__(
        self, args: argparse.Namespace, read_outputs: OutputReader | None, *, ask: Any, say: Say
    ) -> None:
        from model.cloud.ledger import Ledger

        self.args = args
        self.read_outputs = read_outputs
        self.ask = ask
        self.say = say
        self.ledger = Ledger()
        self.state: RunState | None = None
        self.jobs_ended = False  # followed to a terminal state: --resume has nothing to add
        self.data: DataSettings | None = None  # set by check_options in execute
        self.dataset: Dataset | None = None

    # -- reporting ---------------------------------------------------------------------

    def finish_report(self) -> None:
        """Save run.json and print what exists in AWS now (every way a run ends)."""
        if self.state is not None:
            self.state.ledger = self.ledger
            try:
                self.state.save()
            except OSError as error:
                self.say(f"(could not save {self.state.path}: {error})")
        if self.ledger.entries:
            self.ledger.print()
        if self.state is not None and self.state.jobs and not self.jobs_ended:
            self.say(f"run directory: {self.state.workdir} (finish it with {self._resume_cmd()})")

    def _resume_cmd(self) -> str:
        workdir = self.state.workdir if self.state else "RUN_DIR"
        return f"`{SCRIPT} --resume {workdir}`"

    def _check_hint(self, names: list[str], region: str) -> str:
        describe = (
            f"`aws sagemaker describe-transform-job --transform-job-name {names[0]} "
            f"--region {region}`"
        )
        return (
            f"Check on it later with {self._resume_cmd()} (waits, downloads, scores) or {describe}"
        )

    # -- steps -------------------------------------------------------------------------

    def execute(self) -> int:
        args = self.args
        if getattr(args, "local", False):
            raise UserError("--local runs without AWS: leave out --stack, --outputs-file, --resume")
        if args.resume is not None:
            return self._resume(args.resume)
        stack = args.stack or DEFAULT_STACK
        checked = check_options(self.args)
        self.data, self.dataset = checked.data, checked.dataset
        spec_parameters = checked.parameters

        from model.cloud.aws import AwsContext, check_access
        from model.cloud.outputs import REQUIRED_VIA_LAMBDA, StackOutputs

        self.say(f"[1/6] reading the outputs of stack {stack} and checking AWS access")
        values = self._outputs_reader()(stack, args.project_dir)
        outputs = StackOutputs.parse(
            stack, values, extra=REQUIRED_VIA_LAMBDA if args.via_lambda else ()
        )
        context = AwsContext(outputs.region)
        identity, notes = check_access(context, outputs)
        for note in notes:
            self.say(f"      note: {note}")
        if not outputs.image_is_pinned:
            self.say(
                f"      warning: image_uri {outputs.image_uri} is not pinned by digest "
                "(@sha256:...); SageMaker runs whatever the tag points to when the job starts"
            )
        self.say(
            f"      account {identity.account}, region {outputs.region}, "
            f"bucket {outputs.bucket_name}"
        )
        return self._run(context, outputs, spec_parameters)

    def _outputs_reader(self) -> OutputReader:
        from model.cloud.outputs import outputs_file_reader, read_stack_outputs

        if self.args.outputs_file is not None:
            return outputs_file_reader(self.args.outputs_file)
        return self.read_outputs or read_stack_outputs

    def _run(
        self, context: AwsContext, outputs: StackOutputs, parameters: TransformJobParameters
    ) -> int:
        from model.cloud import publish
        from model.cloud.job import JobSpec, describe_settings, start_job, wait_for_creation
        from model.cloud.state import JobState, RunState
        from model.pipeline import prepare_run_directory, train_and_package

        args = self.args
        names = publish.new_run_names(outputs, publish.project_name(args.project_dir))
        workdir = prepare_run_directory(args.workdir, DEFAULT_BASE)
        state = RunState(
            stack=outputs.stack,
            region=outputs.region,
            bucket=outputs.bucket_name,
            run_id=names.run_id,
            workdir=str(workdir),
            via_lambda=args.via_lambda,
            current_model_parameter=outputs.current_model_parameter,
        )
        self.state = state
        state.save()

        source = "reading the data" if self.data.data is not None else "generating data"
        step = "with your model" if self.data.model is not None else "and training"
        self.say(f"[2/6] {source} {step} (the same code as --local)")
        trained = train_and_package(
            self.data,
            workdir,
            say=lambda line: self.say(f"      {line}"),
            dataset=self.dataset,
        )
        archive, inputs = trained.archive, trained.inputs
        state.training_metrics = trained.training_metrics
        bucket = outputs.bucket_name

        self.say(f"[3/6] publishing model {names.model_name}")
        publish.record_prefix(context, self.ledger, bucket, names.prefix)
        publish.upload_file(context, archive, bucket, names.model_key)
        model_uri = f"s3://{bucket}/{names.model_key}"
        publish.create_model(context, outputs, names, model_uri, self.ledger)
        state.model_name, state.model_uri = names.model_name, model_uri
        previous = publish.point_current_model(
            context, outputs.current_model_parameter, names.model_name, self.ledger
        )
        self.say(f"      uploaded {model_uri}")
        self.say(f"      image {outputs.image_uri}, network isolation on")
        self.say(
            f"      {outputs.current_model_parameter} -> {names.model_name} (was {previous!r})"
        )
        state.save()

        spec = JobSpec(
            name=names.job_name,
            model_name=names.model_name,
            input_uri=f"s3://{bucket}/{names.input_prefix}",
            output_uri=f"s3://{bucket}/{names.output_prefix}",
            instance_type=args.instance_type,
            instance_count=args.instance_count,
            parameters=parameters,
            kms_key_id=outputs.kms_key_arn,
            tags=publish.run_tags(outputs, names),
        )
        if args.via_lambda:
            assert outputs.input_prefix is not None and outputs.output_prefix is not None
            input_prefix = f"{outputs.input_prefix}{names.run_id}/"
            output_prefix = f"{outputs.output_prefix}{names.run_id}/"
            self.say(
                f"[4/6] uploading {len(inputs.files)} input files to the trigger's prefix "
                f"s3://{bucket}/{input_prefix}"
            )
            publish.record_prefix(context, self.ledger, bucket, input_prefix)
            publish.record_prefix(context, self.ledger, bucket, output_prefix)
            state.input_uri = f"s3://{bucket}/{input_prefix}"
            jobs = self._upload_for_trigger(context, outputs, inputs, input_prefix)
            state.jobs = [
                JobState(name, f"s3://{bucket}/{output_prefix.rstrip('/')}", [file])
                for name, file in jobs
            ]
            state.settings = "set by the stack's trigger (its TRANSFORM_* settings)"
            state.save()
            job_names = [name for name, _ in jobs]
            self.say(
                f"[5/6] waiting for the trigger to start {len(job_names)} job(s) "
                f"(up to {args.lambda_timeout:.0f} s)"
            )
            missing = wait_for_creation(
                context, job_names, timeout=args.lambda_timeout, say=self.say
            )
            for name in job_names:
                if name not in missing:
                    from model.cloud.job import record_job

                    record_job(context, self.ledger, name)
            if missing:
                raise UserError(self._lambda_missing_message(outputs, missing, jobs))
        else:
            self.say(
                f"[4/6] uploading {len(inputs.files)} input files to s3://{bucket}/"
                f"{names.input_prefix}"
            )
            for file in inputs.files:
                publish.upload_file(
                    context, inputs.input_dir / file, bucket, f"{names.input_prefix}{file}"
                )
            state.input_uri = spec.input_uri
            state.settings = describe_settings(spec)
            self.say(f"[5/6] starting transform job {spec.name} ({describe_settings(spec)})")
            start_job(context, spec, self.ledger)
            state.jobs = [JobState(spec.name, spec.output_uri, list(inputs.files))]
            state.save()
            job_names = [spec.name]

        if args.no_wait:
            self._print_no_wait(job_names, context.region)
            self.finish_report()
            return 0
        return self._follow_and_score(context, state)

    def _upload_for_trigger(
        self, context: AwsContext, outputs: StackOutputs, inputs: Any, prefix: str
    ) -> list[tuple[str, str]]:
        """Upload each file under the trigger prefix; the job name the Lambda will use for it."""
        from lambda_handler import naming
        from model.cloud import publish

        bucket = outputs.bucket_name
        job_prefix = publish.job_name_prefix(outputs, publish.project_name(self.args.project_dir))
        jobs: list[tuple[str, str]] = []
        for file in inputs.files:
            key = f"{prefix}{file}"
            response = publish.upload_file(context, inputs.input_dir / file, bucket, key)
            token = naming.object_token(response.get("VersionId"), response.get("ETag"))
            jobs.append((naming.job_name(job_prefix, bucket, key, token), file))
        return jobs

    def _lambda_missing_message(
        self, outputs: StackOutputs, missing: list[str], jobs: list[tuple[str, str]]
    ) -> str:
        files = dict(jobs)
        where = ", ".join(f"{name} (for {files[name]})" for name in missing[:3])
        function = outputs.trigger_function_name or "the trigger function"
        hints = [f"`aws logs tail /aws/lambda/{function} --region {outputs.region}`"]
        if outputs.failed_events_queue_url:
            hints.append(f"the failed-events queue {outputs.failed_events_queue_url}")
        return (
            f"the trigger started no job {where} within {self.args.lambda_timeout:.0f} s: "
            f"look at {' and '.join(hints)}"
        )

    def _print_no_wait(self, names: list[str], region: str) -> None:
        plural = "s" if len(names) > 1 else ""
        print(f"transform job{plural} started: {', '.join(names)}")
        print("follow, download and score the results with:")
        print(f"  {SCRIPT} --resume {self.state.workdir if self.state else 'RUN_DIR'}")
        print("or watch with the AWS CLI:")
        for name in names:
            print(
                f"  aws sagemaker describe-transform-job --transform-job-name {name} "
                f"--region {region} --query TransformJobStatus"
            )
        print(
            f"  aws logs tail /aws/sagemaker/TransformJobs --log-stream-name-prefix {names[0]} "
            f"--follow --region {region}"
        )

    # -- following and scoring ---------------------------------------------------------

    def _follow_and_score(self, context: AwsContext, state: RunState) -> int:
        from model.cloud.job import Watcher, last_log_lines
        from model.cloud.results import expected_outputs, fetch_and_score
        from model.report import format_summary
        from model.report_html import add_html_report
        from model.storage import WORKDIR_HINT, write_atomic

        names = [job.name for job in state.jobs]
        watcher = Watcher(
            context,
            logs=self.args.logs,
            poll_seconds=self.args.poll_seconds,
            say=self.say,
            ask=self.ask,
            check_hint=self._check_hint(names, context.region),
        )
        self.say(
            f"      waiting for {', '.join(names)}" + (" (with logs)" if self.args.logs else "")
        )
        results = watcher.follow(names)
        self.jobs_ended = True
        unfinished = [result for result in results if result.status != "Completed"]
        if unfinished:
            for result in unfinished:
                self.say(self._failure_block(result, last_log_lines(context, result.name)))
            first = unfinished[0]
            raise UserError(
                f"transform job {first.name} ended {first.status}"
                + (f": {first.failure_reason}" if first.failure_reason else "")
            )
        workdir = Path(state.workdir)
        self.say("[6/6] downloading the .out files and scoring them against the held-out labels")
        expected = [
            item
            for job in state.jobs
            for item in expected_outputs(job.output_uri, list(job.inputs))
        ]
        score = fetch_and_score(
            context,
            expected,
            workdir / "output",
            workdir / "manifest.json",
            jobs="transform job " + ", ".join(names),
        )
        summary = self._summary(state, results, score)
        if score is None:
            self.say(f"      no --target: predictions are in {workdir / 'output'}, scoring skipped")
        else:
            add_html_report(workdir, summary)  # report.html next to summary.json (listed in it)
        write_atomic(workdir / "summary.json", summary.as_json().encode("utf-8"), hint=WORKDIR_HINT)
        print(format_summary(summary), flush=True)
        self.finish_report()
        return 0

    @staticmethod
    def _failure_block(result: JobResult, lines: list[str]) -> str:
        block = [f"transform job {result.name} ended {result.status}"]
        if result.failure_reason:
            block.append(f"  FailureReason: {result.failure_reason}")
        if lines:
            block.append(f"  last {len(lines)} log lines:")
            block.extend(f"    {line}" for line in lines)
        else:
            block.append("  (no CloudWatch log lines found for it)")
        return "\n".join(block)

    def _summary(self, state: RunState, results: list[JobResult], score: Any) -> RunSummary:
        from model.data import manifest_rows
        from model.report import RunSummary

        workdir = Path(state.workdir)
        artifacts = {"run directory": str(workdir)}
        if state.model_name:
            artifacts["model"] = f"{state.model_name} ({state.model_uri})"
        if state.current_model_parameter and state.model_name:
            artifacts["current model"] = f"{state.current_model_parameter} = {state.model_name}"
        if state.input_uri:
            artifacts["input"] = f"{state.input_uri} ({len(score_files(state))} CSV files)"
        outputs = sorted({job.output_uri for job in state.jobs})
        artifacts["output"] = ", ".join(outputs) + " (.out per input file)"
        artifacts["local output"] = str(workdir / "output")
        return RunSummary(
            mode="cloud",
            status="Completed",
            rows=score.rows if score else manifest_rows(workdir / "manifest.json"),
            files=len(score_files(state)),
            transform_seconds=max((r.seconds for r in results), default=0.0),
            parameters=state.settings,
            score=score,
            training_metrics=dict(state.training_metrics),
            job_name=", ".join(r.name for r in results),
            artifacts=artifacts,
        )

    # -- resume ------------------------------------------------------------------------

    def _resume(self, workdir: Path) -> int:
        from model.cloud.aws import AwsContext, check_credentials
        from model.cloud.state import RunState

        state = RunState.load(workdir)
        self.state = state
        self.ledger = state.ledger
        if not state.jobs:
            raise UserError(
                f"the run in {workdir} never started a transform job: start a new run instead"
            )
        context = AwsContext(state.region)
        check_credentials(context)
        self.say(f"resuming run {state.run_id} of stack {state.stack} ({state.region})")
        return self._follow_and_score(context, state)


def score_files(state: RunState) -> list[str]:
    """Every input file name of the run."""
    return [name for job in state.jobs for name in job.inputs]
