"""`python -m agent.demo [options]`: the same as `python -m agent demo [options]`."""

import argparse
import sys

from agent.demo.cli import add_arguments, main_demo

parser = argparse.ArgumentParser(prog="python -m agent.demo", description="demo targets, an agent and traffic "
                                 "so that every dashboard shows data")
add_arguments(parser)
sys.exit(main_demo(parser.parse_args()))
