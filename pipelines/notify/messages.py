"""What to say: the messages of the notifications, built from plain values, with account
numbers masked and secrets scrubbed from every line (the server's and ours alike)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pipelines.errors import KisBudgetError, KisError
from pipelines.kis.protocol import KisApiError
from pipelines.kis.retry import is_transient

#: JWTs (KIS's access tokens are) and bearer tokens, wherever a text holds one.
TOKEN_PATTERN = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]*|(?i:bearer)\s+[\w.~+/-]{8,}=*")
#: CANO-ACNT_PRDT_CD of an account not in the configuration (a configured account's CANO is
#: masked on its own too; other runs of eight digits, such as msg_cd 90000000, are left).
ACCOUNT_PATTERN = re.compile(r"(?<!\d)\d{4}(\d{4})-(\d{2})(?!\d)")
MAX_ERROR_CHARS = 300


def mask(account_id: str, *, full: bool = False) -> str:
    """`12345678-01` as `****5678-01` (KIS_NOTIFY_ACCOUNTS=full: as it is)."""
    if full:
        return account_id
    cano, _, product = account_id.partition("-")
    return "****" + cano[-4:] + (f"-{product}" if product else "")


@dataclass(frozen=True)
class Redactor:
    """Scrubs a text before it leaves: the configured secrets, tokens, and account numbers
    (masked unless `full`)."""

    accounts: Sequence[str] = ()
    secrets: Sequence[str] = field(default=(), repr=False)
    full: bool = False

    def __call__(self, text: str) -> str:
        for secret in sorted((s for s in self.secrets if s and len(s) >= 4), key=len, reverse=True):
            text = text.replace(secret, "[secret]")
        text = TOKEN_PATTERN.sub("[token]", text)
        if self.full:
            return text
        for account in self.accounts:
            text = text.replace(account, mask(account))
        text = ACCOUNT_PATTERN.sub(r"****\1-\2", text)
        for cano in {account.partition("-")[0] for account in self.accounts}:
            text = re.sub(rf"(?<!\d){re.escape(cano)}(?!\d)", mask(cano), text)
        return text

    def account(self, account_id: str) -> str:
        return mask(account_id, full=self.full)


@dataclass(frozen=True)
class Message:
    """One notification: `cause` is what the ledger keeps, at most once per day."""

    day: date
    cause: str
    title: str
    body: str


# -- why an account failed ---------------------------------------------------------------------


def is_retryable(error: BaseException) -> bool:
    """Whether another attempt in the window may succeed: a transient fault (5xx, a gateway's
    page, a timeout, EGW00201) or an account's time budget spent on them. Anything else (KIS
    refused the key or the account, an answer we cannot read, a file we cannot write) needs a
    person."""
    if isinstance(error, KisError):
        return is_transient(error) or isinstance(error, KisBudgetError)
    return False


#: msg_cd of answers that another attempt may get past: too many requests per second, too
#: many token requests per minute, an expired token (the client issues a new one).
TRANSIENT_MSG_CDS = frozenset({"EGW00201", "EGW00133", "EGW00123"})

ADVICE = {
    "token": "Check KIS_APP_KEY / KIS_APP_SECRET (or the account's own key): KIS refused them. "
    "Renew the app key on the KIS Developers portal if it expired or was revoked.",
    "account": "Check the account number and product code in KIS_ACCOUNTS / KIS_ACCOUNTS_FILE "
    "and that the app key is registered for this account.",
    "withheld": "The answer was kept and left out of the tables. Run `make verify`, then send "
    "the quarantined answer (kis-redact makes it safe to share) with a bug report.",
    "landing": "The data root refused the answer (disk full, permissions, the object store): "
    "free space or fix access; the answer was kept and is landed by the next run.",
    "other": "Look at the failed run in the Dagster UI; retrying will not fix this by itself.",
}


@dataclass(frozen=True)
class AccountProblem:
    """What a run said of one account: a failure (msg_cd/msg1 when KIS answered) or a withheld
    answer."""

    account: str
    error: str
    msg_cd: str = ""
    msg1: str = ""
    withheld: bool = False
    #: None: not recorded (older runs); decided from msg_cd
    retryable: bool | None = None

    @property
    def permanent(self) -> bool:
        if self.withheld:
            return True
        if self.retryable is not None:
            return not self.retryable
        if self.msg_cd:
            return self.msg_cd not in TRANSIENT_MSG_CDS
        return False

    @property
    def said(self) -> str:
        """What KIS said (msg_cd msg1), else the error or why the answer was withheld."""
        return f"{self.msg_cd} {self.msg1}" if self.msg_cd else self.error

    @property
    def kind(self) -> str:
        if self.withheld:
            return "withheld"
        text = self.error.lower()
        if "token" in text or self.msg_cd.startswith("EGW001"):
            return "token"
        if self.msg_cd:
            return "account"
        if "landed" in text or "land " in text or "no space" in text or "refused" in text:
            return "landing"
        return "other"

    @classmethod
    def from_metadata(cls, account: str, what: Mapping[str, Any]) -> AccountProblem:
        """From a run's `failed_accounts` / `withheld_accounts` metadata entry."""
        if "withheld" in what:
            return cls(account, str(what["withheld"]), withheld=True)
        retryable = what.get("retryable")
        return cls(
            account,
            str(what.get("error", "")),
            msg_cd=str(what.get("msg_cd", "")),
            msg1=str(what.get("msg1", "")),
            retryable=retryable if isinstance(retryable, bool) else None,
        )

    @classmethod
    def from_error(cls, account: str, error: BaseException) -> AccountProblem:
        api = error if isinstance(error, KisApiError) else None
        return cls(
            account,
            str(error),
            msg_cd=api.msg_cd if api else "",
            msg1=api.msg1 if api else "",
            retryable=is_retryable(error),
        )


