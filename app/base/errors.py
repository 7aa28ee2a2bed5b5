"""The one base class for errors whose message is meant for the user (Qt-free).

Every error Loupe raises to say what is wrong with an input, a model, a card, a setting or a
fitting derives from :class:`LoupeError`: its ``str()`` is a complete sentence for the window's
banner or the CLI's ``loupe: ...`` line. The window and the CLI catch ``LoupeError`` and show its
message as it is; anything else is unexpected, so they show its type and message and log the
traceback. Nothing routes an error by its message text or its class name.

Subclasses keep the builtin base they had before (``ValueError``, ``RuntimeError``) where callers
catch that, e.g. ``class CardError(LoupeError, ValueError)``.
"""

from __future__ import annotations


class LoupeError(Exception):
    """An error whose message is meant for the user, shown as it is (no type name, no traceback)."""


def user_message(e: BaseException) -> str:
    """What the user reads for ``e``: a LoupeError's own message; for anything else (unexpected)
    its type and message, so that a bare ``KeyError: 'x'`` still says what it was."""
    if isinstance(e, LoupeError):
        return str(e)
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
