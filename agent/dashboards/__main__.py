"""`python -m agent.dashboards [--check] [--config FILE] [--out DIR]`: render grafana/dashboards/*.json."""

import argparse
import os
import sys

from agent.dashboards.render import add_arguments, main_render_dashboards, root_dir

parser = argparse.ArgumentParser(prog="python -m agent.dashboards", description=__doc__)
add_arguments(parser, os.environ.get("LOOM_AGENT_CONFIG", str(root_dir() / "config.yaml")))
sys.exit(main_render_dashboards(parser.parse_args()))
