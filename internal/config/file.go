package config

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// pyproject is the file taipan looks for in the working directory when no
// --config is given; its [tool.taipan] table holds the settings.
const pyproject = "pyproject.toml"

// A configFile is the settings table of a TOML config file: the whole of a
// taipan.toml, or the [tool.taipan] table of a pyproject.toml.
type configFile struct {
	path  string         // as given or found; --print-config names it as the source
	label string         // what error messages call it: the path, plus " [tool.taipan]" for a pyproject.toml
	table map[string]any // key → value as decoded
}

// findConfigFile reads the config file: path when one was given (by
// --config or TAIPAN_CONFIG), else ./pyproject.toml if it exists and has a
// [tool.taipan] table. Only the working directory is searched, not its
// parents: it is where the app is imported from, and a parent's
// pyproject.toml belongs to some other project as often as not (gunicorn
// too reads its gunicorn.conf.py from there only). It returns nil when
// there is no file to read.
func findConfigFile(path string) (*configFile, error) {
	if path != "" {
		return readConfigFile(path, true)
	}
	if _, err := os.Stat(pyproject); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return readConfigFile(pyproject, false)
}

// readConfigFile decodes the file at path. A file named pyproject.toml is
// read for its [tool.taipan] table; a missing table is an error only when
// the file was named explicitly.
func readConfigFile(path string, explicit bool) (*configFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is already in the message
		}
		return nil, usagef("config file %s: %v", path, err)
	}
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, usagef("%s:%d: %s", path, pe.Position.Line, oneLine(pe.Message))
		}
		return nil, usagef("%s: %s", path, oneLine(err.Error()))
	}
	f := &configFile{path: path, label: path, table: doc}
	if filepath.Base(path) != pyproject {
		return f, nil
	}
	f.label = path + " [tool.taipan]"
	tool, _ := doc["tool"].(map[string]any)
	table, found := tool["taipan"]
	if !found {
		if explicit {
			return nil, usagef("%s has no [tool.taipan] table", path)
		}
		return nil, nil
	}
	if f.table, _ = table.(map[string]any); f.table == nil {
		return nil, usagef("%s: tool.taipan must be a table, got %s", path, describeTOML(table))
	}
	return f, nil
}

// fileValue is one setting as the file gives it: the key it was spelt
// with, and the texts for its flag.Value's Set.
type fileValue struct {
	key   string
	texts []string
}

// assign matches the file's keys to settings. Every key must name a
// setting (or be "app"), once, with a value of a fitting TOML type; a key
// may be spelt with '-' or '_'. It returns the app too, "" if not given.
func (f *configFile) assign(settings []*setting) (map[*setting]fileValue, string, error) {
	values := map[*setting]fileValue{}
	if f == nil {
		return values, "", nil
	}
	byKey := map[string]*setting{}
	for _, s := range settings {
		for _, k := range s.keys() {
			byKey[k] = s
		}
	}
	app, appKey := "", ""
	for _, key := range slices.Sorted(maps.Keys(f.table)) {
		v := f.table[key]
		if fileKey(key) == "app" {
			s, ok := v.(string)
			if !ok {
				return nil, "", usagef("%s: %s: want a string such as \"mysite.wsgi:application\", got %s", f.label, key, describeTOML(v))
			}
			if appKey != "" {
				return nil, "", usagef("%s: %q and %q are the same setting; keep one", f.label, appKey, key)
			}
			app, appKey = s, key
			continue
		}
		s := byKey[fileKey(key)]
		if s == nil {
			if commandLineOnly(fileKey(key)) {
				return nil, "", usagef("%s: %q can only be given on the command line", f.label, key)
			}
			return nil, "", usagef("%s: unknown key %q%s", f.label, key, didYouMean(quoted(suggest(fileKey(key), slices.Sorted(maps.Keys(byKey))))))
		}
		if prev, dup := values[s]; dup {
			return nil, "", usagef("%s: %q and %q are the same setting; keep one", f.label, prev.key, key)
		}
		texts, err := s.kind.fromTOML(v)
		if err != nil {
			return nil, "", usagef("%s: %s: %v", f.label, key, err)
		}
		values[s] = fileValue{key: key, texts: texts}
	}
	return values, app, nil
}

// didYouMean is the tail of an unknown-name error: a suggestion, if any.
func didYouMean(suggestion string) string {
	if suggestion == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", suggestion)
}

// quoted is s in quotes, or "" for "".
func quoted(s string) string {
	if s == "" {
		return ""
	}
	return strconv.Quote(s)
}

// oneLine keeps a message from another package to the one line usage
// errors promise.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
