"""The inventory: every resource the program declares, with its key properties."""

from __future__ import annotations

import base64
import ipaddress
import json

from infra_harness import ACCOUNT, EMAIL, GITHUB_TOKEN, PROJECT, REPO_URL, Run

from infra.policies import SECRET_SIG, SIG_KEY, plain
from infra.settings import resource_prefix
from lambda_handler import naming
from lambda_handler.config import Settings as JobSettings

REQUIRED_OUTPUTS = {
    "region",
    "vpc_id",
    "subnet_ids",
    "security_group_id",
    "bucket_name",
    "ecr_repository_url",
    "image_uri",
    "sagemaker_role_arn",  # the job role, under its pre-split name (model/cloud reads it)
    "job_role_arn",
    "notebook_role_arn",
    "notebook_instance_name",
    "notebook_url",
    "code_server_url",
    # the transform trigger
    "trigger_function_name",
    "input_prefix",
    "output_prefix",
    "current_model_parameter",
    "transform_job_name_prefix",
    "failed_events_queue_url",
    "notifications_topic_arn",
}

ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
FUNCTION = "aws:lambda/function:Function"
TRIGGER = "sagemaker-batch-transform:infra:Trigger"


def inputs(record: dict) -> dict:
    return plain(record["inputs"])


def document(record: dict, prop: str = "policy") -> dict:
    return json.loads(inputs(record)[prop])


def statements_by_sid(doc: dict) -> dict:
    return {s["Sid"]: s for s in doc["Statement"]}


def data_bucket(run: Run) -> dict:
    return run.named("aws:s3/bucket:Bucket", "data")


def bucket_arn(run: Run) -> str:
    return data_bucket(run)["outputs"]["arn"]


def job_role(run: Run) -> dict:
    return run.named(ROLE, "job")


def notebook_role(run: Run) -> dict:
    return run.named(ROLE, "notebook")


def job_role_policy(run: Run) -> dict:
    return run.named(ROLE_POLICY, "job-access")


def notebook_role_policy(run: Run) -> dict:
    return run.named(ROLE_POLICY, "notebook-access")


# --- shape: provider, components, names ---------------------------------------------------


def test_one_explicit_provider_with_region_and_default_tags(dev: Run, prod: Run) -> None:
    for run, stack in ((dev, "dev"), (prod, "prod")):
        provider = inputs(run.one("pulumi:providers:aws"))
        assert provider["region"] == "eu-west-1"
        assert json.loads(provider["defaultTags"]) == {
            "tags": {"project": PROJECT, "stack": stack, "managed-by": "pulumi"}
        }


def test_every_aws_call_goes_through_the_tagged_provider(dev: Run) -> None:
    provider_urn = dev.one("pulumi:providers:aws")["urn"]
    aws_records = [r for r in dev.resources if r["type"].startswith("aws:")]
    assert aws_records
    assert all(r["provider"].startswith(f"{provider_urn}::") for r in aws_records)
    aws_invokes = [i for i in dev.invokes if i["token"].startswith("aws:")]
    assert {i["token"] for i in aws_invokes} == {
        "aws:index/getAvailabilityZones:getAvailabilityZones",
        "aws:ecr/getAuthorizationToken:getAuthorizationToken",
        "aws:index/getCallerIdentity:getCallerIdentity",  # the trigger's account id
    }
    assert all(i["provider"].startswith(f"{provider_urn}::") for i in aws_invokes)


def test_components_own_every_resource(dev: Run, prod: Run) -> None:
    for run in (dev, prod):
        components = {r["urn"]: r for r in run.resources if not r["custom"]}
        assert {c["type"].rsplit(":", 1)[1] for c in components.values()} >= {
            "Network",
            "Storage",
            "Registry",
            "JobRole",
            "NotebookRole",
            "GitHubSecret",
            "Notebook",
            "Trigger",
            "Notifications",
        }
        for record in run.resources:
            if record["custom"] and not record["type"].startswith("pulumi:providers:"):
                assert record["parent"] in components, record["name"]


