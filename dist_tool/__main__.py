from dist_tool.cli import run

run()
