"""SSM GetParameter for the public AMI parameters on vpcd's endpoint (AWS
JSON 1.1, X-Amz-Target AmazonSSM.GetParameter), through boto3 and the aws
CLI: the value is an image ID RunInstances and DescribeImages take."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

AL2023 = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


def test_get_parameter_gives_a_launchable_image(client, aws):
    ssm = client("A", service="ssm")
    p = ssm.get_parameter(Name=AL2023)["Parameter"]
    assert p["Name"] == AL2023 and p["Type"] == "String" and p["DataType"] == "aws:ec2:image"
    assert p["Value"].startswith("ami-") and len(p["Value"]) == 21
    assert p["ARN"] == f"arn:aws:ssm:us-east-1::parameter{AL2023}"
    # Stable, and the same when asked by ARN; another region has its own image.
    assert ssm.get_parameter(Name=p["ARN"])["Parameter"]["Value"] == p["Value"]
    west = client("A", "us-west-2", service="ssm").get_parameter(Name=AL2023)["Parameter"]["Value"]
    assert west != p["Value"]
    ec2 = client("A")
    img = ec2.describe_images(ImageIds=[p["Value"]])["Images"][0]
    assert img["ImageId"] == p["Value"] and img["Architecture"] == "x86_64"
    out = aws("A", "ssm", "get-parameter", "--name", AL2023)
    assert out["Parameter"]["Value"] == p["Value"]


def test_unknown_parameter(client):
    ssm = client("A", service="ssm")
    with pytest.raises(ClientError) as e:
        ssm.get_parameter(Name="/aws/service/ami-amazon-linux-latest/no-such-image")
    assert e.value.response["Error"]["Code"] == "ParameterNotFound"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as e:
        ssm.get_parameters_by_path(Path="/aws/service")
    assert e.value.response["Error"]["Code"] == "UnknownOperationException"