def test_names_carry_project_and_stack(dev: Run, prod: Run) -> None:
    for run, stack in ((dev, "dev"), (prod, "prod")):
        prefix = resource_prefix(PROJECT, stack)
        assert all(r["name"].startswith(prefix) for r in run.resources)
        physical = [
            data_bucket(run)["outputs"]["bucket"],
            *(role["outputs"]["name"] for role in run.of_type(ROLE)),
            run.one("aws:ecr/repository:Repository")["outputs"]["name"],
            inputs(run.one("aws:sagemaker/notebookInstance:NotebookInstance"))["name"],
            inputs(run.one("aws:sagemaker/codeRepository:CodeRepository"))["codeRepositoryName"],
            inputs(run.one(FUNCTION))["name"],
            inputs(run.one("aws:sqs/queue:Queue"))["name"],
            inputs(run.one("aws:sns/topic:Topic"))["name"],
            *(inputs(r)["name"] for r in run.of_type("aws:cloudwatch/eventRule:EventRule")),
        ]
        assert len(physical) == 12  # job, notebook and trigger roles
        assert all(name.startswith(prefix) for name in physical)
        assert all(len(name) <= 63 for name in physical)
        # Names outside the prefix's reach still say which project and stack they serve.
        assert inputs(run.one("aws:ssm/parameter:Parameter"))["name"] == (
            f"/{PROJECT}/{stack}/current-model"
        )
        assert inputs(run.one("aws:cloudwatch/logGroup:LogGroup"))["name"] == (
            f"/aws/lambda/{prefix}-trigger"
        )


# --- network -----------------------------------------------------------------------------


def test_vpc_with_dns(dev: Run) -> None:
    vpc = inputs(dev.one("aws:ec2/vpc:Vpc"))
    assert vpc["cidrBlock"] == "10.10.0.0/16"
    assert vpc["enableDnsSupport"] is True and vpc["enableDnsHostnames"] is True


def test_two_subnets_in_looked_up_distinct_zones(dev: Run) -> None:
    subnets = [inputs(s) for s in dev.of_type("aws:ec2/subnet:Subnet")]
    assert len(subnets) == 2
    assert [s["availabilityZone"] for s in subnets] == ["eu-west-1a", "eu-west-1b"]
    vpc = ipaddress.ip_network("10.10.0.0/16")
    cidrs = [ipaddress.ip_network(s["cidrBlock"]) for s in subnets]
    assert all(c.subnet_of(vpc) for c in cidrs) and not cidrs[0].overlaps(cidrs[1])
    assert all(s["mapPublicIpOnLaunch"] is False for s in subnets)
    lookup = next(i for i in dev.invokes if "getAvailabilityZones" in i["token"])
    assert lookup["args"]["state"] == "available"


def test_internet_gateway_and_public_route_table(dev: Run) -> None:
    gateway = dev.one("aws:ec2/internetGateway:InternetGateway")
    table = inputs(dev.one("aws:ec2/routeTable:RouteTable"))
    assert table["routes"] == [{"cidrBlock": "0.0.0.0/0", "gatewayId": f"{gateway['name']}-id"}]
    associations = [
        inputs(a) for a in dev.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")
    ]
    subnet_ids = {f"{s['name']}-id" for s in dev.of_type("aws:ec2/subnet:Subnet")}
    assert {a["subnetId"] for a in associations} == subnet_ids


