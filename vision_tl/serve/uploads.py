"""Uploads: read a request body within a size limit, split a multipart form, check what was sent.

Nothing here writes to disk: the body is read in memory (bounded by ``--max-upload-mb``, refused from
its ``Content-Length`` before a byte is read, or as soon as a streamed body passes the limit) and a
multipart form is split in memory with python-multipart's low-level parser. Upload file names are
only ever echoed, escaped, in error messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

__all__ = ["Upload", "UploadError", "display_name", "parse_top_k", "read_body", "read_uploads"]

IMAGE_TYPES = ("image/", "application/octet-stream")  # what a raw body or a form part may declare
MAX_FILES = 64  # per /predict/batch request


class UploadError(Exception):
    """A client error: ``status`` (400, 413, 415, 422) and a one-line ``message`` for ``{"error": ...}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Upload:
    """One uploaded file: its field name, echoed file name, declared type and bytes."""

    field: str
    filename: str
    content_type: str
    data: bytes


def display_name(name: str | None, fallback: str = "the request body") -> str:
    """A file name fit to echo: control characters escaped (``repr``), quotes included, at most 80 chars."""
    if not name:
        return fallback
    text = repr(str(name))
    return text if len(text) <= 80 else text[:77] + "...'"


def parse_top_k(raw: str | None, n_classes: int) -> int:
    """``top_k`` from the query string: an integer >= 1 (default 5), capped at the number of classes."""
    if raw is None:
        return min(5, n_classes)
    try:
        k = int(raw)
    except ValueError:
        raise UploadError(422, f"top_k must be an integer >= 1, got {raw[:40]!r}") from None
    if k < 1:
        raise UploadError(422, f"top_k must be an integer >= 1, got {k}")
    return min(k, n_classes)


async def read_body(headers: dict[str, str], stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole body, at most ``limit`` bytes: a larger declared or streamed body is a 413 at once."""
    too_big = f"the upload is larger than the limit of {limit / 2**20:g} MB (--max-upload-mb)"
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise UploadError(400, f"Content-Length must be a number, got {declared[:40]!r}")
        if int(declared) > limit:
            raise UploadError(413, too_big)
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise UploadError(413, too_big)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_type(content_type: str, who: str) -> None:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype and not ctype.startswith(IMAGE_TYPES):
        raise UploadError(415, f"{who}: unsupported type {ctype[:60]!r} (send an image: image/* or "
                          "application/octet-stream)")


def _split_multipart(body: bytes, content_type: str) -> list[Upload]:
    """The parts of a multipart/form-data body, in order (python-multipart's parser, all in memory)."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "a multipart/form-data body needs a boundary in its Content-Type")
    parts: list[dict] = []
    header: dict[str, bytes] = {"field": b"", "value": b""}

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": []})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][header["field"].decode("latin-1").lower()] = header["value"].decode("utf-8", "replace")
        header["field"], header["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"].append(data[start:end])

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end, "on_part_data": on_part_data}
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except FormParserError as e:
        raise UploadError(400, f"the multipart form is malformed ({e})") from None
    out = []
    for part in parts:
        _, disp = parse_options_header(part["headers"].get("content-disposition", ""))
        out.append(Upload(field=disp.get(b"name", b"").decode("utf-8", "replace"),
                          filename=disp.get(b"filename", b"").decode("utf-8", "replace"),
                          content_type=part["headers"].get("content-type", ""), data=b"".join(part["data"])))
    return out


def read_uploads(body: bytes, content_type: str, field: str, many: bool = False) -> list[Upload]:
    """The uploaded images of a request: the parts named ``field`` of a multipart form, or the raw body.

    A raw body (``image/*`` or ``application/octet-stream``) is one upload. Raises ``UploadError``:
    415 for another type, 422 when the form has no part named ``field`` (or more than one for
    ``/predict``), 413 past ``MAX_FILES`` files.
    """
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        parts = _split_multipart(body, content_type)
        files = [p for p in parts if p.field == field]
        if not files:
            got = ", ".join(sorted({repr(p.field) for p in parts})) or "no fields"
            raise UploadError(422, f"the form has no field {field!r} (got {got[:120]})")
        if not many and len(files) > 1:
            raise UploadError(422, f"send one image in field {field!r} (got {len(files)}); "
                              "POST /predict/batch takes several 'files'")
        if len(files) > MAX_FILES:
            raise UploadError(413, f"at most {MAX_FILES} files per request, got {len(files)}")
        for f in files if not many else []:
            _check_type(f.content_type, display_name(f.filename))
        return files
    if many:
        raise UploadError(415, f"POST /predict/batch takes multipart/form-data with several 'files', got "
                          f"{ctype[:60] or 'no Content-Type'!r}")
    if not ctype:
        raise UploadError(415, "the request has no Content-Type: send multipart/form-data (field 'file') "
                          "or the image bytes as image/* or application/octet-stream")
    _check_type(ctype, "the request body")
    return [Upload(field="", filename="", content_type=ctype, data=body)]


def check_part(upload: Upload) -> None:
    """Per-file checks of a batch part (a bad part becomes its own error entry): type and emptiness."""
    _check_type(upload.content_type, display_name(upload.filename))
    check_not_empty(upload)


def check_not_empty(upload: Upload) -> None:
    if not upload.data:
        raise UploadError(400, f"{display_name(upload.filename)}: the upload is empty (0 bytes)")
