"""moto made to behave like SageMaker where the cloud run depends on it.

moto (in-process ``mock_aws`` or a ``ThreadedMotoServer`` in this process, which
share the same backends) has three gaps the cloud run meets:

- a transform job is ``Completed`` at once and writes no output: ``FakeTransform``
  hooks ``create_transform_job`` and writes a ``.out`` per input object, computed
  in-process by the serving code (``serving.inference.transform``, the code the
  container runs) from the model archive the job's model points at. It can leave
  files out or fail the job, and writes CloudWatch log lines like a real job;
- ``DescribeModel`` answers ``VpcConfig: {}`` for a model without one, which the SDK's
  validation rejects, and drops ``EnableNetworkIsolation``: ``ModelFixes`` answers
  as SageMaker does and records what CreateModel was asked;
- S3 notifications cannot invoke a Lambda without Docker: ``FakeTrigger`` calls the
  real handler (``lambda_handler.handler.process``) on a thread for each object
  created under the trigger's input prefix, with a real-shaped S3 event.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from moto.logs.models import logs_backends
from moto.s3.models import S3Backend, s3_backends
from moto.sagemaker import models as sagemaker_models
from moto.sagemaker import responses as sagemaker_responses
from moto.sagemaker.exceptions import ValidationError

ACCOUNT = "123456789012"
LOG_GROUP = "/aws/sagemaker/TransformJobs"


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


@dataclass
class ModelFixes:
    """What CreateModel was asked (moto keeps only part of it)."""

    requests: dict[str, dict[str, Any]] = field(default_factory=dict)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> ModelFixes:
        original_create = sagemaker_responses.SageMakerResponse.create_model
        original_response = sagemaker_models.Model.response_object
        fixes = self

        def create_model(response: Any) -> Any:
            name = response._get_param("ModelName")
            fixes.requests[name] = {
                "EnableNetworkIsolation": response._get_param("EnableNetworkIsolation"),
                "PrimaryContainer": response._get_param("PrimaryContainer"),
                "ExecutionRoleArn": response._get_param("ExecutionRoleArn"),
                "VpcConfig": response._get_param("VpcConfig"),
                "Tags": response._get_param("Tags"),
            }
            return original_create(response)

        def response_object(model: Any) -> dict[str, Any]:
            answer = dict(original_response.fget(model))  # type: ignore[attr-defined]
            if not answer.get("VpcConfig"):
                answer.pop("VpcConfig", None)  # SageMaker leaves it out when unset
            request = fixes.requests.get(model.model_name, {})
            answer["EnableNetworkIsolation"] = bool(request.get("EnableNetworkIsolation"))
            return answer

        monkeypatch.setattr(sagemaker_responses.SageMakerResponse, "create_model", create_model)
        monkeypatch.setattr(sagemaker_models.Model, "response_object", property(response_object))
        return self


@dataclass
class FakeTransform:
    """Writes the ``.out`` objects a Batch Transform job would write, at CreateTransformJob.

    ``skip`` names input files that get no ``.out`` while the job still ends Completed
    (what the run must notice on its own); ``fail`` names files that get no ``.out``
    and make the job end Failed with a FailureReason, as SageMaker does.
    """

    skip: set[str] = field(default_factory=set)
    fail: set[str] = field(default_factory=set)
    hold: bool = False  # leave the job InProgress (outputs written): finish() completes it
    jobs: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeTransform:
        original = sagemaker_models.SageMakerModelBackend.create_transform_job
        fake = self

        def create_transform_job(backend: Any, **kwargs: Any) -> Any:
            if kwargs["model_name"] not in backend._models:
                raise ValidationError(message=f'Could not find model "{kwargs["model_name"]}".')
            if kwargs["transform_job_name"] in backend.transform_jobs:
                raise ValidationError(
                    message="Job name must be unique within an AWS account and region, and a "
                    "job with this name already exists"
                )
            job = original(backend, **kwargs)
            # moto makes the job Completed at once: keep it InProgress until its outputs
            # are written, or a watcher (the Lambda path runs this on another thread)
            # could see Completed and list the outputs before they exist.
            final, job.transform_job_status = job.transform_job_status, "InProgress"
            try:
                fake._run(backend, job)
            finally:
                if job.transform_job_status == "InProgress" and not fake.hold:
                    job.transform_job_status = final
            return job

        monkeypatch.setattr(
            sagemaker_models.SageMakerModelBackend, "create_transform_job", create_transform_job
        )
        return self

    def _run(self, backend: Any, job: Any) -> None:
        from model.artifact import unpack_model_archive
        from serving.inference import transform
        from serving.model_loading import load_model

        with self._lock:
            self.jobs.append({"name": job.transform_job_name, "request": vars(job).copy()})
        s3 = s3_backends[backend.account_id]["aws"]
        model = backend._models[job.model_name]
        model_bucket, model_key = _split(model.primary_container["ModelDataUrl"])
        input_bucket, input_prefix = _split(
            job.transform_input["DataSource"]["S3DataSource"]["S3Uri"]
        )
        out_bucket, out_prefix = _split(job.transform_output["S3OutputPath"])
        content_type = job.transform_input.get("ContentType", "text/csv")
        accept = job.transform_output.get("Accept")
        failed: list[str] = []
        with tempfile.TemporaryDirectory(prefix="fake-transform-") as temp:
            archive = Path(temp) / "model.tar.gz"
            archive.write_bytes(s3.get_object(model_bucket, model_key).value)
            loaded = load_model(unpack_model_archive(archive, Path(temp) / "model"))
            keys = sorted(k for k in s3.get_bucket(input_bucket).keys if k.startswith(input_prefix))
            base = input_prefix.rpartition("/")[0] + "/" if "/" in input_prefix else ""
            for key in keys:
                relative = key[len(base) :]
                name = relative.rsplit("/", 1)[-1]
                if name in self.skip:
                    continue
                if name in self.fail:
                    failed.append(relative)
                    continue
                body = s3.get_object(input_bucket, key).value
                result, _ = transform(loaded, body, content_type, accept) if body else (b"", "")
                if result and not result.endswith(b"\n"):
                    result += b"\n"  # AssembleWith Line
                target = f"{out_prefix.rstrip('/')}/{relative}.out".lstrip("/")
                s3.put_object(out_bucket, target, result)
        if self.hold:
            job.transform_job_status = "InProgress"
        lines = [f"transformed {len(keys) - len(failed)} of {len(keys)} files"]
        if failed:
            job.transform_job_status = "Failed"
            job.failure_reason = (
                f"ClientError: See job logs for more information. Failed files: {failed[0]}"
            )
            lines += [f"ERROR {name}: 400 Bad Request from the model container" for name in failed]
        self.write_logs(backend.account_id, backend.region_name, job.transform_job_name, lines)

    @staticmethod
    def finish(name: str, region: str = "eu-west-1") -> None:
        """Mark a held job Completed."""
        sagemaker_models.sagemaker_backends[ACCOUNT][region].transform_jobs[
            name
        ].transform_job_status = "Completed"

    @staticmethod
    def write_logs(account: str, region: str, job_name: str, lines: list[str]) -> None:
        """Log lines under ``/aws/sagemaker/TransformJobs/<job>/i-fake``, as a job writes them."""
        logs = logs_backends[account][region]
        if LOG_GROUP not in logs.groups:
            logs.create_log_group(LOG_GROUP, {})
        stream = f"{job_name}/i-0fake"
        logs.create_log_stream(LOG_GROUP, stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)]
        logs.put_log_events(LOG_GROUP, stream, events)


@dataclass
class FakeTrigger:
    """Runs the Lambda handler for objects created under the input prefix, like S3 would."""

    settings: Any  # lambda_handler.config.Settings
    get_client: Callable[[str], Any]
    delay: float = 0.05
    results: list[Any] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeTrigger:
        original = S3Backend.put_object
        trigger = self

        def put_object(backend: Any, bucket_name: str, key_name: str, *args: Any, **kw: Any) -> Any:
            key = original(backend, bucket_name, key_name, *args, **kw)
            if key_name.startswith(trigger.settings.input_prefix) and key_name.endswith(
                trigger.settings.input_suffix
            ):
                event = trigger.event(bucket_name, key)
                thread = threading.Thread(target=trigger._deliver, args=(event,), daemon=True)
                trigger.threads.append(thread)
                thread.start()
            return key

        monkeypatch.setattr(S3Backend, "put_object", put_object)
        return self

    @staticmethod
    def event(bucket: str, key: Any) -> dict[str, Any]:
        """The S3 notification for one created object (key URL-encoded as S3 sends it)."""
        from urllib.parse import quote_plus

        obj: dict[str, Any] = {
            "key": quote_plus(key.name, safe="/"),
            "size": key.size,
            "eTag": key.etag.strip('"'),
            "sequencer": "0055AED6DCD90281E5",
        }
        if key.version_id and key.version_id != "null":
            obj["versionId"] = key.version_id
        return {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "eu-west-1",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": obj},
                }
            ]
        }

    def _deliver(self, event: dict[str, Any]) -> None:
        from lambda_handler.handler import process

        time.sleep(self.delay)  # the object is visible before the function runs
        try:
            self.results.append(process(event, self.settings, self.get_client))
        except Exception as error:  # recorded for the test to show
            self.results.append(error)

    def join(self) -> None:
        """Wait for every delivery (tests call this before the moto backend goes away)."""
        for thread in self.threads:
            thread.join(timeout=30)
