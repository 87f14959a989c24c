"""What an S3 failure means and what to do about it, read from the client's error text.

obstore maps few HTTP answers to exception types (404, 412, 403, 401); the rest — a
missing bucket, a refused range, an unreachable endpoint — show only in the message,
which quotes the server's XML error code. Pure: no I/O, no client library.
"""

from __future__ import annotations

import re

from ..errors import AccessRefusedError, StoreError
from .s3_config import S3Config

_MAX_TEXT = 600
# The keys are wrong: unknown key id, or a secret (or clock) that does not match it.
_BAD_KEYS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
             "RequestTimeTooSkewed", "401 Unauthorized")
_KEYS_ADVICE = ("check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary keys){} "
                "(profiles in ~/.aws are not read: export a profile's keys with "
                '`eval "$(aws configure export-credentials --profile NAME --format env)"`)')


def message(exc: BaseException) -> str:
    """The first part of an obstore error (its "Debug source" dump repeats it at length)."""
    text = " ".join(str(exc).split("\n\nDebug source:")[0].split())
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


def bucket_missing(exc: BaseException) -> bool:
    """A 404 for the bucket, not the key (GET, PUT and LIST say so; a HEAD cannot)."""
    return "NoSuchBucket" in str(exc)


def range_refused(exc: BaseException) -> bool:
    """A 416: the range starts at or past the end of the blob."""
    return "InvalidRange" in str(exc) or "416 Range Not Satisfiable" in str(exc)


def credentials_refused(exc: BaseException) -> bool:
    text = str(exc)
    return any(s in text for s in ("401 Unauthorized", "403 Forbidden", "InvalidAccessKeyId",
                                   "SignatureDoesNotMatch", "AccessDenied"))


def _hint(config: S3Config, exc: BaseException, text: str) -> str:
    where = config.endpoint
    if bucket_missing(exc):
        return f"bucket {config.bucket!r} does not exist at {where}; create it"
    if "169.254.169.254" in text or "fd00:ec2::254" in text:
        return ("no credentials found (the instance metadata service did not give any): set "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    if any(s in text for s in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "401 Unauthorized")):
        return "the server rejected the credentials: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    if "403 Forbidden" in text or "AccessDenied" in text:
        return ("access denied: check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) "
                "and that the bucket policy allows List/Get/Put/DeleteObject")
    if any(s in text for s in ("error sending request", "onnect", "dns error", "timed out", "Errno")):
        return (f"cannot reach {where}: check AWS_ENDPOINT_URL (or endpoint_override) and the "
                "network, then retry")
    if "redirect" in text.lower() or "AuthorizationHeaderMalformed" in text:
        return "the bucket lives in another region: set AWS_REGION (or the region option)"
    return "retry; if it persists check the endpoint, region (AWS_REGION) and credentials"


def _server_error(text: str) -> tuple[str, str]:
    """The S3 error code and message quoted in an obstore error ("" where absent)."""
    code = re.search(r"<Code>([^<]{1,100})</Code>", text)
    said = re.search(r"<Message>([^<]{1,300})</Message>", text)
    return (code.group(1) if code else ""), (said.group(1).strip() if said else "")


def access_refused(config: S3Config, action: str, what: str, text: str) -> AccessRefusedError | None:
    """A refused or denied request as one clear sentence (the server's XML left out), else None."""
    code, said = _server_error(text)
    code = code or next((s for s in (*_BAD_KEYS, "AccessDenied", "403 Forbidden") if s in text), "")
    if not code:
        return None
    where = f"could not {action} {what} in {config.url}"
    detail = f" ({code}: {said})" if said else f" ({code})"
    done = "; nothing was recorded" if action == "write" else ""
    if code in _BAD_KEYS:
        text = f"{where}: {config.endpoint} refused the credentials{detail}{done}; {{}}"
    elif code in ("AccessDenied", "403 Forbidden"):
        text = (f"{where}: {config.endpoint} denied access{detail}{done}; {{}}, and that they may use the bucket: "
                "the store needs s3:ListBucket on it and s3:GetObject, s3:PutObject and s3:DeleteObject under "
                "the prefix")
    else:
        return None
    error = AccessRefusedError(text.format(_KEYS_ADVICE.format(", or the access_key / secret_key options")), code)
    error.cli_message = text.format(_KEYS_ADVICE.format(""))
    return error


def store_error(config: S3Config, action: str, what: str, exc: BaseException) -> StoreError:
    """``exc`` as a StoreError that says what failed, where, and what to do; no secret in it."""
    text = config.scrub(message(exc))
    if credentials_refused(exc):
        refused = access_refused(config, action, what, text)
        if refused is not None:
            return refused
    hint = _hint(config, exc, text)
    if action == "write":
        hint += "; nothing was recorded"
    return StoreError(f"could not {action} {what} in {config.url}: {text}; {hint}")
