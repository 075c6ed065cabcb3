"""Which SageMaker instance types take a volume KMS key: one rule for every job starter.

CreateTransformJob refuses ``TransformResources.VolumeKmsKeyId`` on instance types with
local NVMe storage, which SageMaker encrypts with a hardware module on the instance (API
reference, TransformResources). The Lambda (``jobs``), ``train_and_transform.py --stack``
(``model.cloud.job``) and the stack (``infra.trigger``) all ask this module, so the three
never disagree. It lives here because the Lambda's package is ``lambda_handler/`` alone;
pure standard library, so importing it pulls in neither boto3 nor Pulumi.
"""

from __future__ import annotations

# Local-storage families whose name has no "d" after the generation (EC2 instance store
# volumes table); the rest are spelled with it (m5d, c6id, r5d, g4dn, p3dn, p4d, p4de).
_LOCAL_STORAGE_WITHOUT_D = frozenset(
    {"g5", "g6", "g6e", "p5", "p5e", "p5en", "i3", "trn1", "trn1n"}
)


def has_instance_storage(instance_type: str) -> bool:
    """True for instance types with local NVMe storage (no VolumeKmsKeyId allowed there)."""
    family = instance_type.split(".")[1] if instance_type.count(".") == 2 else ""
    generation = family.lstrip("abcdefghijklmnopqrstuvwxyz")
    attributes = generation.lstrip("0123456789")
    return "d" in attributes or family in _LOCAL_STORAGE_WITHOUT_D


def volume_kms_key(instance_type: str, key: str | None) -> str | None:
    """``key`` when ``instance_type`` may take a volume key, else None (also for no key)."""
    return key if key and not has_instance_storage(instance_type) else None
