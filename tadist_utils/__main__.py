"""``python -m tadist_utils``: the notebooks with papermill, or their training alone (``runners/reproduce.py``)."""
from .runners.reproduce import main

raise SystemExit(main())
