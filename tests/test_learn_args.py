"""`egress-tui learn CONTAINER [options] -- CMD...`, as the README documents it."""

from __future__ import annotations

import pytest

from egress_tui.cli import parse_subcommand


@pytest.mark.parametrize("argv, container, cmd, timeout", [
    (["learn", "box", "--", "true"], "box", ["true"], 120.0),
    (["learn", "box", "--timeout", "5", "-e", "A=b", "--", "sh", "-c", "echo --x -e y"], "box",
     ["sh", "-c", "echo --x -e y"], 5.0),
    (["learn", "box", "--", "claude", "--timeout", "3", "--", "x"], "box", ["claude", "--timeout", "3", "--", "x"],
     120.0),                                                        # the command's own options stay its own
    (["learn", "box", "true"], "box", ["true"], 120.0),             # without --, as before
    (["learn", "box", "--quiet"], "box", [], 120.0),                # no command: the default runs
    (["learn", "box", "--"], "box", [], 120.0),
])
def test_learn_takes_the_command_after_the_double_dash(argv, container, cmd, timeout):
    args = parse_subcommand(argv)
    assert (args.container, args.cmd, args.timeout) == (container, cmd, timeout)


def test_options_after_the_double_dash_are_not_learns(capsys):
    args = parse_subcommand(["learn", "box", "-e", "K=v", "--", "env", "-e", "Z=1"])
    assert args.env == ["K=v"] and args.cmd == ["env", "-e", "Z=1"]


def test_a_command_on_both_sides_of_the_double_dash_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        parse_subcommand(["learn", "box", "true", "--", "false"])
    assert e.value.code == 2
    assert "give the command after -- only" in capsys.readouterr().err
