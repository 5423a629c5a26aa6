# `make predict` and `make test` each build .venv first when it is missing
# or older than the requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: predict test bench proto clean

predict: $(STAMP)
	$(PY) googlenet_predict.py

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/bench_convert.py
	$(PY) bench/bench_forward.py
	$(PY) bench/bench_train_cache.py
	$(PY) bench/bench_versus.py

# Chainer 7.8.1's sdist needs pkg_resources to build: install an old
# setuptools first, then build without isolation so the build sees it.
$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'setuptools<70' wheel
	$(PY) -m pip install -q --no-build-isolation -r requirements-dev.txt
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
