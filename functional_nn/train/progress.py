"""Progress on the terminal: one tqdm bar helper for ``fit`` and the grid search,
and log lines that print above a running bar."""

from __future__ import annotations

import sys


def progress_bar(enabled: bool | None, total: int, *, initial: int = 0, desc: str = "epochs"):
    """A tqdm bar over ``total`` epochs on stderr (starting at ``initial``).

    Args:
      enabled: show it; ``None``: only when stderr is a terminal.
      total: the number of epochs.
      initial: epochs already done (a resumed run).
      desc: the bar's label.

    Returns:
      a ``tqdm`` object (disabled, so silent, when not ``enabled``).
    """
    from tqdm import tqdm

    enabled = sys.stderr.isatty() if enabled is None else enabled
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="epoch",
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def log_above_bar(message: str) -> None:
    """Print ``message`` to stderr without breaking a running progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)
