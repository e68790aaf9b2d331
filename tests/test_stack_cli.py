"""The one `up|down|status` command line of `python -m stack.services` and `python -m stack.cluster`."""
import subprocess
import sys
from pathlib import Path

from stack import cli
from stack.services import StackError

ROOT = Path(__file__).resolve().parent.parent


def test_lines_are_printed_and_a_stack_error_is_one_line_and_exit_1(capsys):
    def ok(settings):
        return ["first", "second"]

    def broken(settings):
        raise StackError("kafka: port 127.0.0.1:9092 is taken")

    commands = {"up": ok, "down": broken}
    assert cli.run("stack.x", commands, ["up"]) == 0
    assert capsys.readouterr().out == "first\nsecond\n"
    assert cli.run("stack.x", commands, ["down"]) == 1
    err = capsys.readouterr().err
    assert err == "error: kafka: port 127.0.0.1:9092 is taken\n"


def test_a_wrong_command_prints_the_usage_and_exits_2(capsys):
    assert cli.run("stack.x", {"up": list, "down": list}, ["sideways"]) == 2
    assert capsys.readouterr().err == "usage: python -m stack.x {up|down}\n"
    assert cli.run("stack.x", {"up": list}, []) == 2


def test_both_modules_use_it():
    for prog in ("stack.services", "stack.cluster"):
        proc = subprocess.run([sys.executable, "-m", prog, "bogus"], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 2 and proc.stderr == f"usage: python -m {prog} {{up|down|status}}\n", proc.stderr
