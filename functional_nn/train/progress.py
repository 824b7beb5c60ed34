"""Progress of a loop over epochs on stderr, for ``fit`` and the grid search: a
tqdm bar on a terminal, one plain line per epoch in a log file or a pipe
(:class:`EpochProgress`), and log lines that print above a running bar."""

from __future__ import annotations

import sys
import time


def progress_mode(enabled: bool | None, stream=None) -> str:
    """``"bar"``, ``"lines"`` or ``"off"``.

    Args:
      enabled: True: a bar; False: nothing; None: a bar when ``stream`` is a
        terminal, else one line per epoch.
      stream: where progress goes (default ``sys.stderr``).
    """
    if enabled is None:
        stream = sys.stderr if stream is None else stream
        isatty = getattr(stream, "isatty", None)
        return "bar" if isatty is not None and isatty() else "lines"
    return "bar" if enabled else "off"


def format_value(value) -> str:
    """A metric as printed: floats to 4 significant digits, anything else as is."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def epoch_line(label: str, epoch: int, total: int, values: dict, seconds: float) -> str:
    """``epochs 3/40: train_loss=0.2345 val_loss=0.2511 (0.12 s)``."""
    shown = " ".join(f"{k}={format_value(v)}" for k, v in values.items())
    return f"{label} {epoch}/{total}: {shown} ({seconds:.2f} s)".replace(":  (", ": (")


class EpochProgress:
    """Progress over ``total`` epochs on stderr.

    On a terminal (or ``enabled=True``) a tqdm bar whose postfix shows the
    latest metrics; otherwise (``enabled=None`` and stderr not a terminal: a
    log file, a pipe) one line per epoch with the metrics and the seconds the
    epoch took (:func:`epoch_line`); ``enabled=False``: silent. Used as a
    context manager; leaving it without an exception after fewer than
    ``total`` epochs (early stopping) completes the bar at the epochs run.

    Arguments:
      enabled: see :func:`progress_mode`.
      total: the epoch budget.
      initial: epochs already done (a resumed run).
      desc: the label (``epochs``, ``grid epochs``).
      postfix: metric name -> short label for the bar's postfix (default: all,
        under their own names).
    """

    def __init__(self, enabled: bool | None, total: int, *, initial: int = 0, desc: str = "epochs", postfix=None):
        self.mode, self.total, self.epoch, self.desc = progress_mode(enabled), total, initial, desc
        self.postfix = postfix
        self._bar = progress_bar(self.mode == "bar", total, initial=initial, desc=desc)
        self._last = time.perf_counter()

    def epoch_done(self, values: dict) -> None:
        """One more epoch finished, with its metrics ``values`` (name -> number)."""
        now, self.epoch = time.perf_counter(), self.epoch + 1
        seconds, self._last = now - self._last, now
        if self.mode == "lines":
            print(epoch_line(self.desc, self.epoch, self.total, values, seconds), file=sys.stderr, flush=True)
        elif self.mode == "bar":
            labels = self.postfix or {k: k for k in values}
            self._bar.set_postfix({label: format_value(values[k]) for k, label in labels.items() if k in values}, refresh=False)
            self._bar.update(1)

    def close(self, *, complete: bool = True) -> None:
        """Close the bar; ``complete``: an early end shows as 100 % of the epochs run."""
        if complete and self.mode == "bar" and self._bar.n < self._bar.total:
            self._bar.total = self._bar.n
            self._bar.refresh()
        self._bar.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.close(complete=kind is None)
        return False


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
