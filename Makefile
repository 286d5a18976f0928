# The two commands a newcomer needs (see README): `make demo` and `make test`.
# Both create ./.venv from pyproject.toml on first use; nothing else is needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/chorus demo

test: $(BIN)/.installed
	bash tests/helia/setup.sh > /dev/null
	@# Browser tests drive Debian's chromium (Playwright never downloads a browser here).
	command -v chromium > /dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	$(BIN)/ruff check --no-cache .
	@# pytest exits 5 when it collected nothing: for chorus that is a broken suite.
	$(BIN)/python -m pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

bench: $(BIN)/.installed
	$(BIN)/python bench/import.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
