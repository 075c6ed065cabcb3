"""Which SageMaker Model the trigger uses: the SSM parameter the training script updates.

Reading the model from a parameter (rather than the function's environment) means a
newly trained model needs no redeploy. The stack creates the parameter holding
:data:`UNSET` (SSM refuses empty values), which is never a valid model name, so the
handler can say "no model yet" instead of letting SageMaker fail later.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from lambda_handler import naming

__all__ = ["UNSET", "ModelLookupError", "read_current_model"]

#: Initial value of the parameter, before any model has been registered.
UNSET = "none (no model registered yet)"


class ModelLookupError(RuntimeError):
    """The current-model parameter is missing, empty or does not name a model."""


def read_current_model(ssm: Any, parameter: str) -> str:
    """The model name stored in ``parameter``; ModelLookupError says what to fix."""
    fix = (
        "register a model with `python scripts/train_and_transform.py --stack <stack>` "
        f"or `aws ssm put-parameter --overwrite --name {parameter} --value <model-name>`, "
        "or name the model in the event ('model')"
    )
    if not parameter:
        raise ModelLookupError(
            "no current-model parameter is configured (TRIGGER_MODEL_PARAMETER) and the "
            "event names no model: pass 'model' in a direct request"
        )
    try:
        response = ssm.get_parameter(Name=parameter)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ParameterNotFound":
            raise ModelLookupError(f"SSM parameter {parameter} does not exist: {fix}") from None
        raise ModelLookupError(
            f"cannot read SSM parameter {parameter}: {error.get('Code')}: {error.get('Message')}"
        ) from None
    value = str(response.get("Parameter", {}).get("Value", "")).strip()
    if not value:
        raise ModelLookupError(f"SSM parameter {parameter} is empty: {fix}")
    if value == UNSET:
        raise ModelLookupError(f"SSM parameter {parameter} names no model yet: {fix}")
    if not naming.is_valid_job_name(value):
        raise ModelLookupError(
            f"SSM parameter {parameter} holds {value[:80]!r}, which is not a SageMaker "
            f"model name: {fix}"
        )
    return value