def test_security_group_denies_all_inbound_allows_all_outbound(dev: Run) -> None:
    group = inputs(dev.one("aws:ec2/securityGroup:SecurityGroup"))
    assert group["ingress"] == []
    [egress] = group["egress"]
    assert (egress["protocol"], egress["cidrBlocks"]) == ("-1", ["0.0.0.0/0"])
    default = inputs(dev.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"))
    assert default["ingress"] == [] and default["egress"] == []


# --- storage -----------------------------------------------------------------------------


def _bucket_children(run: Run) -> dict[str, dict]:
    bucket_id = data_bucket(run)["outputs"]["bucket"]
    children = {}
    for record in run.resources:
        if record["type"].startswith("aws:s3/") and inputs(record).get("bucket") == bucket_id:
            children[record["type"].rsplit(":", 1)[1]] = inputs(record)
    return children


def test_bucket_private_encrypted_versioned_owner_enforced(dev: Run) -> None:
    children = _bucket_children(dev)
    assert children["BucketPublicAccessBlock"] == {
        "bucket": data_bucket(dev)["outputs"]["bucket"],
        "blockPublicAcls": True,
        "blockPublicPolicy": True,
        "ignorePublicAcls": True,
        "restrictPublicBuckets": True,
    }
    assert children["BucketOwnershipControls"]["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    [rule] = children["BucketServerSideEncryptionConfiguration"]["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}
    assert children["BucketVersioning"]["versioningConfiguration"] == {"status": "Enabled"}
    [lifecycle] = children["BucketLifecycleConfiguration"]["rules"]
    assert lifecycle["noncurrentVersionExpiration"] == {"noncurrentDays": 30}
    assert lifecycle["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}


def test_bucket_policy_denies_non_tls(dev: Run) -> None:
    policy = json.loads(_bucket_children(dev)["BucketPolicy"]["policy"])
    [statement] = policy["Statement"]
    arn = bucket_arn(dev)
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert statement["Action"] == "s3:*"
    assert statement["Resource"] == [arn, f"{arn}/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_dev_bucket_disposable_prod_bucket_protected_and_kms_encrypted(dev: Run, prod: Run) -> None:
    dev_bucket, prod_bucket = data_bucket(dev), data_bucket(prod)
    assert inputs(dev_bucket)["forceDestroy"] is True and dev_bucket["protect"] is False
    assert inputs(prod_bucket)["forceDestroy"] is False and prod_bucket["protect"] is True
    key = prod.one("aws:kms/key:Key")
    assert key["protect"] is True
    assert inputs(key)["enableKeyRotation"] is True
    assert inputs(key)["deletionWindowInDays"] == 30
    assert inputs(prod.one("aws:kms/alias:Alias"))["name"] == f"alias/{PROJECT}-prod"
    [rule] = _bucket_children(prod)["BucketServerSideEncryptionConfiguration"]["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": key["outputs"]["arn"],
    }
    assert rule["bucketKeyEnabled"] is True
    assert not dev.of_type("aws:kms/key:Key")


# --- registry and image ------------------------------------------------------------------


def test_ecr_repository_scans_and_keeps_the_last_images(dev: Run, prod: Run) -> None:
    for run, keep, force in ((dev, 5, True), (prod, 30, False)):
        repository = inputs(run.one("aws:ecr/repository:Repository"))
        assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repository["forceDelete"] is force
        lifecycle = document(run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy"))
        [rule] = lifecycle["rules"]
        assert rule["selection"] == {
            "tagStatus": "any",
            "countType": "imageCountMoreThan",
            "countNumber": keep,
        }
        assert rule["action"] == {"type": "expire"}


def test_image_built_for_amd64_from_container_and_pushed_with_ecr_credentials(dev: Run) -> None:
    image = dev.one("docker:index/image:Image")
    url = dev.one("aws:ecr/repository:Repository")["outputs"]["repositoryUrl"]
    raw = image["inputs"]
    assert raw["build"] == {
        "context": "container",
        "dockerfile": "container/Dockerfile",
        "platform": "linux/amd64",
    }
    assert raw["imageName"] == f"{url}:latest"
    assert raw["registry"][SIG_KEY] == SECRET_SIG  # the password makes it a secret
    assert plain(raw["registry"])["server"] == url
    assert plain(raw["registry"])["username"] == "AWS"
    assert raw["skipPush"] is False


def test_image_uri_is_pinned_by_digest(dev: Run) -> None:
    url = dev.one("aws:ecr/repository:Repository")["outputs"]["repositoryUrl"]
    digest = dev.one("docker:index/image:Image")["outputs"]["repoDigest"]
    assert dev.exports["image_uri"] == digest
    assert digest.startswith(f"{url}@sha256:") and len(digest.split("@sha256:")[1]) == 64
    assert dev.exports["ecr_repository_url"] == url


# --- IAM ---------------------------------------------------------------------------------


def test_both_roles_trust_sagemaker_only(dev: Run) -> None:
    for role in (job_role(dev), notebook_role(dev)):
        trust = document(role, "assumeRolePolicy")
        [statement] = trust["Statement"]
        assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
        assert statement["Action"] == "sts:AssumeRole" and statement["Effect"] == "Allow"


def test_no_managed_policy_by_default_full_access_only_on_the_notebook_by_opt_in(
    dev: Run, prod: Run, public: Run
) -> None:
    """AmazonSageMakerFullAccess is off by default: the scoped notebook policy covers the
    documented workflow. The opt-in puts it on the notebook role and nowhere else."""
    for run in (dev, prod):
        assert run.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []
    [attachment] = public.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert inputs(attachment)["policyArn"] == "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess"
    assert inputs(attachment)["role"] == notebook_role(public)["outputs"]["name"]


def test_job_role_reads_model_and_inputs_writes_outputs_and_nothing_else(
    dev: Run, prod: Run
) -> None:
    for run, stack in ((dev, "dev"), (prod, "prod")):
        policy = job_role_policy(run)
        assert inputs(policy)["role"] == job_role(run)["outputs"]["name"]
        statements = statements_by_sid(document(policy))
        arn = bucket_arn(run)
        runs = f"runs/{stack}/*/"
        assert statements["ReadPrefixes"]["Action"] == "s3:GetObject"
        assert statements["ReadPrefixes"]["Resource"] == [
            f"{arn}/{runs}model/*",
            f"{arn}/{runs}input/*",
            f"{arn}/transform/input/*",
        ]
        assert sorted(statements["WritePrefixes"]["Action"]) == [
            "s3:AbortMultipartUpload",
            "s3:PutObject",
        ]
        assert statements["WritePrefixes"]["Resource"] == [
            f"{arn}/{runs}output/*",
            f"{arn}/transform/output/*",
        ]
        assert statements["ListPrefixes"]["Resource"] == arn
        repository = run.one("aws:ecr/repository:Repository")["outputs"]["arn"]
        assert statements["ProjectRepositoryPull"]["Resource"] == repository
        group = f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/TransformJobs"
        job_prefix = naming.stack_prefix(PROJECT, stack)
        assert statements["WriteOwnJobLogStreams"]["Resource"] == (
            f"{group}:log-stream:{job_prefix}*"
        )
        assert statements["TransformLogGroup"]["Resource"] == f"{group}:*"
        assert statements["TransformJobMetrics"]["Condition"] == {
            "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TransformJobs"}
        }
        expected = {
            "ListPrefixes",
            "ReadPrefixes",
            "WritePrefixes",
            "EcrLogin",
            "ProjectRepositoryPull",
            "TransformLogGroup",
            "WriteOwnJobLogStreams",
            "TransformJobMetrics",
        }
        if run is prod:
            expected |= {"UseStackKey", "GrantStackKeyToServices"}
            key = prod.one("aws:kms/key:Key")["outputs"]["arn"]
            assert statements["UseStackKey"]["Resource"] == key
        assert set(statements) == expected
        # The job role carries its own policy and nothing else.
        role_name = inputs(policy)["role"]
        assert [r for r in run.of_type(ROLE_POLICY) if inputs(r)["role"] == role_name] == [policy]


def test_job_role_prefixes_are_where_the_cloud_script_writes() -> None:
    from infra.program import RUNS_PREFIX
    from model.cloud.publish import RUNS_PREFIX as SCRIPT_RUNS_PREFIX

    assert RUNS_PREFIX == SCRIPT_RUNS_PREFIX


def test_notebook_role_scoped_to_this_stack(dev: Run) -> None:
    policy = notebook_role_policy(dev)
    assert inputs(policy)["role"] == notebook_role(dev)["outputs"]["name"]
    statements = statements_by_sid(document(policy))
    arn = bucket_arn(dev)
    repository = dev.one("aws:ecr/repository:Repository")["outputs"]["arn"]
    secret = dev.one("aws:secretsmanager/secret:Secret")["outputs"]["arn"]
    job_prefix = naming.stack_prefix(PROJECT, "dev")
    sagemaker = f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}"
    assert statements["ProjectBucket"]["Resource"] == arn
    assert statements["ProjectBucketObjects"]["Resource"] == f"{arn}/*"
    assert statements["EcrLogin"] == {
        "Sid": "EcrLogin",
        "Effect": "Allow",
        "Action": "ecr:GetAuthorizationToken",
        "Resource": "*",
    }
    assert statements["ProjectRepositoryPull"]["Resource"] == repository
    assert statements["GitCredentials"]["Resource"] == secret
    assert statements["StackModelsAndJobs"]["Resource"] == [
        f"{sagemaker}:model/{job_prefix}*",
        f"{sagemaker}:transform-job/{job_prefix}*",
    ]
    assert statements["PassJobRoleToSageMakerOnly"]["Resource"] == job_role(dev)["outputs"]["arn"]
    assert statements["PassJobRoleToSageMakerOnly"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert (
        statements["CurrentModelParameter"]["Resource"]
        == (dev.one("aws:ssm/parameter:Parameter")["outputs"]["arn"])
    )
    assert statements["StopThisNotebookWhenIdle"]["Resource"] == (
        f"{sagemaker}:notebook-instance/{PROJECT}-dev-notebook"
    )
    assert not any(sid.startswith("AnyBucket") for sid in statements)
    assert "UseStackKey" not in statements


def test_prod_roles_use_the_stack_key(prod: Run) -> None:
    key = prod.one("aws:kms/key:Key")["outputs"]["arn"]
    for policy in (job_role_policy(prod), notebook_role_policy(prod)):
        statements = statements_by_sid(document(policy))
        assert statements["UseStackKey"]["Resource"] == key
        assert statements["GrantStackKeyToServices"]["Condition"] == {
            "Bool": {"kms:GrantIsForAWSResource": "true"}
        }


def test_any_bucket_access_only_behind_the_switch_and_only_for_the_notebook(public: Run) -> None:
    statements = statements_by_sid(document(notebook_role_policy(public)))
    assert statements["AnyBucketSeedCompat"]["Resource"] == "arn:aws:s3:::*"
    assert statements["AnyBucketObjectsSeedCompat"]["Resource"] == "arn:aws:s3:::*/*"
    assert "GitCredentials" not in statements
    job = statements_by_sid(document(job_role_policy(public)))
    assert not any(sid.startswith("AnyBucket") for sid in job)


# --- GitHub secret -----------------------------------------------------------------------


def test_secret_holds_username_and_token_as_a_pulumi_secret(dev: Run, prod: Run) -> None:
    for run, window in ((dev, 0), (prod, 30)):
        version = run.one("aws:secretsmanager/secretVersion:SecretVersion")["inputs"]
        assert version["secretString"][SIG_KEY] == SECRET_SIG
        assert json.loads(plain(version["secretString"])) == {
            "username": "octo-ml",
            "password": GITHUB_TOKEN,
        }
        secret = inputs(run.one("aws:secretsmanager/secret:Secret"))
        assert secret["recoveryWindowInDays"] == window
    prod_key = prod.one("aws:kms/key:Key")["outputs"]["arn"]
    assert inputs(prod.one("aws:secretsmanager/secret:Secret"))["kmsKeyId"] == prod_key


def test_public_repository_needs_no_secret(public: Run) -> None:
    assert not public.of_type("aws:secretsmanager/secret:Secret")
    assert not public.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    git = inputs(public.one("aws:sagemaker/codeRepository:CodeRepository"))["gitConfig"]
    assert "secretArn" not in git


# --- notebook ----------------------------------------------------------------------------


def test_code_repository_uses_url_branch_and_secret(dev: Run) -> None:
    repository = inputs(dev.one("aws:sagemaker/codeRepository:CodeRepository"))
    assert repository["codeRepositoryName"] == f"{PROJECT}-dev-repo"
    assert repository["gitConfig"] == {
        "repositoryUrl": REPO_URL,
        "branch": "main",
        "secretArn": dev.one("aws:secretsmanager/secret:Secret")["outputs"]["arn"],
    }


def test_notebook_instance(dev: Run, prod: Run) -> None:
    for run, instance_type, volume, root in (
        (dev, "ml.t3.medium", 20, "Enabled"),
        (prod, "ml.t3.large", 50, "Disabled"),
    ):
        record = run.one("aws:sagemaker/notebookInstance:NotebookInstance")
        notebook = inputs(record)
        # Records arrive in completion order, not declaration order: pick by name.
        (first_subnet,) = [
            r["name"] for r in run.of_type("aws:ec2/subnet:Subnet") if r["name"].endswith("-1")
        ]
        assert notebook["instanceType"] == instance_type
        assert notebook["volumeSize"] == volume
        assert notebook["rootAccess"] == root
        assert notebook["platformIdentifier"] == "notebook-al2023-v1"
        assert notebook["directInternetAccess"] == "Enabled"
        assert notebook["instanceMetadataServiceConfiguration"] == {
            "minimumInstanceMetadataServiceVersion": "2"
        }
        assert notebook["subnetId"] == f"{first_subnet}-id"
        assert notebook["securityGroups"] == [
            f"{run.one('aws:ec2/securityGroup:SecurityGroup')['name']}-id"
        ]
        assert notebook["roleArn"] == notebook_role(run)["outputs"]["arn"]
        assert (
            notebook["defaultCodeRepository"]
            == inputs(run.one("aws:sagemaker/codeRepository:CodeRepository"))["codeRepositoryName"]
        )
        lifecycle = run.one(
            "aws:sagemaker/notebookInstanceLifecycleConfiguration:NotebookInstanceLifecycleConfiguration"
        )
        assert notebook["lifecycleConfigName"] == lifecycle["outputs"]["name"]
        assert record["delete_before_replace"] is True
    assert "kmsKeyId" not in inputs(dev.one("aws:sagemaker/notebookInstance:NotebookInstance"))
    assert (
        inputs(prod.one("aws:sagemaker/notebookInstance:NotebookInstance"))["kmsKeyId"]
        == prod.one("aws:kms/key:Key")["outputs"]["arn"]
    )


def test_notebook_waits_for_role_policies_and_secret_value(dev: Run) -> None:
    notebook = dev.one("aws:sagemaker/notebookInstance:NotebookInstance")
    needed = [
        notebook_role_policy(dev)["urn"],
        dev.one("aws:secretsmanager/secretVersion:SecretVersion")["urn"],
    ]
    assert set(needed) <= set(notebook["dependencies"])


def test_lifecycle_scripts_rendered_from_config(dev: Run, prod: Run) -> None:
    for run, idle in ((dev, 60), (prod, 120)):
        lifecycle = inputs(
            run.one(
                "aws:sagemaker/notebookInstanceLifecycleConfiguration:NotebookInstanceLifecycleConfiguration"
            )
        )
        on_create = base64.b64decode(lifecycle["onCreate"]).decode()
        on_start = base64.b64decode(lifecycle["onStart"]).decode()
        assert on_create.startswith("#!/bin/bash\n")
        assert ': "${CODE_SERVER_VERSION:=4.105.1}"' in on_create
        assert on_start.startswith("#!/bin/bash\n")
        assert f': "${{IDLE_TIMEOUT_MINUTES:={idle}}}"' in on_start
        assert len(lifecycle["onCreate"]) <= 16384 and len(lifecycle["onStart"]) <= 16384


# --- transform trigger (wired to this stack's bucket, role and key) -----------------------


def test_trigger_function_runs_the_handler_with_this_stacks_job_settings(
    dev: Run, prod: Run
) -> None:
    for run, stack, instance_type in ((dev, "dev", "ml.m5.large"), (prod, "prod", "ml.m5.xlarge")):
        function = inputs(run.one(FUNCTION))
        assert function["name"] == f"{resource_prefix(PROJECT, stack)}-trigger"
        assert function["runtime"] == "python3.14"
        assert function["handler"] == "lambda_handler.handler.handler"
        assert function["role"] == run.named(ROLE, "trigger")["outputs"]["arn"]
        assert (function["timeout"], function["memorySize"]) == (60, 256)
        assert function["reservedConcurrentExecutions"] == -1
        assets = function["code"]["AssetArchive"]["assets"]
        assert "lambda_handler/handler.py" in assets
        assert all(path.startswith("lambda_handler/") for path in assets)
        # The handler accepts its environment, and it names what the outputs name.
        job = JobSettings.from_env(function["environment"]["variables"])
        assert job.job_name_prefix == naming.stack_prefix(PROJECT, stack)
        assert job.job_name_prefix == run.exports["transform_job_name_prefix"]
        assert job.model_parameter == run.exports["current_model_parameter"]
        assert (job.input_prefix, job.output_prefix, job.input_suffix) == (
            "transform/input/",
            "transform/output/",
            ".csv",
        )
        assert job.instance_type == instance_type
    # Transform output is encrypted with the stack's key where there is one.
    dev_job = JobSettings.from_env(inputs(dev.one(FUNCTION))["environment"]["variables"])
    assert dev_job.output_kms_key == ""
    prod_job = JobSettings.from_env(inputs(prod.one(FUNCTION))["environment"]["variables"])
    assert prod_job.output_kms_key == prod.one("aws:kms/key:Key")["outputs"]["arn"]


def test_uploads_to_this_stacks_bucket_invoke_the_function(dev: Run) -> None:
    bucket = dev.one("aws:s3/bucket:Bucket")["outputs"]
    function = dev.one(FUNCTION)
    notification = dev.one("aws:s3/bucketNotification:BucketNotification")
    assert inputs(notification)["bucket"] == bucket["bucket"]
    [target] = inputs(notification)["lambdaFunctions"]
    assert target["lambdaFunctionArn"] == function["outputs"]["arn"]
    assert target["events"] == ["s3:ObjectCreated:*"]
    assert (target["filterPrefix"], target["filterSuffix"]) == ("transform/input/", ".csv")
    permission = dev.one("aws:lambda/permission:Permission")
    assert inputs(permission) == {
        "action": "lambda:InvokeFunction",
        "function": function["outputs"]["name"],
        "principal": "s3.amazonaws.com",
        "sourceArn": bucket["arn"],
        "sourceAccount": ACCOUNT,
    }
    assert permission["urn"] in notification["dependencies"]


def test_trigger_role_starts_this_stacks_jobs_and_passes_only_the_job_role(
    dev: Run, prod: Run
) -> None:
    for run, stack, instance_type in ((dev, "dev", "ml.m5.large"), (prod, "prod", "ml.m5.xlarge")):
        trust = document(run.named(ROLE, "trigger"), "assumeRolePolicy")
        assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "lambda.amazonaws.com"}]
        policy = run.named(ROLE_POLICY, "trigger-permissions")
        assert inputs(policy)["role"] == run.named(ROLE, "trigger")["outputs"]["name"]
        statements = statements_by_sid(document(policy))
        jobs = f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:transform-job/"
        assert statements["StartStackTransformJobs"]["Resource"] == (
            f"{jobs}{naming.stack_prefix(PROJECT, stack)}*"
        )
        assert statements["StartStackTransformJobs"]["Condition"] == {
            "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": [instance_type]}
        }
        assert (
            statements["PassJobRoleToSageMakerOnly"]["Resource"]
            == (job_role(run)["outputs"]["arn"])
        )
        assert statements["PassJobRoleToSageMakerOnly"]["Condition"] == {
            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
        }
        assert (
            statements["ReadCurrentModel"]["Resource"]
            == (run.one("aws:ssm/parameter:Parameter")["outputs"]["arn"])
        )
        assert (
            statements["SendFailedEvents"]["Resource"]
            == (run.one("aws:sqs/queue:Queue")["outputs"]["arn"])
        )


