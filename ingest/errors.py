"""Why a document could not be ingested.

``DocumentRejected``: the file itself is the problem (encrypted, corrupt, too big, no
text); retrying cannot help, the document fails with the message. ``TransientError``:
something around it failed (database, index); the task is retried with backoff.
"""

from __future__ import annotations


class DocumentRejected(Exception):
    """A per-document failure with a message a person can act on."""


class TransientError(Exception):
    """A failure worth retrying: the same document may succeed on the next attempt."""
