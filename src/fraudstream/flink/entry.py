"""The script a Flink distribution's ``flink run -py`` submits: `fraudstream flink run` args.

    ENTRY=$(python -c 'import fraudstream.flink.entry as e; print(e.__file__)')
    flink run -m jobmanager:8081 -py "$ENTRY" -- --input /data/tx.jsonl \\
        --decisions /data/out/decisions --checkpoint-dir s3://bucket/chk

The cluster's Python workers need fraudstream installed (``pip install 'fraudstream[flink]'``
on every TaskManager, or a packed venv shipped with ``-pyarch``).
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Runs `fraudstream flink run` with ``argv`` (default: this script's arguments)."""
    from fraudstream.flink.cli import flink_app

    flink_app(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
