"""The witness of one engine's end, started beside it by the local driver:
  python -m fleet.providers.local.witness FILE
with the read end of a pipe as its standard input, the engine holding the only write end. The kernel
closes that end when the engine exits, however it exits (SIGTERM, SIGKILL, a crash, the OOM killer),
so the read returns then: the witness writes the time to FILE (ISO 8601, UTC) and exits. That time is
the instance's end, where billing stops. Free of Django, like the engine.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    path = Path((sys.argv[1:] if argv is None else argv)[0])
    sys.stdin.buffer.read()  # nothing is ever written: this returns at end of file, when the engine is gone
    ended = datetime.now(tz=UTC).isoformat()
    partial = path.with_name(f"{path.name}.partial")
    partial.write_text(ended)
    partial.replace(path)  # readers see the whole time or nothing
    return 0


if __name__ == "__main__":
    sys.exit(main())
