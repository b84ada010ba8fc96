"""A local KIS server for CTRP6548R: the sandbox without a real account, and what tests run
against."""
