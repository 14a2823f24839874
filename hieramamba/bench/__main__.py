from hieramamba.bench.cli import main

raise SystemExit(main())
