"""``python -m tadist_utils --profile quick``: run the numbered notebooks with papermill (``runners/reproduce.py``)."""
from .runners.reproduce import main

raise SystemExit(main())
