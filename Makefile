# sli2vol build. Native parts: gotorch's cgotorch (compiled from the Go module cache, never
# copied into the repo) and our torchx shim, both as shared libraries under build/lib. The Go
# binary links only those two (--as-needed drops libtorch's own sonames from its NEEDED list),
# so switching libtorch means rebuilding the two .so files, not the Go binary.
#
#   make deps                 install what is missing (Debian: apt), or nothing with LIBTORCH=
#   make build                bin/sli2vol
#   make test                 go vet + go test ./... (installs deps first)
#   make demo                 the main job on synthetic data
#   make web                  rebuild the page of `sli2vol serve` (npm; the bundle is committed)
#   make LIBTORCH=/path ...   use another libtorch (include/ and lib/ under /path)

SHELL := /bin/bash
GO ?= go
CXX ?= g++
LIBTORCH ?=
JOBS ?= $(shell nproc)

GOTORCH_MOD := github.com/wangkuiyi/gotorch
GOTORCH_VERSION := v0.0.0-20201028015551-9afed2f3ad7b

BUILD := build
CFN_STEP := $(BUILD)/bench/cfn_step
LIBDIR := $(BUILD)/lib
ABS_LIBDIR := $(abspath $(LIBDIR))

TORCH_CXXFLAGS := $(shell third_party/libtorch-flags.sh --cxxflags $(LIBTORCH))
TORCH_LDFLAGS := $(shell third_party/libtorch-flags.sh --ldflags $(LIBTORCH))
CXXSTD ?= -std=c++17
# third_party/compat: declarations a libtorch's headers need but Debian's package lacks; last
# in the search order, so a libtorch that ships them (a PyTorch wheel) uses its own.
# EXTRA_CXXFLAGS: e.g. -DTX_NO_DIST builds the shim without torch.distributed (device-run.sh
# retries with it when a libtorch's c10d headers do not compile).
EXTRA_CXXFLAGS ?=
CXXFLAGS_ALL := $(CXXSTD) -fPIC -O2 -Wno-deprecated-declarations $(TORCH_CXXFLAGS) -idirafter third_party/compat $(EXTRA_CXXFLAGS)

# The Go side: find our two libraries at link time and at run time (absolute path for tests
# and this checkout, $ORIGIN-relative for a bin/ moved together with its lib/).
CGO_LDFLAGS_SLI2VOL := -L$(ABS_LIBDIR) -L$(shell third_party/libtorch-flags.sh --libdir $(LIBTORCH)) \
  -Wl,-rpath-link,$(shell third_party/libtorch-flags.sh --libdir $(LIBTORCH)) \
  -Wl,--as-needed -Wl,-rpath,$(ABS_LIBDIR) -Wl,-rpath,$$ORIGIN/../build/lib -Wl,-rpath,$$ORIGIN/../lib
GOENV := CGO_ENABLED=1 CGO_LDFLAGS='$(CGO_LDFLAGS_SLI2VOL)'

VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)
GOLDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# --- gotorch's C++ part, from the module cache -------------------------------------------
GOMODCACHE := $(shell $(GO) env GOMODCACHE 2>/dev/null)
GOTORCH_DIR := $(GOMODCACHE)/$(GOTORCH_MOD)@$(GOTORCH_VERSION)
CGT_SRCDIR := $(BUILD)/cgotorch-src/cgotorch
CGT_NAMES := cuda device functional init memory optim pickle tensor torch
CGT_OBJS := $(CGT_NAMES:%=$(BUILD)/obj/cgotorch/%.o)
CGT_HDRS := $(CGT_NAMES:%=$(CGT_SRCDIR)/%.h) $(CGT_SRCDIR)/torchdef.h $(CGT_SRCDIR)/cgotorch.h

