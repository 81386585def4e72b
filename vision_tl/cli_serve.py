"""``vision-tl serve MODEL.vtl``: the HTTP API and web page (``vision_tl.serve``).

``add_parser`` registers the subcommand (cli.py calls it), ``cmd_serve`` runs it. Nothing heavy is
imported until it runs; without the serve extra it says what to install.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_data import CLIError
from .serve.server import check_installed

__all__ = ["add_parser", "cmd_serve"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``vision-tl`` subcommands."""
    p = sub.add_parser(
        "serve", help="serve a .vtl model over HTTP: JSON API, web page, batching, metrics",
        description="Serve a .vtl model: POST /predict, /predict/batch and /cam, GET /health, /metrics, /docs, "
        "and a web page at /. Concurrent requests are batched into one forward pass.",
        epilog="example:\n  vision-tl serve pets.vtl --port 8000\n"
        "  curl -F file=@cat.jpg http://127.0.0.1:8000/predict",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="the .vtl file to serve")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="(default: %(default)s)")
    p.add_argument("--backend", choices=["auto", "torch", "onnxruntime"], default=None,
                   help="what runs the model (default: $VISION_TL_BACKEND, else auto)")
    p.add_argument("--precision", choices=["auto", "fp32", "int8"], default=None,
                   help="weights precision (default: what load_learner picks)")
    p.add_argument("--max-batch", type=int, default=32, help="most images in one forward pass (default: %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a request waits for others to batch with (default: %(default)s)")
    p.add_argument("--max-queue", type=int, default=256,
                   help="most images in the server at once; past it, 503 with Retry-After (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds a prediction may take (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes, each with its own copy of the model (default: %(default)s)")
    p.add_argument("--decode-threads", type=int, default=None,
                   help="threads decoding uploads (default: min(4, CPUs))")
    p.add_argument("--num-threads", type=int, default=None, help="threads of the forward pass (default: all)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body (default: %(default)s)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on /predict* and /cam (default: $VISION_TL_API_KEY)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser calls from this origin (repeatable; default: CORS off)")
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM or Ctrl-C; 0 on a clean stop."""
    try:
        check_installed()
    except ImportError as e:
        raise CLIError(str(e)) from None
    for flag in ("max_batch", "max_queue", "workers", "decode_threads", "num_threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise CLIError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    for flag in ("max_upload_mb", "timeout"):
        if not getattr(args, flag) > 0:
            raise CLIError(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    if args.max_wait_ms < 0:
        raise CLIError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    from vision_tl.serve.server import serve

    serve(args.model, host=args.host, port=args.port, workers=args.workers, backend=args.backend,
          precision=args.precision, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
          max_queue=args.max_queue, timeout_s=args.timeout, decode_threads=args.decode_threads,
          num_threads=args.num_threads, max_upload_mb=args.max_upload_mb, api_key=args.api_key,
          cors_origins=tuple(args.cors_origin))
    return 0
