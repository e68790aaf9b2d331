"""The `up|down|status` command line shared by `python -m stack.services` and `python -m stack.cluster`:
each command is a function of the settings returning lines to print; a StackError is one line on stderr
and exit code 1, a wrong argument the usage line and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable

from conf import Settings, get_settings

Command = Callable[[Settings], list[str]]


def run(prog: str, commands: dict[str, Command], argv: list[str]) -> int:
    from stack.services import StackError

    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: python -m {prog} {{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    try:
        for line in commands[argv[0]](get_settings()):
            print(line, flush=True)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
