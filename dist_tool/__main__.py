from dist_tool.launch import run

run()
