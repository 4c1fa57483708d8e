package config

import (
	"errors"
	"flag"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A setting is one thing that can be configured: a flag together with its
// aliases (-w and --workers, --log-file and --error-logfile), which share
// one flag.Value. Settings are found on the FlagSet itself, so a flag added
// to Parse can also be set from the environment and the config file
// without code of its own.
type setting struct {
	name   string     // the canonical long name: the file key, and what --print-config shows
	names  []string   // every name it has on the command line: short ones, the canonical one, aliases
	value  flag.Value // shared by all the names
	kind   kind
	origin string // where the value came from; "" until something sets it (the default)
}

// settingsOf groups the flags of fs into settings, sorted by name. The
// flags that only make sense on a command line (--help, --config, ...)
// are left out.
func settingsOf(fs *flag.FlagSet) []*setting {
	var all []*setting
	fs.VisitAll(func(f *flag.Flag) {
		for _, s := range all {
			if sameValue(s.value, f.Value) {
				s.names = append(s.names, f.Name)
				return
			}
		}
		all = append(all, &setting{names: []string{f.Name}, value: f.Value})
	})
	all = slices.DeleteFunc(all, func(s *setting) bool { return slices.ContainsFunc(s.names, commandLineOnly) })
	for _, s := range all {
		s.name = canonicalName(s.names)
		s.kind = kindOf(s.value)
		// Short forms first, then the canonical name, then other aliases:
		// -w, --workers; --error-logfile, --log-file.
		slices.SortStableFunc(s.names, func(a, b string) int {
			rank := func(n string) int {
				switch {
				case len(n) == 1:
					return 0
				case n == s.name:
					return 1
				}
				return 2
			}
			return rank(a) - rank(b)
		})
	}
	slices.SortFunc(all, func(a, b *setting) int { return strings.Compare(a.name, b.name) })
	return all
}

// commandLineOnly reports whether the flag name is an instruction to this
// run rather than a setting: it has no environment variable or file key.
// (--config has TAIPAN_CONFIG, handled where the file is found.)
func commandLineOnly(name string) bool {
	switch name {
	case "h", "help", "v", "version", "config", "print-config":
		return true
	}
	return false
}

// sameValue reports whether two flags are aliases: the flag package's
// values are pointers to the variable they set, so aliases compare equal.
func sameValue(a, b flag.Value) bool {
	t := reflect.TypeOf(a)
	return t == reflect.TypeOf(b) && t.Comparable() && a == b
}

// canonicalName picks the name a setting is known by: the one --help
// documents (--error-logfile rather than its alias --log-file,
// --limit-request-field_size rather than -field-size), else the longest
// (--workers rather than -w).
func canonicalName(names []string) string {
	rank := func(n string) (bool, int) { return mentions(Usage, "--"+n), len(n) }
	best := names[0]
	for _, n := range names[1:] {
		bd, bl := rank(best)
		nd, nl := rank(n)
		if nd && !bd || nd == bd && (nl > bl || nl == bl && n > best) {
			best = n
		}
	}
	return best
}

// mentions reports whether text contains name as a whole flag name, not
// just as the start of a longer one (--workers in --workers-min).
func mentions(text, name string) bool {
	for i := 0; ; {
		j := strings.Index(text[i:], name)
		if j < 0 {
			return false
		}
		end := i + j + len(name)
		if end == len(text) || !isNameByte(text[end]) {
			return true
		}
		i = end
	}
}

func isNameByte(c byte) bool {
	return c == '-' || c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// longNames are the names that have an environment variable and a file
// key: every name but the one-letter short forms (unless a flag has
// nothing else).
func (s *setting) longNames() []string {
	var long []string
	for _, n := range s.names {
		if len(n) > 1 {
			long = append(long, n)
		}
	}
	if len(long) == 0 {
		return []string{s.name}
	}
	return long
}

// envNames are the environment variables that set s, the canonical one
// first: TAIPAN_ and the long name upper-cased with '-' as '_'.
func (s *setting) envNames() []string {
	names := []string{envName(s.name)}
	for _, n := range s.longNames() {
		if e := envName(n); !slices.Contains(names, e) {
			names = append(names, e)
		}
	}
	return names
}

// keys are the config file keys that set s, in the normalized spelling
// (see fileKey), the canonical one first.
func (s *setting) keys() []string {
	keys := []string{fileKey(s.name)}
	for _, n := range s.longNames() {
		if k := fileKey(n); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// envPrefix starts every environment variable taipan reads.
const envPrefix = "TAIPAN_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// fileKey normalizes a config file key or flag name so that max-requests
// and max_requests are the same key, as Python tools usually allow.
func fileKey(name string) string { return strings.ReplaceAll(name, "_", "-") }

// set gives s the texts, in order (a repeatable flag takes each), from
// origin. The error is the flag.Value's complaint, phrased for the user.
func (s *setting) set(texts []string, origin string) error {
	for _, t := range texts {
		if err := s.value.Set(t); err != nil {
			return s.kind.setError(t, err)
		}
	}
	s.origin = origin
	return nil
}

// kind is what a setting's value is: it decides which TOML types a config
// file may give it, how an environment variable is read, and the type
// docs/configuration.md shows.
type kind int

const (
	textKind     kind = iota // a flag.Value this package does not know: its Set parses the text
	stringKind               // TOML string
	boolKind                 // TOML boolean; true/false/1/0/yes/no/on/off in the environment
	intKind                  // TOML integer
	floatKind                // TOML integer or float
	secondsKind              // a duration in seconds: TOML integer or float
	durationKind             // a Go duration: TOML string such as "1m30s"
	sizeKind                 // bytes: TOML integer, or a string with a k, m or g suffix
	listKind                 // a repeatable flag: TOML array of strings; comma-separated in the environment
)

// kindOf tells the kind from the flag.Value: this package's own types say
// theirs, the flag package's are told by what Get returns.
func kindOf(v flag.Value) kind {
	if k, ok := v.(interface{ kind() kind }); ok {
		return k.kind()
	}
	if b, ok := v.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return boolKind
	}
	if g, ok := v.(flag.Getter); ok {
		switch g.Get().(type) {
		case string:
			return stringKind
		case int, int64, uint, uint64:
			return intKind
		case float64:
			return floatKind
		case time.Duration:
			return durationKind
		}
	}
	return textKind
}

// String is the type as docs/configuration.md names it.
func (k kind) String() string {
	switch k {
	case stringKind, textKind:
		return "string"
	case boolKind:
		return "boolean"
	case intKind:
		return "integer"
	case floatKind:
		return "number"
	case secondsKind:
		return "seconds"
	case durationKind:
		return "duration"
	case sizeKind:
		return "size"
	case listKind:
		return "list of strings"
	}
	return "unknown"
}

// fromTOML turns a value decoded from a config file into the texts the
// setting's Set takes, refusing TOML types that do not fit the kind
// (workers = "four" is an error, not a string to parse).
func (k kind) fromTOML(v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		switch k {
		case stringKind, textKind, durationKind, sizeKind, listKind:
			return []string{v}, nil // a list may be given as one string
		}
	case int64:
		switch k {
		case intKind, floatKind, secondsKind, sizeKind, textKind:
			return []string{strconv.FormatInt(v, 10)}, nil
		}
	case float64:
		switch k {
		case floatKind, secondsKind, textKind:
			return []string{strconv.FormatFloat(v, 'g', -1, 64)}, nil // 'g': 1e300 stays short in an error
		}
	case bool:
		switch k {
		case boolKind, textKind:
			return []string{strconv.FormatBool(v)}, nil
		}
	case []any:
		if k == listKind {
			texts := make([]string, len(v))
			for i, e := range v {
				s, ok := e.(string)
				if !ok {
					return nil, fmt.Errorf("want an array of strings, got %s in it", describeTOML(e))
				}
				texts[i] = s
			}
			return texts, nil
		}
	}
	return nil, fmt.Errorf("want %s, got %s", k.want(), describeTOML(v))
}

// fromEnv turns an environment variable into the texts the setting's Set
// takes.
func (k kind) fromEnv(v string) ([]string, error) {
	switch k {
	case boolKind:
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "1", "true", "yes", "on":
			return []string{"true"}, nil
		case "0", "false", "no", "off":
			return []string{"false"}, nil
		}
		return nil, fmt.Errorf("want true or false (or 1/0, yes/no, on/off), got %q", v)
	case listKind:
		return splitList(v), nil
	}
	return []string{v}, nil
}

// want describes, after "want", the TOML values a kind accepts.
func (k kind) want() string {
	switch k {
	case boolKind:
		return "true or false"
	case intKind:
		return "an integer"
	case floatKind:
		return "a number"
	case secondsKind:
		return "a number of seconds"
	case durationKind:
		return `a duration such as "1m30s"`
	case sizeKind:
		return `a number of bytes, or a string such as "10m"`
	case listKind:
		return "an array of strings"
	}
	return "a string"
}

// setError phrases a failed Set. The flag package's own values fail with
// bare "parse error"s, so those kinds say what they want; this package's
// types already do.
func (k kind) setError(text string, err error) error {
	switch k {
	case intKind, floatKind, durationKind:
		return fmt.Errorf("want %s, got %q", k.want(), text)
	}
	return err
}

// describeTOML shows a decoded TOML value in an error message.
func describeTOML(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	case time.Time:
		return "a date"
	}
	return fmt.Sprintf("%v", v)
}

