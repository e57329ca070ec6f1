"""The secret that keys an erased lead's tombstones, kept in a file beside the database.

Not inside it: a copy of the database alone (a backup, a support dump) cannot be used to
test phone numbers against the tombstones. Back the key file up with the database;
without it, old tombstones stop matching (erased leads could come back if an old message
is replayed).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from core.errors import StoreUnavailable

KEY_BYTES = 32


def erasure_key_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".erasure-key")


def load_erasure_key(path: Path) -> bytes:
    """The tombstone key, created on first use (0600). Two processes opening a new
    database at once agree on one key: each writes its own candidate, and only the first
    hard link to the final name wins."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    candidate = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(KEY_BYTES) + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(candidate, path)
        except FileExistsError:
            pass  # another process won: use its key
        except OSError:  # a filesystem without hard links: exclusive create instead
            try:
                fd2 = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd2, "w", encoding="ascii") as out:
                    out.write(candidate.read_text(encoding="ascii"))
    finally:
        candidate.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except ValueError:  # not hex, or not even text (UnicodeDecodeError is a ValueError)
        key = b""
    if len(key) < KEY_BYTES:
        # Never replaced silently: a new key would make every tombstone stop matching.
        raise StoreUnavailable(f"the erasure key file {path.name} is damaged; restore it from a backup")
    return key
