"""The ``--stack`` run: train, publish and batch-transform on a deployed stack.

Nothing is imported here on purpose: ``scripts/train_and_transform.py --help`` and
``--local`` import ``model.cloud.run`` for its argparse helpers only (defined in
``model.cloud.options``), and the AWS-heavy modules (boto3, the SageMaker SDK,
Pulumi's Automation API) are imported inside the functions of the cloud path.
"""
