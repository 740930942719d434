# The two commands of the README. Both work on a fresh Debian-like machine (Python 3.11, root).
.PHONY: demo test setup bench

PORT ?= 8050

demo:  ## install, build the synthetic demo city into var/demo, compute, serve the map
	bash .ci/setup-env.sh
	.venv/bin/rtcc-geo demo --store var/demo --port $(PORT)

test:  ## install everything the tests need (PostGIS, Chromium) and run the whole suite
	bash .ci/setup-env.sh --test
	RTCC_TEST_DATABASE_URL=$${RTCC_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/rtcc_test} \
	  .venv/bin/python -m pytest $(PYTEST_ARGS)

bench:  ## run the benchmarks (prints ratios against the reference implementations)
	bash .ci/setup-env.sh --test
	for b in bench/*.py; do echo "== $$b"; .venv/bin/python $$b || exit 1; done
