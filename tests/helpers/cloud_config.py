"""What cloud-init writes from a rendered user data: the gzip-compressed files (encoding gz+b64) decoded."""

from __future__ import annotations

import base64
import gzip

import yaml


def written(user_data: str) -> dict[str, str]:
    """path -> content of every ``write_files`` entry, decoded as cloud-init decodes it."""
    return {f["path"]: gzip.decompress(base64.b64decode(f["content"])).decode() if f.get("encoding") == "gz+b64"
            else str(f["content"]) for f in yaml.safe_load(user_data)["write_files"]}


def with_written(user_data: str) -> str:
    """The user data followed by every file it writes, decoded: a text to search for what reaches a PoP."""
    return user_data + "".join(written(user_data).values())
