"""`python -m hieramamba.data.synth ...` = `hieramamba data synth ...`."""

from hieramamba.data.synth import main

raise SystemExit(main())