def test_failed_events_logs_and_job_notifications_per_stack(dev: Run, prod: Run) -> None:
    for run, retention, email in ((dev, 14, None), (prod, 90, EMAIL)):
        assert inputs(run.one("aws:cloudwatch/logGroup:LogGroup"))["retentionInDays"] == retention
        queue = run.one("aws:sqs/queue:Queue")
        invoke_config = inputs(
            run.one("aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig")
        )
        assert (
            invoke_config["destinationConfig"]["onFailure"]["destination"]
            == (queue["outputs"]["arn"])
        )
        topic_arn = run.one("aws:sns/topic:Topic")["outputs"]["arn"]
        assert inputs(run.one("aws:sns/topicPolicy:TopicPolicy"))["arn"] == topic_arn
        rules = run.of_type("aws:cloudwatch/eventRule:EventRule")
        assert len(rules) == 2
        for rule in rules:
            pattern = json.loads(inputs(rule)["eventPattern"])
            assert pattern["detail"]["TransformJobName"] == [
                {"prefix": run.exports["transform_job_name_prefix"]}
            ]
        subscriptions = [
            inputs(r) for r in run.of_type("aws:sns/topicSubscription:TopicSubscription")
        ]
        expected = [] if email is None else [(topic_arn, "email", email)]
        assert [(s["topic"], s["protocol"], s["endpoint"]) for s in subscriptions] == expected


