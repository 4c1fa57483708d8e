package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/BurntSushi/toml"
)

// Setting is one resolved setting and where its value came from, as
// taipan --print-config shows it.
type Setting struct {
	Name string // the long flag name, which is also the config file key
	// Value is typed: string, bool, int, int64 (bytes), float64 (seconds)
	// or []string (a repeatable flag).
	Value any
	// Source is "flag", "argument" (the app), "env TAIPAN_...", the config
	// file's path, or "default".
	Source string
}

// Settings is the whole resolved configuration: the app, then every
// setting by name.
type Settings []Setting

// WriteTo writes s as TOML, one setting per line with its source in an
// aligned comment: readable as it is, and a starting point for a
// taipan.toml.
func (s Settings) WriteTo(w io.Writer) (int64, error) {
	lines := make([]string, len(s))
	width := 0
	for i, st := range s {
		var b bytes.Buffer
		if err := toml.NewEncoder(&b).Encode(map[string]any{st.Name: st.Value}); err != nil {
			return 0, fmt.Errorf("%s: %v", st.Name, err)
		}
		lines[i] = strings.TrimSpace(b.String())
		if n := len(lines[i]); n > width && n <= maxAligned {
			width = n
		}
	}
	var out bytes.Buffer
	out.WriteString("# taipan's configuration, resolved; each setting's source follows it.\n")
	for i, st := range s {
		fmt.Fprintf(&out, "%-*s  # %s\n", width, lines[i], st.Source)
	}
	return out.WriteTo(w)
}

// maxAligned is the longest line the source comments are aligned after; a
// longer line (a long list) would push them all too far right.
const maxAligned = 48

// MarshalJSON encodes s as one object keyed by setting name, in order:
// {"app": {"value": "hello:app", "source": "argument"}, ...}.
func (s Settings) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, st := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		name, err := json.Marshal(st.Name)
		if err != nil {
			return nil, err
		}
		entry, err := json.Marshal(struct {
			Value  any    `json:"value"`
			Source string `json:"source"`
		}{st.Value, st.Source})
		if err != nil {
			return nil, fmt.Errorf("%s: %v", st.Name, err)
		}
		b.Write(name)
		b.WriteByte(':')
		b.Write(entry)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
