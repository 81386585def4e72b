"""Read an offline W&B run's ``.wandb`` file: the LevelDB-log framing, each record parsed by wandb's own protobuf.

wandb >= 0.19 moved its Python reader (``wandb.sdk.internal.datastore``) into the Go core; the framing
is small (a 7-byte file header, 32 KiB blocks, 7-byte record headers), so the test reads it here.
"""

from __future__ import annotations

import struct
from pathlib import Path


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B", f"{path} is not a W&B run file"
    pos, block, buf, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        chunk, pos = data[pos:pos + n], pos + n
        buf = chunk if kind in (1, 2) else buf + chunk  # FULL/FIRST start a record, MIDDLE/LAST continue it
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def history(records: list) -> list[dict]:
    """Every ``run.log`` call as ``{key: value}`` (values parsed from their JSON)."""
    import json

    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
    return rows


def config(records: list) -> dict:
    import json

    out = {}
    for r in records:
        if r.WhichOneof("record_type") == "config":
            for i in r.config.update:
                out[i.key or "/".join(i.nested_key)] = json.loads(i.value_json)
    return out
