# Shortcuts; the scripts they call are the real thing.
.PHONY: build test dist clean

# The static binary README.md describes, as ./taipan.
build:
	CGO_ENABLED=0 go build -o taipan ./cmd/taipan

# Every test (installs the Debian packages they need first).
test:
	scripts/test

# Release binaries, wheels and SHA256SUMS in dist/ (scripts/dist --help).
dist:
	scripts/dist

clean:
	rm -rf dist taipan
