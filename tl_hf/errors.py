"""Errors a user can fix: a leaf module every other module may import."""

from __future__ import annotations


class UserError(ValueError):
    """A mistake in the user's input: the message names the problem and the fix."""
