from trinity_beast.app.cli import main

raise SystemExit(main())
