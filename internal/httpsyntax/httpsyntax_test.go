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

func TestValidHost(t *testing.T) {
	for _, c := range []struct {
		in       string
		needPort bool
		want     bool
	}{
		{"example.com", false, true},
		{"example.com:8080", false, true},
		{"example.com:", false, true}, // port = *DIGIT
		{"example.com:", true, false},
		{"example.com", true, false},
		{"127.0.0.1:80", true, true},
		{"[::1]:443", false, true},
		{"[::1]", false, true},
		{"[v1.x]", false, true}, // IPvFuture
		{"[::1", false, false},
		{"[::1]x", false, false},
		{"a%20b", false, true},
		{"a%2", false, false},
		{"a b", false, false},
		{"user@host", false, false},
		{"host:8o", false, false},
		{"", false, false},
		{":80", false, false},
	} {
		if got := ValidHost(c.in, c.needPort); got != c.want {
			t.Errorf("ValidHost(%q, %v) = %v, want %v", c.in, c.needPort, got, c.want)
		}
	}
}
