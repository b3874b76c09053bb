# The two commands: `make run` serves the default model, `make test` runs every test.
# Both install what they need (ONNX Runtime from npm, Debian's PyTorch, Go modules).
SHELL := /bin/bash
ORT_LIB := $(CURDIR)/.cache/onnxruntime/lib/libonnxruntime.so
PY := /usr/bin/python3
PY_PKGS := python3-torch python3-torchvision python3-onnx python3-numpy python3-pytest python3-pil python3-tqdm python3-lmdb libopenblas0-pthread
GO_TEST_FLAGS ?=
export UNITER_ORT_LIBRARY := $(ORT_LIB)

.PHONY: task-models pgdeps run test test-go test-py lint build ort pydeps fixture bench bench-gallery bench-load image fuzz clean shapes-model web web-check browser-deps screenshot docs

# The default model and its fine-tuned Shapes World task models (bundles/shapes-tasks: /v1/vqa,
# /v1/entailment, /v1/nlvr2, /v1/refer), with a demo gallery (Shapes World test-100, indexed in
# the background on first start: gallery.demo) so that search works at once.
run: build ort
	UNITER_GALLERY_DEMO=$${UNITER_GALLERY_DEMO:-true} UNITER_MODELS=$${UNITER_MODELS-bundles/shapes-tasks} ./bin/uniter serve

build:
	go build -o bin/uniter ./cmd/uniter

# ORT_GPU=1 adds the CUDA provider beside the core library (installed or not).
ORT_CUDA_LIB := $(dir $(ORT_LIB))libonnxruntime_providers_cuda.so
ort: $(ORT_LIB) $(if $(filter 1,$(ORT_GPU)),$(ORT_CUDA_LIB))
$(ORT_LIB) $(ORT_CUDA_LIB):
	bash scripts/install-ort.sh

# Debian's PyTorch and ONNX (no PyPI here); skipped when already importable.
pydeps:
	@$(PY) -c "import torch, torchvision, onnx, numpy, pytest, PIL, tqdm, lmdb" 2>/dev/null || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(PY_PKGS) >/dev/null; }

test: build ort pydeps web-check browser-deps test-go test-py

# The browser test (tests/browser_test.go) fails rather than skips here when its tools are missing.
test-go: export UNITER_BROWSER_TEST := require
test-go: export UNITER_POSTGRES_TEST := require
test-go: export UNITER_INT8_TEST := require
test-go: export UNITER_BUTD_TEST := require
test-go: ort browser-deps pgdeps lint
	go test -race -count=1 $(GO_TEST_FLAGS) ./...

# go.mod and go.sum as `go mod tidy` leaves them; go vet and staticcheck (pinned in go.mod's
# tool block) report nothing.
# Debian's PostgreSQL for the gallery's PostgreSQL tests (they start a throw-away server of their own).
pgdeps:
	@bash scripts/install-postgres.sh

lint:
	@go mod tidy -diff || { echo "go.mod/go.sum are not tidy: run 'go mod tidy'"; exit 1; }
	go vet ./...
	go tool staticcheck ./...

test-py: build ort pydeps
	cd models && UNITER_BIN=$(CURDIR)/bin/uniter OMP_NUM_THREADS=1 $(PY) -m pytest -q

# Trains the default model end to end (Shapes World data, detector, features through the serving
# pipeline, pre-training, ITM fine-tuning, bundle, evaluation, the no-WRA ablation): hours on
# 2 cores; resumable. See scripts/train-shapes.sh and docs/model-card.md.
shapes-model: build ort pydeps
	PY=$(PY) bash scripts/train-shapes.sh

# Regenerates the committed fixture bundles (pre-training and one per fine-tuned class) and
# their PyTorch goldens.
fixture: pydeps
	PYTHONPATH=$(CURDIR)/models $(PY) -m uniter.fixtures.tiny_random --out testdata
	PYTHONPATH=$(CURDIR)/models $(PY) -m uniter.fixtures.tiny_tasks --out testdata
	PYTHONPATH=$(CURDIR)/models $(PY) -m uniter.fixtures.detector --out testdata
	PYTHONPATH=$(CURDIR)/models $(PY) -m uniter.fixtures.ot_golden --out heads/testdata/ipot_golden.json
	PYTHONPATH=$(CURDIR)/models $(PY) -m uniter.fixtures.min_box --out testdata

