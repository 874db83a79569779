from dist_tool.cli import main

raise SystemExit(main())
