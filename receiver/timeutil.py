"""UTC timestamps as the log writes them: now receiver.contract.timeutil."""

# re-exported until its importers move to receiver.contract
from receiver.contract.timeutil import format_utc, parse_utc, utc_now  # noqa: F401
