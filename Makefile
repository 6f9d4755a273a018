# `make test`: the README's test command (and what .ci/run calls).
.PHONY: test unit notebooks
test: unit notebooks

# unit, integration and real-image tests (pytest.ini: testpaths = tests)
# -n auto: one worker per core (2 on CI); each worker's torch uses one thread (conftest.py)
unit:
	python -m pytest -n auto

# every notebook re-run on the smoke profile under nbval, its outputs compared with the committed ones (the reference
# run's) except in cells tagged nbval-ignore-output (accuracies, timings, figures): papermill-prepared copies in an
# ignored folder
notebooks:
	rm -rf results/_nbval
	python tools/nbval_copies.py results/_nbval
	python -m pytest --nbval -p no:cacheprovider results/_nbval/notebooks  # one process, in order: 05 and 06 read what 01-04 wrote
