"""``python -m pipeline.emulator``: see ``pipeline.emulator.cli`` (importing this module runs nothing)."""

from pipeline.emulator.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
