from audioflow.cli.main import main

raise SystemExit(main())
