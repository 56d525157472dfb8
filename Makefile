# Thin wrapper over scripts/run.sh (which needs no make on a fresh machine).
.PHONY: setup demo test bench
setup:
	bash scripts/run.sh setup
demo:
	bash scripts/run.sh demo
test:
	bash scripts/run.sh test
bench: setup
	.venv/bin/python benchmarks/run.py
