"""Resolving an s3:// store's settings from options and AWS_* variables (pure, no server)."""

from __future__ import annotations

import pytest

from cas_repo.errors import StoreError
from cas_repo.objects.s3_config import resolve


def test_options_win_over_the_environment():
    env = {"AWS_ENDPOINT_URL": "http://10.0.0.1:9000", "AWS_REGION": "eu-west-1",
           "AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "ENVSECRET"}
    c = resolve("s3://bucket/a/b", {"endpoint_override": "127.0.0.1:9001", "region": "us-east-1",
                                    "access_key": "OPTKEY", "secret_key": "OPTSECRET"}, env)
    assert (c.bucket, c.prefix, c.endpoint_override, c.region) == ("bucket", "a/b", "127.0.0.1:9001", "us-east-1")
    assert (c.access_key, c.secret_key) == ("OPTKEY", "OPTSECRET")
    assert c.scheme == "https"  # a bare host:port says nothing about the scheme


def test_environment_supplies_endpoint_scheme_region_and_keys():
    env = {"AWS_ENDPOINT_URL": "http://minio.local:9000/", "AWS_DEFAULT_REGION": "eu-central-1",
           "AWS_ACCESS_KEY_ID": "K", "AWS_SECRET_ACCESS_KEY": "S", "AWS_SESSION_TOKEN": "T"}
    c = resolve("s3://models", {}, env)
    assert (c.endpoint_override, c.scheme, c.region) == ("minio.local:9000", "http", "eu-central-1")
    assert (c.access_key, c.secret_key, c.session_token) == ("K", "S", "T")
    assert c.prefix == "" and c.url == "s3://models"


def test_service_specific_endpoint_and_aws_region_take_precedence():
    env = {"AWS_ENDPOINT_URL": "http://generic:1", "AWS_ENDPOINT_URL_S3": "https://s3only:2",
           "AWS_REGION": "ap-south-1", "AWS_DEFAULT_REGION": "us-west-2"}
    c = resolve("s3://bkt/p", {}, env)
    assert (c.endpoint_override, c.scheme, c.region) == ("s3only:2", "https", "ap-south-1")


def test_no_keys_leaves_the_client_chain_in_charge():
    c = resolve("s3://bkt/p", {}, {})
    assert c.access_key is None and c.secret_key is None and c.region is None
    kwargs = c.store_kwargs()
    assert "access_key_id" not in str(kwargs) and "secret" not in str(kwargs)


def test_store_kwargs_for_a_loopback_server_and_for_aws():
    local = resolve("s3://bkt/p/q", {"endpoint_override": "http://127.0.0.1:9000", "region": "us-east-1",
                                     "access_key": "K", "secret_key": "S", "connect_timeout": 2,
                                     "max_attempts": 4}, {})
    kw = local.store_kwargs()
    assert (kw["bucket"], kw["prefix"]) == ("bkt", "p/q")
    assert kw["config"] == {"endpoint": "http://127.0.0.1:9000", "region": "us-east-1",
                            "conditional_put": "etag", "virtual_hosted_style_request": False}
    assert kw["client_options"]["allow_http"] is True
    assert kw["client_options"]["connect_timeout"].total_seconds() == 2
    assert kw["retry_config"] == {"max_retries": 3}
    assert "S" not in kw["config"].values()  # secrets travel through the credential provider
    aws = resolve("s3://bkt", {"region": "eu-west-1"}, {}).store_kwargs()
    assert aws["prefix"] is None and "endpoint" not in aws["config"]
    assert aws["config"]["virtual_hosted_style_request"] is True and aws["client_options"]["allow_http"] is False
    assert resolve("s3://my.dotted.bucket", {}, {}).store_kwargs()["config"]["virtual_hosted_style_request"] is False


def test_no_keys_with_the_metadata_service_disabled_is_refused_at_once():
    with pytest.raises(StoreError, match="no S3 credentials"):
        resolve("s3://bkt", {}, {"AWS_EC2_METADATA_DISABLED": "true"})
    resolve("s3://bkt", {}, {"AWS_EC2_METADATA_DISABLED": "true", "AWS_WEB_IDENTITY_TOKEN_FILE": "/t"})
    resolve("s3://bkt", {"access_key": "K", "secret_key": "S"}, {"AWS_EC2_METADATA_DISABLED": "true"})


def test_explicit_scheme_overrides_the_endpoint_url():
    c = resolve("s3://bkt", {"endpoint_override": "https://host:1", "scheme": "http"}, {})
    assert (c.endpoint_override, c.scheme) == ("host:1", "http")


@pytest.mark.parametrize("url, match", [
    ("s3://Bad_Bucket/p", "bucket name"),
    ("s3://ab/p", "bucket name"),
    ("s3://bkt/../etc", "prefix"),
    ("s3://bkt/a//b", "prefix"),
    ("s3://key:secret@bkt/p", "not the URL"),
    ("s3://bkt/p?endpoint_override=x", "not the URL"),
    ("gs://bkt/p", "not an S3 URL"),
])
def test_malformed_urls_are_refused(url, match):
    with pytest.raises(StoreError, match=match):
        resolve(url, {}, {})


def test_a_key_without_its_secret_is_refused():
    with pytest.raises(StoreError, match="together"):
        resolve("s3://bkt", {}, {"AWS_ACCESS_KEY_ID": "K"})
    with pytest.raises(StoreError, match="together"):
        resolve("s3://bkt", {"access_key": "K"}, {"AWS_SECRET_ACCESS_KEY": "S"})


@pytest.mark.parametrize("options, match", [
    ({"endpoint": "x"}, "unknown S3 option"),
    ({"scheme": "ftp"}, "http or https"),
    ({"endpoint_override": "ftp://x:1"}, "endpoint URL"),
    ({"endpoint_override": "http://x:1/path"}, "no path"),
    ({"max_attempts": 0}, "at least 1"),
])
def test_bad_options_are_refused(options, match):
    with pytest.raises(StoreError, match=match):
        resolve("s3://bkt", options, {})


def test_secrets_stay_out_of_repr_url_and_scrubbed_text():
    c = resolve("s3://bkt/p", {"access_key": "AKIA1234", "secret_key": "s3cr3t-value",
                               "session_token": "tok-value"}, {})
    assert "s3cr3t" not in repr(c) and "tok-value" not in repr(c) and "AKIA1234" not in repr(c)
    assert c.scrub("failed for AKIA1234 with s3cr3t-value and tok-value") == "failed for *** with *** and ***"
