# The two commands: `make run` serves the default model, `make test` runs every test.
# Both install what they need (ONNX Runtime from npm, Debian's PyTorch, Go modules).
SHELL := /bin/bash
ORT_LIB := $(CURDIR)/.cache/onnxruntime/lib/libonnxruntime.so
PY := /usr/bin/python3
PY_PKGS := python3-torch python3-torchvision python3-onnx python3-numpy python3-pytest python3-pil python3-tqdm libopenblas0-pthread
GO_TEST_FLAGS ?=
export UNITER_ORT_LIBRARY := $(ORT_LIB)

.PHONY: run test test-go test-py build ort pydeps fixture bench fuzz clean

run: build ort
	./bin/uniter serve

build:
	go build -o bin/uniter ./cmd/uniter

ort: $(ORT_LIB)
$(ORT_LIB):
	bash scripts/install-ort.sh

# Debian's PyTorch and ONNX (no PyPI here); skipped when already importable.
pydeps:
	@$(PY) -c "import torch, torchvision, onnx, numpy, pytest, PIL, tqdm" 2>/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PY_PKGS) >/dev/null; }

test: build ort pydeps test-go test-py

test-go: ort
	go vet ./...
	go test -race -count=1 $(GO_TEST_FLAGS) ./...

test-py: build ort pydeps
	cd models && UNITER_BIN=$(CURDIR)/bin/uniter OMP_NUM_THREADS=1 $(PY) -m pytest -q tests

# Regenerates the committed fixture bundle and its PyTorch goldens.
fixture: pydeps
	$(PY) models/make_fixture.py --out testdata
	$(PY) models/make_detector_fixture.py --out testdata
	$(PY) models/make_ot_golden.py --out heads/testdata/ipot_golden.json

# Encoder throughput (pairs/s at batch 1, 8, 32): the Go pipeline next to PyTorch eager on this
# machine, as a table (also .cache/bench/report.md). The UNITER-base-sized random bundle is
# exported once into .cache/bench/ and reused. See scripts/bench.sh.
bench: build ort pydeps
	PY=$(PY) bash scripts/bench.sh

fuzz:
	go test ./textproc -run='^$$' -fuzz=FuzzEncode -fuzztime=60s
	go test ./detector -run='^$$' -fuzz=FuzzDecode -fuzztime=60s
	go test ./api -run='^$$' -fuzz=FuzzMatchBody -fuzztime=60s

clean:
	rm -rf bin .cache/bench
