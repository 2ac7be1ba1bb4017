"""One error family for everything a user can cause: messages that read well in a terminal and in a page.

A `LeakcoreError` carries a message in the user's words and, where an action fixes it, a hint per surface:
`cli` names the flag or command, `page` names the control. `for_terminal()` and `for_page()` join them, so
the core never speaks CLI flags inside a web form.
"""
from __future__ import annotations


def as_code(text, limit: int = 300) -> str:
    """Someone's text (a typed filter, a reviewer's name, a link's value) as a markdown code span, for a message or a
    page: never a link, an image or emphasis, whatever it holds."""
    return "`" + str(text).replace("`", "'").replace("\n", " ")[:limit] + "`"


def page_text(text) -> str:
    """A message for a page's markdown: outside its code spans, the characters that make a link, an image or an
    autolink are escaped, so that a name a user typed into it (`dataset name '![x](http://host/x.png)' must be ...`)
    is text, and never an image the browser fetches from another host. Code spans (`as_code`) are left as they are."""
    parts = str(text).split("`")
    for i in range(0, len(parts), 2):  # outside the code spans (an odd count of backticks leaves the rest outside)
        part = "".join("\\" + ch if ch in "[]<>" else ch for ch in parts[i])
        # a bare address is made a link by the page's markdown: broken by a zero-width space after its scheme
        parts[i] = part.replace("://", ":\u200b//").replace("www.", "www\u200b.")
    return "`".join(parts)


class LeakcoreError(Exception):
    """Base of every error leakcore raises for bad input, missing data or an unusable setup."""

    def __init__(self, message: str, *, cli: str | None = None, page: str | None = None):
        super().__init__(message)
        self.message = message
        self.cli_hint = cli
        self.page_hint = page

    def for_terminal(self) -> str:
        return self.message + (f"; {self.cli_hint}" if self.cli_hint else "")

    def for_page(self) -> str:
        return page_text(self.message + (f". {self.page_hint}" if self.page_hint else ""))


class InvalidInput(LeakcoreError, ValueError):
    """A value the user gave (a setting, a request, a file) that cannot be used as it is."""


class WorkspaceError(LeakcoreError, ValueError):
    """A workspace is missing, malformed, or from a newer version of the tool."""


class IngestError(LeakcoreError, ValueError):
    """A source cannot be ingested as asked (wrong format, unknown split role, bad manifest)."""


class UnknownSplit(LeakcoreError, ValueError):
    """A dataset/split id names no split of the workspace; the message lists the valid ones."""


class EncoderMismatch(LeakcoreError, ValueError):
    """Embeddings-only vectors were made by another encoder or have another dimension."""


class EncoderOptionError(LeakcoreError, TypeError):
    """An encoder was given an option it does not take; the message lists the ones it does."""


class WeightsUnavailable(LeakcoreError, RuntimeError):
    """The encoder's weights are not on this machine; the message says what was looked for and how to supply it."""


class ThresholdsUncalibrated(LeakcoreError, ValueError):
    """The encoder has no measured thresholds and the project set none: calibrate first."""


class PredictionsMismatch(LeakcoreError, ValueError):
    """A predictions file does not line up with the evaluation split."""


class ReviewStoreError(LeakcoreError, RuntimeError):
    """review.sqlite cannot be used by this version (newer schema)."""


class CalibrationStopped(LeakcoreError):
    """The curator stopped a calibration; nothing was stored."""


class UnknownName(LeakcoreError, ValueError):
    """A registry (checks, formats, leak sources) was asked for a name it does not hold."""


__all__ = [
    "CalibrationStopped", "EncoderMismatch", "EncoderOptionError", "IngestError", "InvalidInput", "LeakcoreError", "PredictionsMismatch",
    "ReviewStoreError", "ThresholdsUncalibrated", "UnknownName", "UnknownSplit", "WeightsUnavailable",
    "WorkspaceError",
]


class ClusterUnreachable(LeakcoreError, ConnectionError):
    """A Ray cluster that cannot be joined: nothing answers at its address, or it refused this client."""
