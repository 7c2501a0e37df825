# Conveniences; the README's commands work without make.
.PHONY: demo test bench bench-quick clean
demo:
	python3 examples/stockquotes/demo.py
test:
	python3 tests/run.py
bench:
	python3 bench/run.py
bench-quick:
	python3 bench/run.py --quick
clean:
	rm -rf .venv .venv-* build *.egg-info .pytest_cache .hypothesis
