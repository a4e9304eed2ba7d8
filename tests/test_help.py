"""`maskforge --help` and every subcommand's help: a description per command, a line per argument."""

import argparse

from maskforge.cli import build_parser


def parsers(parser, name="maskforge"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from parsers(sub, f"{name} {sub_name}")


def test_every_command_and_argument_is_described():
    listed = dict(parsers(build_parser()))
    assert {"maskforge store diff", "maskforge sweep", "maskforge report", "maskforge dvc-yaml", "maskforge grid",
            "maskforge handover"} <= set(listed)
    for name, parser in listed.items():
        assert parser.description, f"{name}: no description"
        undescribed = [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._SubParsersAction)]
        assert not undescribed, f"{name}: arguments without help: {undescribed}"
    assert build_parser().format_help().rstrip().endswith("show this help message and exit")
    diff_help = listed["maskforge store diff"].format_help()
    assert "the reference store" in diff_help and "%%" not in diff_help