# --- outputs -----------------------------------------------------------------------------


def test_outputs_are_exactly_the_documented_ones(dev: Run, prod: Run, public: Run) -> None:
    assert set(dev.exports) == REQUIRED_OUTPUTS | {"github_secret_arn"}
    assert set(prod.exports) == REQUIRED_OUTPUTS | {
        "github_secret_arn",
        "kms_key_arn",
        "log_bucket_name",
    }
    assert set(public.exports) == REQUIRED_OUTPUTS


def test_output_values(dev: Run) -> None:
    out = dev.exports
    name = f"{PROJECT}-dev-notebook"
    host = f"https://{name}.notebook.eu-west-1.sagemaker.aws"
    assert out["region"] == "eu-west-1"
    assert out["vpc_id"] == f"{dev.one('aws:ec2/vpc:Vpc')['name']}-id"
    assert out["subnet_ids"] == [f"{s['name']}-id" for s in dev.of_type("aws:ec2/subnet:Subnet")]
    assert out["bucket_name"] == data_bucket(dev)["outputs"]["bucket"]
    assert out["job_role_arn"] == job_role(dev)["outputs"]["arn"]
    assert out["notebook_role_arn"] == notebook_role(dev)["outputs"]["arn"]
    # Models (and so jobs) run as the job role; the old output name keeps naming it.
    assert out["sagemaker_role_arn"] == out["job_role_arn"]
    assert out["job_role_arn"].startswith(f"arn:aws:iam::{ACCOUNT}:role/{PROJECT}-dev-job")
    assert out["notebook_instance_name"] == name
    assert out["notebook_url"] == f"{host}/lab"
    assert out["code_server_url"] == f"{host}/codeserver/"
    assert out["github_secret_arn"] == dev.one("aws:secretsmanager/secret:Secret")["outputs"]["arn"]
    assert out["trigger_function_name"] == f"{PROJECT}-dev-trigger"
    assert out["input_prefix"] == "transform/input/"
    assert out["output_prefix"] == "transform/output/"
    assert out["current_model_parameter"] == f"/{PROJECT}/dev/current-model"
    assert out["transform_job_name_prefix"] == naming.stack_prefix(PROJECT, "dev")
    queue = dev.one("aws:sqs/queue:Queue")["outputs"]
    assert out["failed_events_queue_url"] == queue["url"]
    assert (
        queue["url"]
        == f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/{PROJECT}-dev-trigger-failed"
    )
    topic_arn = f"arn:aws:sns:eu-west-1:{ACCOUNT}:{PROJECT}-dev-transform-jobs"
    assert out["notifications_topic_arn"] == dev.one("aws:sns/topic:Topic")["outputs"]["arn"]
    assert out["notifications_topic_arn"] == topic_arn
    # Every export is a real value (strings, or the list of subnet ids), none unresolved.
    assert all(isinstance(v, str) and v for k, v in out.items() if k != "subnet_ids")


def test_the_cloud_script_reads_outputs_the_program_exports(dev: Run, prod: Run) -> None:
    """model.cloud reads outputs by name: a rename on either side must fail here."""
    from model.cloud.outputs import OPTIONAL, REQUIRED

    assert set(REQUIRED) <= set(dev.exports)
    assert set(OPTIONAL) <= set(dev.exports) | set(prod.exports)
