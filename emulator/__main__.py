"""``python -m emulator``: see ``emulator.cli`` (importing this module runs nothing)."""

from emulator.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