# Encoder throughput (pairs/s at batch 1, 8, 32): the Go pipeline next to PyTorch eager on this
# machine, as a table (also .cache/bench/report.md). The UNITER-base-sized random bundle is
# exported once into .cache/bench/ and reused. See scripts/bench.sh.
bench: build ort pydeps
	PY=$(PY) bash scripts/bench.sh

# Fine-tunes the default model for Shapes-QA, Ref, VE and NLVR2 (task data, features through the
# serving pipeline, uniter.finetune with each task's official head): bundles in
# .cache/tasks/TASK/bundle (SHIP=bundles/shapes-tasks copies them there); about 1.5 h on 2 cores; resumable. See scripts/train-tasks.sh.
task-models: build ort pydeps
	PY=$(PY) bash scripts/train-tasks.sh

# Closed-loop HTTP load at concurrency 4…256 with fresh and cached images; BASE=<rev> measures
# that revision side by side (docs/benchmarks.md).
bench-load: ort
	bash scripts/bench-load.sh

# Only the gallery part of `make bench`: exact vs two-stage search on Shapes test-1k with the
# trained bundle (BUNDLE=DIR, default bundles/shapes-uniter; CANDIDATES, QUERIES), then bbolt
# and PostgreSQL at 1k/10k/100k images and ingest with one and two indexers (SIZES).
bench-gallery: build ort pgdeps
	bash scripts/bench-gallery.sh

# The page's scripts: web/src/*.ts → web/dist/*.js with the pinned TypeScript (web/package-lock.json).
# web/dist is committed, so `go build` needs no Node.js; web-check fails when it is stale.
web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error

web: web/node_modules/.package-lock.json
	cd web && npx tsc -p tsconfig.json

web-check: web/node_modules/.package-lock.json
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && (cd web && npx tsc -p tsconfig.json --outDir "$$tmp") && \
	  if ! diff -r "$$tmp" web/dist >/dev/null; then diff -r "$$tmp" web/dist | head -20; \
	    echo "web/dist does not match web/src: run 'make web' and commit web/dist"; exit 1; fi

# Debian's Chromium and playwright-core (tests/browser/package-lock.json) for the browser test.
CHROMIUM ?= /usr/bin/chromium
export CHROMIUM
tests/browser/node_modules/.package-lock.json: tests/browser/package-lock.json
	cd tests/browser && npm ci --no-audit --no-fund --loglevel=error

browser-deps: tests/browser/node_modules/.package-lock.json
	@test -x $(CHROMIUM) || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The README's screenshot of the page on a Shapes World sample, with BUNDLE (default: the
# configured one); SAMPLE (0-3) and WORD pick the image and the selected word. See scripts/screenshot.sh.
screenshot: build ort browser-deps
	BUNDLE=$(BUNDLE) SAMPLE=$(SAMPLE) WORD=$(WORD) OUT=$(or $(OUT),docs/page.png) bash scripts/screenshot.sh

fuzz: ort
	go test ./textproc -run='^$$' -fuzz=FuzzEncode -fuzztime=60s -fuzzminimizetime=1s
	go test ./detector -run='^$$' -fuzz=FuzzDecode -fuzztime=60s -fuzzminimizetime=1s
	go test ./api -run='^$$' -fuzz=FuzzHandler -fuzztime=60s -fuzzminimizetime=1s
	go test ./gallery/featimport -run='^$$' -fuzz=FuzzParseNPY -fuzztime=60s -fuzzminimizetime=1s
	go test ./gallery/lmdb -run='^$$' -fuzz=FuzzOpen -fuzztime=60s -fuzzminimizetime=1s

# The container image (Dockerfile), built here with podman from base images made locally
# (scripts/base-images.sh: Debian by debootstrap, Go from the module proxy's toolchain module);
# its last stage starts the server inside the build and checks a /v1/match answer. Needs root;
# installs podman and debootstrap. Log: .cache/image/build.log.
image:
	bash scripts/image.sh

clean:
	rm -rf bin .cache/bench

# Rewrites the generated sections of README.md and docs/*.md (the figures, from the default
# bundle's reports and manifest; the bad-input table, from api/badinput_test.go; the example
# configuration docs/uniter.example.yaml, from the defaults); `make test`
# fails when they are stale. See tests/docs_test.go.
docs:
	go test ./tests -run '^TestGeneratedDocs$$' -count=1 -args -update-docs
	go test ./api -run '^TestBadInputs$$' -count=1 -args -update-docs
	go test ./cmd/uniter -run '^TestExampleConfig$$' -count=1 -args -update-example
