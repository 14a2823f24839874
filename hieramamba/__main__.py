from hieramamba.cli import main

raise SystemExit(main())
