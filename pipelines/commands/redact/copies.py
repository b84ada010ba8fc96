"""Redacted copies of a landed balance file (kis-balance-raw/1) and of a quarantined answer
(kis-balance-quarantine/1): masked, amounts replaced on request, checked for secrets."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pipelines.commands.redact.masking import (
    account_masks,
    assert_masked,
    assert_no_secrets,
    masked_value,
    source_copy,
)
from pipelines.commands.redact.planner import replace_amounts
from pipelines.errors import RedactionError
from pipelines.ingest import landing
from pipelines.kis.protocol import Account


@dataclass
class Redacted:
    envelope: dict[str, Any]
    account_id: str
    #: What the command reports on stderr: relations kept, values whose sign could not be.
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        return json.dumps(self.envelope, ensure_ascii=False, indent=1)


def _dumps_like(original: str, body: Any) -> str:
    """JSON text of `body` in the separators and escaping the original text was written in."""
    parsed = json.loads(original)
    for separators in ((",", ":"), (", ", ": ")):
        for ensure_ascii in (False, True):
            if json.dumps(parsed, separators=separators, ensure_ascii=ensure_ascii) == original:
                return json.dumps(body, separators=separators, ensure_ascii=ensure_ascii)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def redact(
    envelope: dict[str, Any],
    *,
    key: bytes,
    amounts_seed: int | None = None,
    forbidden: Iterable[str] = (),
) -> Redacted:
    """A redacted copy of a landed file's JSON: CANO masked (the product code is kept: the
    layout depends on it), `source` reduced to what says nothing about the user, and with
    `amounts_seed` every amount replaced (see the module's docstring). A quarantined answer
    is redacted the same way (see `redact_quarantined`)."""
    if isinstance(envelope, dict) and envelope.get("format") == landing.QUARANTINE_FORMAT:
        return redact_quarantined(envelope, key=key, amounts_seed=amounts_seed, forbidden=forbidden)
    if not isinstance(envelope, dict) or envelope.get("format") != landing.FORMAT:
        raise RedactionError(
            f"not a {landing.FORMAT} file (a landed raw balance answer) nor a "
            f"{landing.QUARANTINE_FORMAT} one (an answer kept in quarantine)"
        )
    forbidden = list(forbidden)
    assert_no_secrets(envelope, "the file", forbidden)
    account, masks = account_masks(envelope, key)
    fake = Account(masks[account.cano], account.product_code)

    pages = envelope.get("pages")
    if not isinstance(pages, list):
        raise RedactionError("the file has no pages")
    bodies: list[Any] = []
    for number, page in enumerate(pages, start=1):
        try:
            body = json.loads(page["body"])
        except (TypeError, KeyError, ValueError) as error:
            raise RedactionError(f"page {number}: the body is not JSON ({error})") from None
        assert_no_secrets(body, f"page {number} body", forbidden)
        bodies.append(body)
    notes: list[str] = []
    if amounts_seed is not None:
        notes += replace_amounts(bodies, account, masks, amounts_seed)

    copy: dict[str, Any] = {}
    for name, value in envelope.items():
        if name == "source":
            copy[name] = source_copy(value)
        elif name == "pages":
            copy[name] = [
                {
                    k: _dumps_like(v, masked_value(body, masks))
                    if k == "body"
                    else masked_value(v, masks)
                    for k, v in page.items()
                }
                for page, body in zip(pages, bodies, strict=True)
            ]
        else:
            copy[name] = masked_value(value, masks)
    copy["redacted"] = {
        "by": "kis-redact",
        "account_numbers": "masked",
        "amounts": "replaced" if amounts_seed is not None else "as received",
    }
    assert_masked(copy, masks)
    assert_no_secrets(copy, "the copy", forbidden)
    return Redacted(copy, fake.id, notes)


def redact_quarantined(
    envelope: dict[str, Any],
    *,
    key: bytes,
    amounts_seed: int | None = None,
    forbidden: Iterable[str] = (),
) -> Redacted:
    """A redacted copy of a quarantined answer (an HTML page, truncated or mangled JSON, an
    error body, a redirect, the first part of an oversized body): CANO masked wherever it
    appears, in a JSON body value by value, in any other text or bytes wherever the digits
    occur. Amounts can be replaced only in a body that is JSON; otherwise RedactionError."""
    forbidden = list(forbidden)
    assert_no_secrets(envelope, "the file", forbidden)
    account, masks = account_masks(envelope, key)
    fake = Account(masks[account.cano], account.product_code)
    answer = envelope.get("answer")
    if not isinstance(answer, dict) or not isinstance(answer.get("body"), str):
        raise RedactionError("the file has no answer body")
    encoding, text = answer.get("body_encoding"), answer["body"]
    notes: list[str] = []
    refused_amounts = (
        "--amounts: the body is {what}, so its amounts cannot be found and replaced; leave "
        "out --amounts for a copy with the body as received (account numbers masked)"
    )
    if encoding == "base64":
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as error:
            raise RedactionError(f"answer.body is not base64 ({error})") from None
        assert_no_secrets({"body": data.decode("latin-1")}, "the answer's body", forbidden)
        if amounts_seed is not None:
            raise RedactionError(refused_amounts.format(what="not UTF-8 text (kept as base64)"))
        for real, masked in masks.items():
            data = data.replace(real.encode(), masked.encode())
        body = base64.b64encode(data).decode("ascii")
    elif encoding == "utf-8":
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            assert_no_secrets(parsed, "the answer's body", forbidden)
            if amounts_seed is not None:
                notes += replace_amounts([parsed], account, masks, amounts_seed)
            body = _dumps_like(text, masked_value(parsed, masks))
        else:
            if amounts_seed is not None:
                raise RedactionError(refused_amounts.format(what="not a JSON object"))
            body = text
            for real, masked in masks.items():
                body = body.replace(real, masked)
    else:
        raise RedactionError(f"answer.body_encoding {encoding!r}: expected utf-8 or base64")
    copy: dict[str, Any] = {}
    for name, value in envelope.items():
        if name == "source":
            copy[name] = source_copy(value)
        elif name == "answer":
            copy[name] = {
                k: body if k == "body" else masked_value(v, masks) for k, v in value.items()
            }
        else:
            copy[name] = masked_value(value, masks)
    copy["redacted"] = {
        "by": "kis-redact",
        "account_numbers": "masked",
        "amounts": "replaced" if amounts_seed is not None else "as received",
    }
    # base64 text holds digits by chance: the bytes were checked above, not their encoding
    checked = {**copy, "answer": {**copy["answer"], "body": ""}} if encoding == "base64" else copy
    assert_masked(checked, masks)
    assert_no_secrets(checked, "the copy", forbidden)
    return Redacted(copy, fake.id, notes)
