"""The Lambda function that turns S3 uploads into SageMaker batch transform jobs.

Entry point: ``lambda_handler.handler.handler``. Modules: ``events`` (parse the event
shapes), ``naming`` (deterministic job names; pure stdlib, importable by scripts),
``config`` (job parameters from the environment), ``model_parameter`` (the current
model from SSM), ``jobs`` (CreateTransformJob, idempotently), ``logs`` (JSON lines),
``instance_storage`` (which instance types take a volume key; pure stdlib, shared with
``model.cloud`` and ``infra``).
Only boto3 and the standard library: the Lambda runtime provides both. This package
file imports nothing, so ``import lambda_handler.naming`` stays free of boto3.
"""
