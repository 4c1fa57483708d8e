package metrics

import (
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestStatusPage checks that / serves the embedded page, self-contained,
// with the ids a test or a user's script can read.
func TestStatusPage(t *testing.T) {
	s := newTestServer(t, NewRecorder(), nil, nil)
	rr := httptest.NewRecorder()
	s.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/", nil))
	if rr.Code != 200 || rr.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("/: %d %q", rr.Code, rr.Header().Get("Content-Type"))
	}
	if csp := rr.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
		t.Errorf("Content-Security-Policy: %q", csp)
	}
	page := rr.Body.String()
	for _, id := range []string{"rps", "p50", "p90", "p99", "queue", "inflight", "connections", "chart", "worker-rows", "error"} {
		if !strings.Contains(page, `id="`+id+`"`) {
			t.Errorf("no element #%s", id)
		}
	}
	for _, want := range []string{`fetch("status.json"`, `"worker-row"`, "textContent"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// Self-contained: nothing loaded from elsewhere, and no HTML built
	// from strings (request lines are client data).
	if m := regexp.MustCompile(`(?i)<(script|link|img)[^>]+(src|href)=|https?://|innerHTML|outerHTML|insertAdjacentHTML|document\.write`).FindString(page); m != "" {
		t.Errorf("page loads or builds HTML: %q", m)
	}
}