def _short(text: str, redact: Redactor) -> str:
    line = " ".join(redact(text).split())
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


# -- the messages ------------------------------------------------------------------------------


def permanent_failure(
    day: date, problem: AccountProblem, redact: Redactor, *, run_id: str = ""
) -> Message:
    """An account failed for a reason retrying cannot fix: at once, with what to do."""
    who = redact.account(problem.account)
    said = (
        f"KIS answered msg_cd={problem.msg_cd} msg1={_short(problem.msg1, redact)}"
        if problem.msg_cd
        else ("withheld: " if problem.withheld else "error: ") + _short(problem.error, redact)
    )
    what = "answer withheld" if problem.withheld else "capture failed"
    lines = [
        f"Account {who}, {day}: {what}; retrying will not fix this.",
        said,
        f"What to do: {ADVICE[problem.kind]}",
    ]
    if run_id:
        lines.append(f"Run: {run_id}")
    cause = f"permanent:{problem.account}:{problem.msg_cd or problem.kind}"
    return Message(day, cause, f"KIS balance: {who} {what} ({day})", "\n".join(lines))


def run_failure(
    day: date, step: str, description: str, redact: Redactor, *, run_id: str = ""
) -> Message:
    """A run failed as a whole (a damaged file, the data root, the settings), not one account."""
    first = _short(description.strip().splitlines()[0] if description.strip() else "", redact)
    lines = [
        f"{day}: the run's step {step} failed; retrying will not fix this.",
        f"error: {first}",
        f"What to do: {ADVICE['other']} `make verify` names damaged files, `make repair` "
        "rebuilds them from raw.",
    ]
    if run_id:
        lines.append(f"Run: {run_id}")
    return Message(
        day, f"run:{step}:{first[:80]}", f"KIS balance: a run failed ({day})", "\n".join(lines)
    )


@dataclass(frozen=True)
class MissingAccount:
    """An account still without the day's snapshot: the attempts that tried it, its last error."""

    account: str
    attempts: tuple[int, ...] = ()
    last_error: str = ""


def window_closing(
    day: date,
    closes: datetime,
    missing: Sequence[MissingAccount],
    redact: Redactor,
    *,
    closed: bool,
    next_window: datetime | None = None,
) -> Message:
    """Accounts still missing as the window is about to close, or once it has closed."""
    when = f"{closes:%H:%M} Asia/Seoul"
    head = (
        f"The capture window of {day} closed at {when} without {len(missing)} account(s); "
        "KIS answers only for now, so this day stays a gap for them (view missed_captures)."
        if closed
        else f"The capture window of {day} closes at {when}; {len(missing)} account(s) still "
        "have no snapshot. Act now if you can (fix the cause, or `make run`)."
    )
    lines = [head]
    for item in missing:
        attempts = (
            f"attempts {', '.join(map(str, item.attempts))}" if item.attempts else "no attempt yet"
        )
        error = f"; last error: {_short(item.last_error, redact)}" if item.last_error else ""
        lines.append(f"- {redact.account(item.account)}: {attempts}{error}")
    if closed and next_window is not None:
        lines.append(f"Next window: {next_window:%a %Y-%m-%d %H:%M} Asia/Seoul.")
    kind = "closed" if closed else "closing"
    title = (
        f"KIS balance: {day} missed for {len(missing)} account(s)"
        if closed
        else f"KIS balance: {len(missing)} account(s) missing, window closes {closes:%H:%M}"
    )
    return Message(day, f"window-{kind}", title, "\n".join(lines))


@dataclass(frozen=True)
class Digest:
    """The day in numbers (all from the warehouse's views)."""

    day: date
    #: (account_id, net_assets, change from its previous snapshot or None)
    accounts: Sequence[tuple[str, Decimal | None, Decimal | None]]
    net_assets: Decimal | None
    net_assets_change: Decimal | None
    change_note: str | None
    #: (asset_class, weight today %, change in percentage points), largest moves first
    moves: Sequence[tuple[str, Decimal, Decimal]]
    #: (capture_day, account_id) missed this month
    missed: Sequence[tuple[date, str]]
    report: str


def won(amount: Decimal | None, *, sign: bool = False) -> str:
    """Whole won with thousands separators (exact: rounded half-even from the Decimal)."""
    if amount is None:
        return "n/a"
    whole = amount.quantize(Decimal(1))
    return f"₩{whole:+,}" if sign else f"₩{whole:,}"


def digest(summary: Digest, redact: Redactor) -> Message:
    lines = [f"Net assets on {summary.day}: {won(summary.net_assets)}"]
    if summary.net_assets_change is not None:
        lines[0] += f" ({won(summary.net_assets_change, sign=True)})"
    if summary.change_note:
        lines.append(f"  ({summary.change_note})")
    for account, net, change in summary.accounts:
        change_text = f" ({won(change, sign=True)})" if change is not None else ""
        lines.append(f"- {redact.account(account)}: {won(net)}{change_text}")
    if summary.moves:
        lines.append("Largest allocation moves:")
        lines += [f"- {name}: {weight}% ({delta:+} pp)" for name, weight, delta in summary.moves]
    if summary.missed:
        missed = ", ".join(f"{d:%m-%d} {redact.account(a)}" for d, a in summary.missed)
        lines.append(f"Missed this month ({len(summary.missed)}): {missed}")
    else:
        lines.append("Missed this month: none")
    lines.append(f"Report: {redact(summary.report)}")
    return Message(
        summary.day,
        "digest",
        f"KIS balance {summary.day}: {won(summary.net_assets)}",
        "\n".join(lines),
    )


def missing_accounts(
    accounts: Iterable[str],
    attempts: Sequence[tuple[int, Sequence[str], Mapping[str, str]]],
) -> list[MissingAccount]:
    """Each missing account with the attempts that tried it and its newest error, from
    (attempt number, accounts tried, account → error) oldest first."""
    result = []
    for account in accounts:
        tried = tuple(n for n, names, _ in attempts if account in names)
        errors = [errors[account] for _, _, errors in attempts if account in errors]
        result.append(MissingAccount(account, tried, errors[-1] if errors else ""))
    return result
