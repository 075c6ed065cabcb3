"""The volume-key rule every job starter shares (Lambda, cloud script, stack)."""

from __future__ import annotations

import pytest

from lambda_handler.config import Settings
from lambda_handler.events import ObjectRef
from lambda_handler.instance_storage import has_instance_storage, volume_kms_key
from lambda_handler.jobs import build_request

KEY = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    ("instance_type", "local_storage"),
    [
        ("ml.m5.xlarge", False),
        ("ml.r7g.large", False),
        ("ml.m5d.xlarge", True),
        ("ml.r7gd.large", True),
        ("ml.p4de.24xlarge", True),
        ("ml.trn1n.32xlarge", True),
        ("not-an-instance-type", False),
    ],
)
def test_local_storage_families(instance_type: str, local_storage: bool) -> None:
    assert has_instance_storage(instance_type) is local_storage
    assert volume_kms_key(instance_type, KEY) == (None if local_storage else KEY)


def test_no_key_stays_no_key() -> None:
    assert volume_kms_key("ml.m5.xlarge", "") is None
    assert volume_kms_key("ml.m5.xlarge", None) is None


@pytest.mark.parametrize(
    ("instance_type", "expected"), [("ml.m5.xlarge", KEY), ("ml.g4dn.xlarge", None)]
)
def test_lambda_request_drops_the_volume_key_on_local_storage(
    instance_type: str, expected: str | None
) -> None:
    """A TRANSFORM_INSTANCE_TYPE changed by hand to g4dn must not make every job fail."""
    settings = Settings(
        job_name_prefix="acme-ml-dev",
        instance_type=instance_type,
        input_prefix="in/",
        output_prefix="out/",
        output_kms_key=KEY,
        volume_kms_key=KEY,
    )
    ref = ObjectRef("bucket", "in/a.csv", token="v1", source="s3", where="test")
    request = build_request(ref, settings, "model", "job")
    assert request["TransformResources"].get("VolumeKmsKeyId") == expected
    assert request["TransformOutput"]["KmsKeyId"] == KEY
