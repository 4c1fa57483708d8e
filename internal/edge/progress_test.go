package edge

import (
	"errors"
	"strings"
	"testing"
)

func TestProgressRules(t *testing.T) {
	p := NewProgress()
	if err := p.CheckBody(); !errors.Is(err, ErrNoHead) {
		t.Fatalf("CheckBody before the head = %v, want ErrNoHead", err)
	}
	if allowed, err := p.StartHead(200, "GET"); err != nil || !allowed || p.NoBody {
		t.Fatalf("StartHead(200, GET) = %v, %v (NoBody %v)", allowed, err, p.NoBody)
	}
	if _, err := p.StartHead(200, "GET"); !errors.Is(err, ErrHeadWritten) {
		t.Fatalf("a second StartHead = %v, want ErrHeadWritten", err)
	}
	if n, over := p.Allow(1 << 20); n != 1<<20 || over {
		t.Fatalf("Allow without a Content-Length = %d, %v", n, over)
	}
	p.Length, p.Written = 10, 4
	if n, over := p.Allow(6); n != 6 || over {
		t.Fatalf("Allow(6) with 6 left = %d, %v", n, over)
	}
	if n, over := p.Allow(7); n != 6 || !over {
		t.Fatalf("Allow(7) with 6 left = %d, %v, want 6, true", n, over)
	}
	if !p.Short() {
		t.Fatal("4 of 10 declared bytes is not Short")
	}
	p.Written = 10
	if p.Short() {
		t.Fatal("10 of 10 declared bytes is Short")
	}
	p.Err = errors.New("peer gone")
	if err := p.CheckBody(); err != p.Err {
		t.Fatalf("CheckBody after a write error = %v", err)
	}
	p.Done = true
	if err := p.CheckBody(); !errors.Is(err, ErrResponseDone) {
		t.Fatalf("CheckBody after the Handler returned = %v", err)
	}
	done := NewProgress()
	done.Done = true
	if _, err := done.StartHead(200, "GET"); !errors.Is(err, ErrResponseDone) {
		t.Fatalf("StartHead after the Handler returned = %v", err)
	}
}

// TestProgressNoBody: HEAD responses and 1xx, 204 and 304 carry no body;
// only the status codes forbid one (a HEAD response still declares the
// length of the GET's body), and a response without a body is never Short.
func TestProgressNoBody(t *testing.T) {
	for _, tc := range []struct {
		code        int
		method      string
		bodyAllowed bool
		noBody      bool
	}{
		{200, "GET", true, false},
		{200, "HEAD", true, true},
		{101, "GET", false, true},
		{204, "POST", false, true},
		{304, "GET", false, true},
		{404, "GET", true, false},
	} {
		p := NewProgress()
		allowed, err := p.StartHead(tc.code, tc.method)
		if err != nil || allowed != tc.bodyAllowed || p.NoBody != tc.noBody {
			t.Errorf("StartHead(%d, %s) = %v, %v with NoBody %v; want %v, nil with NoBody %v",
				tc.code, tc.method, allowed, err, p.NoBody, tc.bodyAllowed, tc.noBody)
		}
		p.Length = 5
		if p.Short() == tc.noBody {
			t.Errorf("%d to %s: Short() = %v with 5 bytes declared and none sent", tc.code, tc.method, p.Short())
		}
	}
}

func TestHopByHop(t *testing.T) {
	for _, name := range []string{"Connection", "keep-alive", "Proxy-Connection", "TRANSFER-ENCODING", "Upgrade"} {
		if !HopByHop(name) {
			t.Errorf("HopByHop(%q) = false", name)
		}
	}
	for _, name := range []string{"Content-Length", "Date", "Server", "Content-Type", "Connections", "Upgrade-Insecure-Requests"} {
		if HopByHop(name) {
			t.Errorf("HopByHop(%q) = true", name)
		}
	}
}

// TestProgressDeclareLength: the first valid Content-Length of a head that
// may have a body is kept and bounds the body; a repeat, an invalid value
// and any value on a 304 are dropped.
func TestProgressDeclareLength(t *testing.T) {
	p := NewProgress()
	p.StartHead(200, "GET")
	for _, tc := range []struct {
		value         string
		keep, invalid bool
	}{
		{"x5", false, true},
		{" 12 ", true, false},
		{"7", false, false},
	} {
		if keep, invalid := p.DeclareLength(tc.value); keep != tc.keep || invalid != tc.invalid {
			t.Errorf("DeclareLength(%q) = %v, %v; want %v, %v", tc.value, keep, invalid, tc.keep, tc.invalid)
		}
	}
	if p.Length != 12 {
		t.Errorf("Length = %d after the headers, want the first valid one, 12", p.Length)
	}
	notModified := NewProgress()
	notModified.StartHead(304, "GET")
	if keep, invalid := notModified.DeclareLength("12"); keep || invalid || notModified.Length != -1 {
		t.Errorf("a 304's Content-Length: kept %v, invalid %v, Length %d", keep, invalid, notModified.Length)
	}
}

// Mismatch names a body that was cut at its Content-Length or ended short
// of it, and nothing else.
func TestProgressMismatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		written []int64
		want    string
	}{
		{"exact", []int64{4, 6}, ""},
		{"cut", []int64{8, 8}, "longer than its Content-Length (10 bytes)"},
		{"short", []int64{3}, "ended after 3 of the 10 bytes"},
	} {
		p := NewProgress()
		p.StartHead(200, "GET")
		p.DeclareLength("10")
		for _, n := range tc.written {
			allowed, _ := p.Allow(n)
			p.Written += allowed
		}
		if got := p.Mismatch(); tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%s: Mismatch() = %q, want %q", tc.name, got, tc.want)
		}
	}
}
