# `make predict` and `make test` each build .venv first when it is missing,
# older than the requirements, or made by another interpreter than the one
# chosen here.
#
# The interpreter: PYTHON if given (PYTHON=python3.12 make test), else .venv's
# own when it is a supported one, else the first supported one of CANDIDATES
# (python3 first: a current distribution's own). Chainer 7.8.1 with numpy 2
# runs on Python 3.10 to 3.13 (tested: README.md); 3.14 is accepted untested,
# since every pin has its wheels (requirements.txt). Any other is refused
# before anything is created.
SUPPORTED := 3.10 3.11 3.12 3.13 3.14
UNTESTED := 3.14
CANDIDATES := python3 python3.13 python3.12 python3.11 python3.10 python
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: predict test bench proto clean

# Prints "3.11.7"; written so that Python 2 runs it too, to be refused.
VERSION_PY := import sys; print("%d.%d.%d" % sys.version_info[:3])
# $(call version_of,INTERPRETER): its version, or nothing when it does not run
# (as with pyenv's shim for a version that is installed but not selected).
version_of = $(shell $(1) -c '$(VERSION_PY)' 2>/dev/null)
is_supported = $(filter $(SUPPORTED),$(basename $(call version_of,$(1))))
empty :=
space := $(empty) $(empty)
comma := ,
# "python3 is 3.9.18, python is 2.7.18": the candidates that run, each with
# its version, for the refusal when none of them is supported.
found_versions = $(subst :, is ,$(subst $(space),$(comma)$(space),$(strip \
  $(foreach p,$(CANDIDATES),$(if $(call version_of,$(p)),$(p):$(call version_of,$(p)))))))
# The refusals' advice.
RANGE := Python 3.10 to 3.14
EXAMPLE := e.g. PYTHON=python3.13 make test

# Only the targets that use the interpreter look for one, so that `make
# clean` works whatever PYTHON says.
ifneq ($(filter-out clean,$(or $(MAKECMDGOALS),predict)),)
ifeq ($(origin PYTHON),undefined)
# .venv's interpreter is one only while it has pip: without, .venv is rebuilt.
PYTHON := $(firstword $(foreach p,$(if $(shell $(PY) -c 'import pip' 2>/dev/null && echo y),$(PY)) $(CANDIDATES),$(if $(call is_supported,$(p)),$(p))))
ifeq ($(PYTHON),)
$(error error: no supported Python found ($(or $(found_versions),none of $(CANDIDATES) runs)); install $(RANGE) and name it, $(EXAMPLE))
endif
endif
PYTHON_VERSION := $(call version_of,$(PYTHON))
ifeq ($(PYTHON_VERSION),)
$(error error: PYTHON=$(PYTHON) does not run ($(or $(shell $(PYTHON) -c '' 2>&1 >/dev/null | head -n 1),no output)); name an installed $(RANGE), $(EXAMPLE))
endif
ifeq ($(filter $(SUPPORTED),$(basename $(PYTHON_VERSION))),)
$(error error: PYTHON=$(PYTHON) is Python $(PYTHON_VERSION), which this project does not support; use $(RANGE), $(EXAMPLE))
endif
endif
# Said when .venv is created with an interpreter accepted but not tested.
UNTESTED_NOTE := $(if $(filter $(UNTESTED),$(basename $(PYTHON_VERSION))),$(comma) not tested with this project)

# The stamp's name holds the interpreter's version, so that choosing another
# one makes it out of date.
STAMP := $(VENV)/.installed-python$(PYTHON_VERSION)

predict test bench: $(STAMP)

predict:
	$(PY) googlenet_predict.py

test:
	$(PY) -m pytest -q

bench:
	$(PY) bench/bench_convert.py
	$(PY) bench/bench_forward.py
	$(PY) bench/bench_train_cache.py
	$(PY) bench/bench_cache_mpi.py
	$(PY) bench/bench_winograd.py
	$(PY) bench/bench_versus.py
	$(PY) bench/bench_report.py

# A .venv made by another interpreter, or without pip, is rebuilt; the stamp is written only
# once everything is installed, so a failed or interrupted install is redone
# by the next make. Chainer is built without build isolation so that its
# build sees requirements-build.txt's old setuptools (see there).
$(STAMP): requirements.txt requirements-dev.txt requirements-build.txt requirements-mpi.txt
	@if [ -e $(VENV) ] && [ "$$($(PY) -c '$(VERSION_PY)' 2>/dev/null)" != "$(PYTHON_VERSION)" ]; then \
	  echo "rebuilding $(VENV): it was not made by Python $(PYTHON_VERSION) ($(PYTHON))"; \
	  rm -rf $(VENV); \
	elif [ -e $(VENV) ] && ! $(PY) -c 'import pip' >/dev/null 2>&1; then \
	  echo "rebuilding $(VENV): it has no pip (its creation was interrupted?)"; \
	  rm -rf $(VENV); \
	fi
	rm -f $(VENV)/.installed*
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON) (Python $(PYTHON_VERSION)$(UNTESTED_NOTE))"; \
	  $(PYTHON) -m venv $(VENV); } || { \
	  rm -rf $(VENV); \
	  echo "error: $(PYTHON) -m venv $(VENV) failed (above); on Debian and Ubuntu, install python$(basename $(PYTHON_VERSION))-venv" >&2; \
	  exit 1; }
	@$(PY) -m pip install -q -r requirements-build.txt && \
	 $(PY) -m pip install -q --no-build-isolation -r requirements-dev.txt -r requirements-mpi.txt || { \
	  echo "error: installing the requirements into $(VENV) failed (above); run make again once the cause is fixed" >&2; \
	  exit 1; }
	touch $@

# Regenerates caffe_pb2.py from caffe.proto with a current protoc (from
# grpcio-tools, kept in its own environment: it needs a newer setuptools
# than Chainer tolerates). Raise protobuf in requirements.txt to at least
# the "Protobuf Python Version" written at the top of caffe_pb2.py.
proto:
	test -x .venv-protoc/bin/python || $(PYTHON) -m venv .venv-protoc
	.venv-protoc/bin/python -m pip install -q grpcio-tools
	.venv-protoc/bin/python -m grpc_tools.protoc -I. --python_out=. caffe.proto

clean:
	rm -rf $(VENV) .venv-protoc
