package httpsyntax

import "testing"

func TestIsToken(t *testing.T) {
	for s, want := range map[string]bool{
		"Content-Type": true, "x_y": true, "!#$%&'*+-.^_`|~": true, "a1": true,
		"": false, "a b": false, "a:b": false, "a\x00": false, "é": false, `a"b`: false, "a(b)": false,
	} {
		if got := IsToken(s); got != want {
			t.Errorf("IsToken(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestValidFieldValue(t *testing.T) {
	for s, want := range map[string]bool{
		"text/plain; q=1": true, "a\tb": true, "": true, "\xe9": true,
		"a\r\nX: y": false, "a\nb": false, "a\x00": false, "\x7f": false,
	} {
		if got := ValidFieldValue(s); got != want {
			t.Errorf("ValidFieldValue(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestHasToken(t *testing.T) {
	if !HasToken("keep-alive, Upgrade", "upgrade") || HasToken("upgraded", "upgrade") || HasToken("", "x") {
		t.Error("HasToken")
	}
}
