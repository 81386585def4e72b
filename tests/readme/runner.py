"""Run the README's Python blocks in order, in one process, as a reader pasting them would.

``python runner.py BLOCKS.json RESULTS.json``: BLOCKS is a list of ``{"id", "code", "line", "script"}``.
Blocks share one namespace (later sections use ``dls``, ``learn``, ``model_file`` from earlier ones);
a block that starts with ``# name.py`` is a script: it is written to ``name.py`` and runs in a fresh
namespace as ``__main__``. RESULTS maps each id to None (ran) or the traceback, written after every block.
"""

import json
import sys
import time
import traceback
from pathlib import Path

blocks = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
results: dict = {}
shared: dict = {"__name__": "__main__"}
for block in blocks:
    start = time.perf_counter()
    try:
        code = compile(block["code"], f"README.md (block at line {block['line']})", "exec")
        if block["script"]:
            Path(block["script"]).write_text(block["code"])
            exec(code, {"__name__": "__main__", "__file__": block["script"]})
        else:
            exec(code, shared)
        results[block["id"]] = None
    except BaseException:  # noqa: BLE001 - report every block, keep going
        results[block["id"]] = traceback.format_exc()
    out.write_text(json.dumps(results))
    status = "ok" if results[block["id"]] is None else "FAILED"
    print(f"README block {block['id']}: {status} after {time.perf_counter() - start:.1f} s", flush=True)
