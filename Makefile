# The two commands of README.md: `make run` (everything, live) and `make test` (the whole suite).
.PHONY: run test check bench clean

run:
	@scripts/bootstrap.sh
	@.venv/bin/clickstream up

test:
	@scripts/bootstrap.sh
	@.venv/bin/pytest

check:
	@scripts/bootstrap.sh
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench:
	@scripts/bootstrap.sh
	@.venv/bin/python -c "import quixstreams, bytewax" 2>/dev/null || PYTHONWARNINGS="ignore:Editable installation" .venv/bin/pip install -q -e ".[dev,bench]"
	@.venv/bin/python -m bench

clean:
	rm -rf var
