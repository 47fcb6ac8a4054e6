"""Cost Explorer's GetCostAndUsage on the EC2 endpoint, as boto3 and the aws CLI call it
(AWS JSON 1.1, SigV4 service `ce`), without a data plane: shapes, empty answers, errors.

Metered traffic and its prices are tested with real packets in test_metering.py.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from helpers import AwsCliError, expect_error


def test_an_account_without_traffic_gets_zero_buckets_in_aws_shapes(server, aws):
    out = aws("A", "ce", "get-cost-and-usage", "--time-period", "Start=2026-10-30,End=2026-11-02",
              "--granularity", "DAILY", "--metrics", "UnblendedCost", "UsageQuantity")
    days = [(p["TimePeriod"]["Start"], p["TimePeriod"]["End"]) for p in out["ResultsByTime"]]
    assert days == [("2026-10-30", "2026-10-31"), ("2026-10-31", "2026-11-01"), ("2026-11-01", "2026-11-02")]
    for p in out["ResultsByTime"]:
        assert p["Total"] == {"UnblendedCost": {"Amount": "0", "Unit": "USD"},
                              "UsageQuantity": {"Amount": "0", "Unit": "N/A"}}, p
        assert p["Groups"] == []
        assert isinstance(p["Estimated"], bool)
    assert out["DimensionValueAttributes"] == []


def test_monthly_buckets_and_grouped_answers_through_boto3(server):
    ce = server.client("B", service="ce")
    r = ce.get_cost_and_usage(TimePeriod={"Start": "2026-09-15", "End": "2026-11-03"}, Granularity="MONTHLY",
                              Metrics=["BlendedCost"], GroupBy=[{"Type": "DIMENSION", "Key": "SERVICE"}],
                              Filter={"Or": [{"Dimensions": {"Key": "REGION", "Values": ["us-east-1"]}},
                                             {"Not": {"Dimensions": {"Key": "USAGE_TYPE",
                                                                     "Values": ["x"]}}}]})
    periods = [(p["TimePeriod"]["Start"], p["TimePeriod"]["End"]) for p in r["ResultsByTime"]]
    assert periods == [("2026-09-15", "2026-10-01"), ("2026-10-01", "2026-11-01"), ("2026-11-01", "2026-11-03")]
    assert all(p["Total"] == {} and p["Groups"] == [] for p in r["ResultsByTime"]), "grouped: empty Total"
    assert r["GroupDefinitions"] == [{"Type": "DIMENSION", "Key": "SERVICE"}]


@pytest.mark.parametrize("kw, needle", [
    ({"TimePeriod": {"Start": "2026-11-05", "End": "2026-11-01"}}, "before end"),
    ({"TimePeriod": {"Start": "2026-02-30", "End": "2026-03-02"}}, "not valid"),
    ({"Metrics": ["Dollars"]}, "Dollars"),
    ({"Granularity": "HOURLY"}, "Hourly"),
    ({"GroupBy": [{"Type": "DIMENSION", "Key": "COLOUR"}]}, "Group Definition"),
    ({"GroupBy": [{"Type": "DIMENSION", "Key": k} for k in ("SERVICE", "AZ", "REGION")]}, "more than 2"),
    ({"Filter": {"And": [{"Dimensions": {"Key": "SERVICE", "Values": ["EC2 - Other"]}}]}}, "at least 2"),
    ({"Filter": {"Dimensions": {"Key": "SERVICE", "Values": ["x"]},
                 "Not": {"Dimensions": {"Key": "SERVICE", "Values": ["y"]}}}}, "more than one roots"),
])
def test_invalid_requests_are_validation_errors(server, kw, needle):
    ce = server.client("A", service="ce")
    q = {"TimePeriod": {"Start": "2026-11-01", "End": "2026-11-03"}, "Granularity": "DAILY",
         "Metrics": ["UnblendedCost"], **kw}
    with expect_error("ValidationException") as h:
        ce.get_cost_and_usage(**q)
    assert needle in h.error.response["Error"]["Message"], h.error.response["Error"]


def test_the_cli_shows_validation_errors(aws):
    with pytest.raises(AwsCliError) as ei:
        aws("A", "ce", "get-cost-and-usage", "--time-period", "Start=2026-11-05,End=2026-11-01",
            "--granularity", "DAILY", "--metrics", "UnblendedCost")
    assert "ValidationException" in str(ei.value), ei.value


def test_other_operations_bad_keys_and_bad_signatures_are_refused(server):
    with expect_error("UnknownOperationException"):
        server.client("A", service="ce").get_dimension_values(
            TimePeriod={"Start": "2026-11-01", "End": "2026-11-03"}, Dimension="SERVICE")
    bad_key = server.client("A", service="ce", access_key="AKIDNOBODY", secret_key="x")
    with pytest.raises(ClientError) as ei:
        bad_key.get_cost_and_usage(TimePeriod={"Start": "2026-11-01", "End": "2026-11-03"},
                                   Granularity="DAILY", Metrics=["UnblendedCost"])
    assert ei.value.response["Error"]["Code"] == "UnrecognizedClientException"
    bad_sig = server.client("A", service="ce", access_key="AKIDA1", secret_key="wrong")
    with pytest.raises(ClientError) as ei:
        bad_sig.get_cost_and_usage(TimePeriod={"Start": "2026-11-01", "End": "2026-11-03"},
                                   Granularity="DAILY", Metrics=["UnblendedCost"])
    assert ei.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_metrics_are_not_served_unless_asked_for(server):
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(f"{server.url}/metrics", timeout=5)
    assert ei.value.code != 200


def test_metrics_parse_as_prometheus_text_and_count_api_requests(server_factory):
    from prometheus_client.parser import text_string_to_metric_families
    s = server_factory(serve_args=["--metrics"])
    ec2 = s.client("A")
    ec2.describe_vpcs()
    with expect_error("InvalidVpcID.NotFound"):
        ec2.describe_vpcs(VpcIds=["vpc-0123456789abcdef0"])

    def scrape():
        with urllib.request.urlopen(f"{s.url}/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            fams = list(text_string_to_metric_families(r.read().decode()))
        return {(smp.name, json.dumps(smp.labels, sort_keys=True)): smp.value for f in fams for smp in f.samples}

    m = scrape()
    ok = m[("vpcd_api_requests_total", json.dumps({"action": "DescribeVpcs", "outcome": "ok"}, sort_keys=True))]
    nf = m[("vpcd_api_requests_total",
            json.dumps({"action": "DescribeVpcs", "outcome": "InvalidVpcID.NotFound"}, sort_keys=True))]
    assert (ok, nf) == (1, 1)
    assert m[("vpcd_api_request_duration_seconds_count", json.dumps({"action": "DescribeVpcs"}))] == 2
    ec2.describe_vpcs()
    m2 = scrape()
    assert m2[("vpcd_api_requests_total",
               json.dumps({"action": "DescribeVpcs", "outcome": "ok"}, sort_keys=True))] == 2