// splitList reads a repeatable flag's environment variable: items are
// separated by commas, `\,` is a comma inside an item (--env values may
// hold commas) and `\\` a backslash; items are trimmed of spaces and empty
// ones dropped.
func splitList(v string) []string {
	var (
		items []string
		item  strings.Builder
	)
	end := func() {
		if s := strings.TrimSpace(item.String()); s != "" {
			items = append(items, s)
		}
		item.Reset()
	}
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v) && (v[i+1] == ',' || v[i+1] == '\\'):
			item.WriteByte(v[i+1])
			i++
		case c == ',':
			end()
		default:
			item.WriteByte(c)
		}
	}
	end()
	return items
}

// The package's own flag types tell their kind and, for --print-config,
// their typed value.

func (l *listFlag) kind() kind { return listKind }
func (l *listFlag) Get() any   { return append([]string{}, *l...) }

func (s *seconds) kind() kind { return secondsKind }
func (s *seconds) Get() any   { return time.Duration(*s).Seconds() }

func (s *size) kind() kind { return sizeKind }
func (s *size) Get() any   { return int64(*s) }

// printFormat is --print-config: "" (off), "text" or "json". It is a
// boolean flag, so --print-config alone means text and the format needs
// the = form: --print-config=json.
type printFormat string

func (p *printFormat) String() string   { return string(*p) }
func (p *printFormat) IsBoolFlag() bool { return true }
func (p *printFormat) Set(v string) error {
	switch v {
	case "true", "text":
		*p = "text"
	case "json":
		*p = "json"
	case "false":
		*p = ""
	default:
		return errors.New("want --print-config or --print-config=json")
	}
	return nil
}

// suggest returns the candidate closest to a misspelt name, or "" when
// none is close enough to be a likely typo.
func suggest(name string, candidates []string) string {
	best, bestDist := "", 3 // at most two edits
	for _, c := range candidates {
		if d := editDistance(name, c); d < bestDist && d < len(c)/2 {
			best, bestDist = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
