"""Job notifications: this stack's transform jobs finishing or failing, as short SNS messages.

`Notifications` declares two EventBridge rules on SageMaker's "Transform Job State Change"
events for the stack's job names (Completed/Stopped, and Failed with its reason), each
targeting one SNS topic through an input transformer, the topic policy that lets only those
rules publish, and an optional email subscription.

Encryption: with the stack's key the topic is SSE-KMS encrypted, and the key policy lets
EventBridge use the key. Without one (dev) the topic stays unencrypted at rest: the
AWS-managed key alias/aws/sns would block EventBridge, because an AWS-managed key's policy
cannot be edited to admit events.amazonaws.com (SNS developer guide, "Enable compatibility
between event sources from AWS services and encrypted topics").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.documents import Document, policy_json
from infra.grants import EVENTS_PRINCIPAL

__all__ = [
    "FAILED_STATUSES",
    "FINISHED_STATUSES",
    "JOB_STATE_DETAIL_TYPE",
    "Notifications",
    "NotificationsArgs",
    "failure_message_template",
    "job_state_pattern",
    "notifications_topic_policy",
    "success_message_template",
]

JOB_STATE_DETAIL_TYPE = "SageMaker Transform Job State Change"
FINISHED_STATUSES = ("Completed", "Stopped")
FAILED_STATUSES = ("Failed",)

# Input templates: one quoted string per line is EventBridge's form for multi-line text
# (EventBridge user guide, "Amazon EventBridge input transformation"). Two rules, because
# Completed and Stopped events carry no FailureReason and a template must not depend on a
# path that is absent from the event.
SUCCESS_PATHS = {
    "job": "$.detail.TransformJobName",
    "status": "$.detail.TransformJobStatus",
    "output": "$.detail.TransformOutput.S3OutputPath",
}
FAILURE_PATHS = {**SUCCESS_PATHS, "reason": "$.detail.FailureReason"}


def success_message_template() -> str:
    return "\n".join(
        [
            '"SageMaker transform job <job>: <status>"',
            '"Results (one .out file per input file): <output>/"',
        ]
    )


def failure_message_template() -> str:
    return "\n".join(
        [
            '"SageMaker transform job <job>: <status>"',
            '"Reason: <reason>"',
            '"Results of files that succeeded: <output>/"',
            '"Logs: CloudWatch log group /aws/sagemaker/TransformJobs, streams <job>/..."',
        ]
    )


def notifications_topic_policy(*, topic_arn: str, rule_arns: list[str]) -> Document:
    """Only EventBridge, and only for this stack's job-state rules, may publish."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "JobStateRulesPublish",
                "Effect": "Allow",
                "Principal": {"Service": EVENTS_PRINCIPAL},
                "Action": "sns:Publish",
                "Resource": topic_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": sorted(rule_arns)}},
            }
        ],
    }


def job_state_pattern(job_name_prefix: str, statuses: tuple[str, ...]) -> dict[str, Any]:
    """EventBridge pattern: this stack's transform jobs reaching one of `statuses`.

    `stack_prefix` ends with "--" and never contains "--" before it, so no other
    stack's prefix is a prefix of this one's names: a plain prefix match is exact.
    """
    return {
        "source": ["aws.sagemaker"],
        "detail-type": [JOB_STATE_DETAIL_TYPE],
        "detail": {
            "TransformJobName": [{"prefix": job_name_prefix}],
            "TransformJobStatus": list(statuses),
        },
    }


def topic_name(prefix: str) -> str:
    return f"{prefix}-transform-jobs"


@dataclass(frozen=True)
class NotificationsArgs:
    """`job_name_prefix`: the stack's transform job names (lambda_handler.naming); `email`:
    an address to subscribe ("" for none); `kms_key_arn`: the stack's key, if any."""

    prefix: str
    job_name_prefix: str
    email: str = ""
    kms_key_arn: pulumi.Input[str] | None = None


class Notifications(pulumi.ComponentResource):
    """Job state -> EventBridge rules -> SNS topic (-> optional email)."""

    topic_arn: pulumi.Output[str]
    rule_arns: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: NotificationsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sagemaker-batch-transform:infra:Notifications", name, None, opts)
        prefix = args.prefix

        def child() -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self)

        topic = aws.sns.Topic(
            f"{prefix}-transform-jobs",
            name=topic_name(prefix),
            display_name=f"{prefix} transform jobs",
            kms_master_key_id=args.kms_key_arn,
            opts=child(),
        )
        rules = []
        for suffix, statuses, paths, template in (
            ("finished", FINISHED_STATUSES, SUCCESS_PATHS, success_message_template()),
            ("failed", FAILED_STATUSES, FAILURE_PATHS, failure_message_template()),
        ):
            rule = aws.cloudwatch.EventRule(
                f"{prefix}-transform-{suffix}",
                name=f"{prefix}-transform-{suffix}",
                description=f"{prefix}: transform jobs {'/'.join(statuses)}",
                event_pattern=json.dumps(
                    job_state_pattern(args.job_name_prefix, statuses), sort_keys=True
                ),
                opts=child(),
            )
            aws.cloudwatch.EventTarget(
                f"{prefix}-transform-{suffix}-to-sns",
                rule=rule.name,
                arn=topic.arn,
                input_transformer=aws.cloudwatch.EventTargetInputTransformerArgs(
                    input_paths=paths, input_template=template
                ),
                opts=child(),
            )
            rules.append(rule)
        aws.sns.TopicPolicy(
            f"{prefix}-transform-jobs-policy",
            arn=topic.arn,
            policy=policy_json(
                notifications_topic_policy,
                {"topic_arn": topic.arn, "rule_arns": [r.arn for r in rules]},
            ),
            opts=child(),
        )
        if args.email:
            aws.sns.TopicSubscription(
                f"{prefix}-transform-jobs-email",
                topic=topic.arn,
                protocol="email",
                endpoint=args.email,
                opts=child(),
            )

        self.topic_arn = topic.arn
        self.rule_arns = pulumi.Output.all(*[r.arn for r in rules])
        self.register_outputs({"topic_arn": self.topic_arn, "rule_arns": self.rule_arns})
