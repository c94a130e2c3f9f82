"""Object keys: the one validation every object store applies, so a key means the same everywhere.

Keys are ``/``-separated relative paths. The in-memory, local-directory and S3 stores all check
them here, so a key that works in unit tests (in memory) also works on disk and in S3. This
module sits below the stores: the S3 store imports it without importing the others.
"""

from __future__ import annotations

from ._exceptions import ObjectStoreError

__all__ = ["TMP_PREFIX", "validate_key", "validate_prefix"]

# Temporary files of in-flight local writes carry this prefix; listings skip them and keys may
# not use it, so a half-written object can never be mistaken for a real one.
TMP_PREFIX = ".sirius-tmp-"


def validate_key(key: str) -> str:
    """Check that ``key`` is a relative ``/``-separated object key and return it.

    Rejected: empty keys, a leading or doubled ``/``, ``.``/``..`` segments (they would escape
    the root of a local store), backslashes and NUL (ambiguous on disk), and the prefix reserved
    for temporary files.

    Raises:
        ObjectStoreError: the key is malformed.
    """
    if not isinstance(key, str) or not key:
        msg = f"object key must be a non-empty string, got {key!r}"
        raise ObjectStoreError(msg)
    if "\\" in key or "\x00" in key:
        msg = f"object key contains a backslash or NUL: {key!r}"
        raise ObjectStoreError(msg)
    for segment in key.split("/"):
        if segment in ("", ".", "..") or segment.startswith(TMP_PREFIX):
            msg = f"malformed object key {key!r}"
            raise ObjectStoreError(msg)
    return key


def validate_prefix(prefix: str) -> str:
    """Check a listing prefix (see ``validate_key``) and return it.

    Raises:
        ObjectStoreError: the prefix is malformed.
    """
    # A prefix may end with "/" or stop in the middle of a segment ("blobs/p"): only the complete
    # segments before the last "/" are checked, and those are what a local store turns into a path.
    if not isinstance(prefix, str) or prefix.startswith("/") or "\\" in prefix or "\x00" in prefix:
        msg = f"malformed key prefix {prefix!r}"
        raise ObjectStoreError(msg)
    for segment in prefix.split("/")[:-1]:
        if segment in ("", ".", ".."):
            msg = f"malformed key prefix {prefix!r}"
            raise ObjectStoreError(msg)
    return prefix
