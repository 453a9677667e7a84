# policyshare: the two commands of the README, and their parts.
#   make quickstart   install, then run the main job (the sharing experiment's quickstart preset)
#   make test         install, then lint, type-check, check the import layers and run the fast tests
#   make zoo          train the zoo (5 MinAtar games x 3 seeds, 5M env steps each), then add it to policyshare/zoo
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin

.PHONY: install quickstart test test-slow lint typecheck imports zoo clean

# torch==2.13.0 first: the CPU wheel that lies on disk; pyproject's bound (<2.14) then keeps
# pip from pulling a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

quickstart: install
	$(BIN)/policyshare run configs/quickstart.yaml --jobs 2

lint: install
	$(BIN)/ruff check policyshare tests benchmarks

typecheck: install
	$(BIN)/mypy

# The layers of pyproject.toml's [tool.importlinter]: an import that climbs back up fails.
imports: install
	$(BIN)/lint-imports

# Two pytest workers (pytest-xdist), one per core; a test file stays on one worker (its
# module-scoped fixtures are built once). Every test writes under its own tmp_path.
test: lint typecheck imports
	$(BIN)/pytest -q -n 2 --dist loadfile

# The zoo as it is trained (issue 11): each game x seed is one `policyshare train` run of 5M env steps in
# runs/zoo/<G>__s<S>, evaluated every 250k steps on 20 episodes and at the end on 100; two runs at a
# time (one per core), each logging to runs/zoo/<G>__s<S>.log. Rerunning resumes an unfinished run
# (--resume where its folder exists) and skips a finished one; once every run has finished, all are
# added to policyshare/zoo as <env>__s<seed>.zip + .json (refused for runs trained from a tree with
# uncommitted changes: commit first). `make zoo ZOO_GAMES=Breakout` does one game's seeds.
ZOO_GAMES ?= Breakout SpaceInvaders Asterix Freeway Seaquest
ZOO_SEEDS ?= 0 1 2
ZOO_JOBS ?= 2

zoo: install
	mkdir -p runs/zoo
	for G in $(ZOO_GAMES); do for S in $(ZOO_SEEDS); do echo $$G $$S; done; done | \
	xargs -P $(ZOO_JOBS) -L 1 sh -c 'G=$$0; S=$$1; D=runs/zoo/$${G}__s$$S; \
	  if [ -f $$D/metrics.json ]; then echo "$$D: finished"; exit 0; fi; \
	  R=; if [ -d $$D ]; then R=--resume; fi; \
	  echo "$$D: training $$R (log: $$D.log)"; \
	  $(BIN)/policyshare train --env MinAtar/$$G-v1 --seed $$S --timesteps 5000000 --run-dir $$D \
	    --set eval.freq=250000 --set eval.episodes=20 --set eval.final_episodes=100 \
	    --set checkpoint_freq=500000 $$R >>$$D.log 2>&1 || { echo "$$D: failed, see $$D.log"; exit 1; }; \
	  echo "$$D: finished"'
	$(BIN)/policyshare zoo add $(foreach G,$(ZOO_GAMES),$(foreach S,$(ZOO_SEEDS),runs/zoo/$(G)__s$(S)))

test-slow: install
	$(BIN)/pytest -q -m slow

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache .grimp_cache
