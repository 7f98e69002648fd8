# im2000: `make demo` runs the system end to end, `make test` runs every test.
GO       ?= go
PREFIX   ?= /usr/local
MANDIR   ?= $(PREFIX)/share/man
FUZZTIME ?= 100000x
PROGRAMS := $(patsubst %/,%,$(wildcard im2000-*/))
# Static binaries: without cgo (which only os/user would use) a program
# starts about 2.5 ms sooner here, which is most of a sendmail-style
# injection's cost. os/user then reads /etc/passwd; NSS-only users set
# IM2000_ACCOUNT.
export CGO_ENABLED := 0

.PHONY: all test deps vet demo bench fuzz install clean

all:
	$(GO) build -o bin/ $(addprefix ./,$(PROGRAMS))

deps:
	@tests/deps.sh

vet:
	@bad=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$bad" ]; then echo "gofmt would change: $$bad"; exit 1; fi
	$(GO) vet ./...

test: deps vet all
	$(GO) test -count=1 -timeout 40m ./...
	tests/fuzz.sh $(FUZZTIME)

fuzz:
	tests/fuzz.sh $(FUZZTIME)

demo: all
	@$(GO) run ./tests/demo

bench: all
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./lib/wire
	$(GO) run ./tests/bench

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(addprefix bin/,$(PROGRAMS)) $(DESTDIR)$(PREFIX)/bin/
	for page in man/*.[1-8]; do \
	  sec=$${page##*.}; install -d $(DESTDIR)$(MANDIR)/man$$sec; \
	  install -m 644 $$page $(DESTDIR)$(MANDIR)/man$$sec/; done

clean:
	rm -rf bin
