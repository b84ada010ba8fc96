"""Redacted copies of landed balance files (kis-balance-raw/1) and of quarantined answers
(kis-balance-quarantine/1) to attach to a bug report.

Account numbers are masked everywhere; with an `amounts_seed` every amount is replaced by a
random value that keeps zeros, signs, decimals and which values add up to which. `kis-redact`
(`main`) is the command; the rest is plain functions.

masking.py masks identifiers and refuses secrets; amounts.py and planner.py replace the
amounts (keeping which values add up to which, see planner.py); copies.py makes the copy of a
file; cli.py is the command.
"""

from pipelines.commands.redact.amounts import Amount
from pipelines.commands.redact.cli import main
from pipelines.commands.redact.copies import Redacted, redact, redact_quarantined
from pipelines.commands.redact.masking import REDACTED, default_key, default_key_path, fake_cano
from pipelines.commands.redact.planner import AmountPlan, plan_amounts
from pipelines.errors import RedactionError

__all__ = [
    "REDACTED",
    "Amount",
    "AmountPlan",
    "Redacted",
    "RedactionError",
    "default_key",
    "default_key_path",
    "fake_cano",
    "main",
    "plan_amounts",
    "redact",
    "redact_quarantined",
]