# --- our shim ----------------------------------------------------------------------------
TX_SRCS := $(wildcard torchx/csrc/*.cc)
TX_OBJS := $(TX_SRCS:torchx/csrc/%.cc=$(BUILD)/obj/torchx/%.o)

.PHONY: all deps native build test vet demo clean print-env testbin fuzz gpu-bundle test-bundle bench web results adapt-curve adapt-mix
all: build

deps:
	@third_party/deps.sh "$(LIBTORCH)"

# Copied once; a machine without Go (the GPU bundle) brings build/cgotorch-src along instead.
$(CGT_SRCDIR)/%:
	@mkdir -p $(CGT_SRCDIR)
	@test -f $(GOTORCH_DIR)/cgotorch/$* || $(GO) mod download $(GOTORCH_MOD)
	cp $(GOTORCH_DIR)/cgotorch/$* $@ && chmod u+w $@

$(BUILD)/obj/cgotorch/%.o: $(CGT_SRCDIR)/%.cc $(CGT_HDRS)
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS_ALL) -O -I $(BUILD)/cgotorch-src -c $< -o $@

# Linked beside the target and renamed over it: a process (a test, a helper's build) that has
# the old library mapped keeps it intact.
$(LIBDIR)/libcgotorch.so: $(CGT_OBJS)
	@mkdir -p $(@D)
	$(CXX) -shared -o $@.tmp $^ $(TORCH_LDFLAGS) && mv -f $@.tmp $@

$(BUILD)/obj/torchx/%.o: torchx/csrc/%.cc
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS_ALL) -MMD -MP -c $< -o $@

$(LIBDIR)/libtorchx.so: $(TX_OBJS)
	@mkdir -p $(@D)
	$(CXX) -shared -o $@.tmp $^ $(TORCH_LDFLAGS) && mv -f $@.tmp $@

-include $(TX_OBJS:.o=.d)

native: $(LIBDIR)/libcgotorch.so $(LIBDIR)/libtorchx.so

build:
	@$(MAKE) --no-print-directory -j$(JOBS) native
	$(GOENV) $(GO) build -ldflags '$(GOLDFLAGS)' -o bin/sli2vol ./cmd/sli2vol

vet: build
	$(GOENV) $(GO) vet ./...
	@for f in bench/*.sh third_party/gpu/*.sh; do bash -n "$$f" || exit 1; done

test: deps build vet $(CFN_STEP)
	@$(MAKE) --no-print-directory test-bundle
	$(GOENV) $(GO) test -count=1 -timeout 20m ./...

# The main job, end to end on synthetic phantoms with the two-core config: phantoms →
# Sli2Vol training → pseudo-labels → Sli2Vol+ training → evaluation against baselines.
DEMO := build/demo
DEMO_CFG := configs/cpu-small.yaml
demo: deps build
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	bin/sli2vol version
	bin/sli2vol phantom --out $(DEMO)/train --cases 4 --seed 1
	bin/sli2vol phantom --out $(DEMO)/test --cases 2 --seed 2
	bin/sli2vol pipeline --config $(DEMO_CFG) --data $(DEMO)/train --test $(DEMO)/test --out $(DEMO)/work
	bin/sli2vol train --config $(DEMO_CFG) --mode sli2vol+ --data $(DEMO)/train --pseudo $(DEMO)/work/pseudo --out $(DEMO)/work/sli2vol+raw-pl
	bin/sli2vol train-fsss --config $(DEMO_CFG) --data $(DEMO)/test --out $(DEMO)/fsss
	bin/sli2vol evaluate --config $(DEMO_CFG) --model $(DEMO)/work/sli2vol --model $(DEMO)/work/sli2vol+raw-pl \
	  --model $(DEMO)/work/sli2vol+ --fsss $(DEMO)/fsss --data $(DEMO)/test --out $(DEMO)/report

# docs/results.md, the quality table on the shared real CT/MRI (../shared/data/real): per fold,
# the pipeline, Sli2Vol+ on raw PLs, and an evaluation of every model plain, adapted, verified
# and both, merged in by `evaluate --results`. Two cores: about two hours; steps whose output is
# complete are skipped. RESULTS_FOLDS: a subset (ct-abdomen ct-aorta ct-pulmonary brats).
RESULTS_FOLDS ?=
results: deps build
	bench/results.sh all $(RESULTS_FOLDS)

# docs/results/adapt-curve.md: mean Dice and seconds per case against test-time adaptation
# steps and batch-norm handling, on the runs `make results` trained (bench/adapt-curve.sh;
# CURVE_STEPS, CURVE_LRS, CURVE_NORM choose the points; brats-flair-all: seven FLAIR cases).
adapt-curve: deps build
	bench/adapt-curve.sh $(RESULTS_FOLDS)

# docs/results/adapt-mix.md: the same curve at 25 steps, --adapt-norm auto, against the
# adapted weights' share --adapt-mix (1, 0.5, 0.3), with the plain networks beside them (the
# table holds every point evaluated in the work folder's curves).
MIX_FOLDS = $(or $(RESULTS_FOLDS),ct-abdomen ct-aorta ct-pulmonary brats brats-flair-all)
adapt-mix: deps build
	CURVE_OUT=docs/results/adapt-mix.md CURVE_STEPS=0 CURVE_NORM=batch bench/adapt-curve.sh $(MIX_FOLDS)
	CURVE_OUT=docs/results/adapt-mix.md CURVE_STEPS=25 CURVE_NORM=auto CURVE_MIX="1 0.5 0.3" \
		bench/adapt-curve.sh $(MIX_FOLDS)

# Go vs the PyTorch reference, same model, weights, batch and threads (bench/runner.go), and
# the CFN step in plain C++ (bench/cpp, the ceiling of any binding); writes BENCHMARKS.md.
# BENCH_FLAGS: --device cuda, --rounds N, --threads T, --paper, --only ROWS.
BENCH_FLAGS ?=
$(CFN_STEP): bench/cpp/cfn_step.cc torchx/csrc/torchx.h $(LIBDIR)/libtorchx.so
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS_ALL) -I torchx/csrc $< -o $@ -L$(LIBDIR) -Wl,-rpath,$(ABS_LIBDIR) -Wl,--no-as-needed -ltorchx $(TORCH_LDFLAGS)

bench: build $(CFN_STEP)
	$(GOENV) $(GO) build -o $(BUILD)/bench/sli2vol-bench ./bench/cmd/sli2vol-bench
	$(BUILD)/bench/sli2vol-bench run --out BENCHMARKS.md --cpp $(CFN_STEP) $(BENCH_FLAGS)

# The page of `sli2vol serve` (web/: NiiVue + esbuild, versions pinned in package-lock.json),
# bundled into serve/webui/dist with PROVENANCE.json. The bundle is committed, so only a change
# to web/ needs this (and node + npm); serve/webui's test checks dist against PROVENANCE.json.
web:
	cd web && npm ci --no-audit --no-fund && node build.mjs

# Fuzz the input readers, FUZZTIME each (the issue asks for 10 minutes before closing).
FUZZTIME ?= 1m
fuzz: build
	$(GOENV) $(GO) test ./data -run '^$$' -fuzz FuzzNIfTI -fuzztime $(FUZZTIME)
	$(GOENV) $(GO) test ./data -run '^$$' -fuzz FuzzDICOM -fuzztime $(FUZZTIME)
	$(GOENV) $(GO) test ./serve -run '^$$' -fuzz FuzzUpload -fuzztime $(FUZZTIME)
	$(GOENV) $(GO) test ./torchx -run '^$$' -fuzz FuzzStateDict -fuzztime $(FUZZTIME)
	$(GO) test ./internal/torchload -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME)

# A folder to carry to a machine with CUDA, g++ and PyTorch but no Go (or network): the Go
# binaries built here (run path $ORIGIN/../build/lib first), the shim sources and gotorch's
# C++ part, the build glue, configs and the PyTorch reference. There,
# third_party/gpu/device-run.sh builds the two .so files against that PyTorch's libtorch and
# runs the checks and benchmarks into $OUT.
BUNDLE := build/gpu-bundle
GOENV_BUNDLE := CGO_ENABLED=1 CGO_LDFLAGS='-L$(ABS_LIBDIR) -L$(shell third_party/libtorch-flags.sh --libdir $(LIBTORCH)) \
  -Wl,-rpath-link,$(shell third_party/libtorch-flags.sh --libdir $(LIBTORCH)) -Wl,--as-needed -Wl,-rpath,$$ORIGIN/../build/lib -Wl,-rpath,$$ORIGIN/../lib'
# GPU_DATA=1 adds the shared real CT (third_party/gpu/bundle-data.sh) for device-run.sh paper-model.
REAL_DATA ?= ../shared/data/real
gpu-bundle: build
	rm -rf $(BUNDLE) && mkdir -p $(BUNDLE)/bin $(BUNDLE)/build/bench $(addprefix $(BUNDLE)/,$(TESTBIN_PKGS))
	$(GOENV_BUNDLE) $(GO) build -ldflags '$(GOLDFLAGS) -s -w' -o $(BUNDLE)/bin/sli2vol ./cmd/sli2vol
	$(GOENV_BUNDLE) $(GO) build -ldflags '-s -w' -o $(BUNDLE)/build/bench/sli2vol-bench ./bench/cmd/sli2vol-bench
	$(foreach p,$(TESTBIN_PKGS),$(GOENV_BUNDLE) $(GO) test -c -ldflags '-s -w' -o $(BUNDLE)/bin/$(p).test ./$(p) &&) true
	cp -r torchx/csrc $(BUNDLE)/torchx/ && cp -r $(BUILD)/cgotorch-src $(BUNDLE)/build/
	cp -r third_party Makefile $(BUNDLE)/ && mkdir -p $(BUNDLE)/bench $(BUNDLE)/configs && cp -r bench/pytorch bench/cpp bench/hosttime.py $(BUNDLE)/bench/
	cp configs/*.yaml $(BUNDLE)/configs/
	$(if $(filter 1,$(GPU_DATA)),third_party/gpu/bundle-data.sh $(REAL_DATA) $(BUNDLE)/data)
	@du -sh $(BUNDLE)

# The bundle's build path, here against Debian's libtorch laid out as one LIBTORCH root.
test-bundle: gpu-bundle
	third_party/gpu/test-bundle.sh $(BUNDLE)

# For a shell: eval "$(make -s print-env)" then go test/build by hand.
print-env:
	@echo 'export CGO_ENABLED=1 CGO_LDFLAGS="$(subst $$ORIGIN,\$$ORIGIN,$(CGO_LDFLAGS_SLI2VOL))"'

# Test binaries for a machine without Go (the GPU machine): bin/<pkg>.test, run there after
# the two shim libraries are rebuilt against its libtorch.
TESTBIN_PKGS := torchx models infer
testbin: build
	$(foreach p,$(TESTBIN_PKGS),$(GOENV) $(GO) test -c -o bin/$(p).test ./$(p) &&) true

clean:
	rm -rf $(BUILD) bin

# Keep the copied cgotorch sources (make would delete them as intermediates), so a second
# `make build` finds everything up to date and compiles no C++.
.SECONDARY:
