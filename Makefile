# Postyard: `make run` to try it, `make test` for everything CI runs.

GO          ?= go
BIN         := bin/postyard
FUZZTIME    ?= 5s
BENCHTIME   ?= 200ms
STATICCHECK_VERSION := v0.8.2
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $$($(GO) env GOPATH)/bin/staticcheck)

.PHONY: all build run test lint fmt-check vet staticcheck bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN) .

# First run (no data/passwd yet): create demo@localhost with a random
# password, printed once; then serve with the embedded defaults, data in ./data.
run: build
	@if [ ! -e data/passwd ]; then \
		pw=$$(head -c 18 /dev/urandom | base64 | tr -d '/+=' | cut -c1-20); \
		printf '%s\n' "$$pw" | ./$(BIN) user add demo@localhost --password-stdin || exit 1; \
		echo; \
		echo "  Created demo@localhost with password: $$pw"; \
		echo "  (shown once; change it with: ./$(BIN) user passwd demo@localhost)"; \
		echo; \
	fi
	exec ./$(BIN) serve

test: lint
	$(GO) test -race -shuffle=on -timeout 20m ./...

lint: fmt-check vet staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt: these files are not formatted (run gofmt -w):"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	@if [ ! -x "$(STATICCHECK)" ]; then \
		echo "staticcheck not found; install it with:"; \
		echo "  $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)"; \
		exit 1; \
	fi
	$(STATICCHECK) ./...

# Every benchmark, briefly; pass BENCHTIME=2s (or -count via GOFLAGS) for real figures.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# Every FuzzXxx target of every package for FUZZTIME each, found with
# `go test -list` (in the packages whose tests mention one), so new targets
# are picked up without editing this file.
fuzz:
	@set -e; $(GO) list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do \
		grep -qs '^func Fuzz' "$$dir"/*_test.go || continue; \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin
