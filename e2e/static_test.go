package e2e

import (
	"debug/elf"
	"testing"
)

// TestStaticBinary: the binary built as shipped (CGO_ENABLED=0) is static:
// no program interpreter, no shared libraries, so it runs on any Linux
// with any CPython.
func TestStaticBinary(t *testing.T) {
	f, err := elf.Open(taipanBin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("taipan has a program interpreter: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Fatalf("taipan links shared libraries %v (%v)", libs, err)
	}
}
