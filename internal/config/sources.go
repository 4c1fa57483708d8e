package config

import (
	"errors"
	"flag"
	"maps"
	"slices"
	"strings"
)

// Parse reads args (without the program name), then fills in what they
// leave unset from the environment getenv describes (TAIPAN_WORKERS for
// --workers) and from the config file (--config, or the [tool.taipan]
// table of ./pyproject.toml). getenv also finds $VIRTUAL_ENV.
//
// Parse cannot list the environment, so it cannot reject a misspelt
// TAIPAN_ variable; ParseEnviron can.
func Parse(args []string, getenv func(string) string) (*Config, Action, error) {
	return load(args, &sources{getenv: getenv})
}

// ParseEnviron is Parse with the whole environment, as os.Environ returns
// it, which lets it also reject TAIPAN_ variables that name no setting: a
// misspelt TAIPAN_WROKERS would otherwise be ignored without a word.
func ParseEnviron(args, environ []string) (*Config, Action, error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	return load(args, &sources{getenv: func(k string) string { return vars[k] }, environ: vars})
}

// load runs parse, which validates and resolves, with src filling in from
// the environment and the file; then it says where values in an error
// came from, and records every setting's origin for --print-config.
func load(args []string, src *sources) (*Config, Action, error) {
	c, action, err := parse(args, src.getenv, src)
	if err != nil {
		return nil, action, src.explain(err)
	}
	if action != Serve {
		return c, action, nil
	}
	c.Settings = src.resolved(c)
	switch src.print {
	case "text":
		return c, PrintConfig, nil
	case "json":
		return c, PrintConfigJSON, nil
	}
	return c, Serve, nil
}

// sources brings the environment and a config file in beneath the
// command line: flags win over the environment, which wins over the file,
// which wins over the defaults. It works on parse's FlagSet, so every flag
// is covered, and a repeatable flag takes its whole list from the one
// source that wins (lists are not merged).
type sources struct {
	getenv  func(string) string
	environ map[string]string // every variable, when known (ParseEnviron); nil otherwise

	fs         *flag.FlagSet
	configPath string
	print      printFormat
	settings   []*setting // once apply has run
	app        string     // the app from the environment or the file, "" if neither
	appOrigin  string     // where c.App came from; "" = nowhere (the demo)
}

// toolingVariable reports whether a TAIPAN_ variable belongs to taipan's
// own test suite or benchmarks rather than to taipan: such variables end
// up in its environment when those run it, and must not be mistaken for
// misspelt settings.
func toolingVariable(name string) bool {
	switch name {
	case "TAIPAN_TEST_PYTHON", // the interpreter the tests use (e2e/harness_test.go)
		"TAIPAN_BIN": // a prebuilt binary for bench/
		return true
	}
	return false
}

// Variables and keys that are not flags.
const (
	appEnv    = envPrefix + "APP"    // the app, like the MODULE[:CALLABLE] argument
	configEnv = envPrefix + "CONFIG" // the config file, like --config
)

// define adds the flags that steer the sources to fs, which parse will
// read; it is called before fs parses the command line.
func (src *sources) define(fs *flag.FlagSet) {
	src.fs = fs
	fs.StringVar(&src.configPath, "config", "", "")
	fs.Var(&src.print, "print-config", "")
}

// apply sets every setting the command line left unset from the
// environment, else from the config file. positional is the command line's
// app argument, if any, which likewise wins over TAIPAN_APP and the file's
// app key.
func (src *sources) apply(positional []string) error {
	src.settings = settingsOf(src.fs)
	configGiven := false
	src.fs.Visit(func(f *flag.Flag) {
		configGiven = configGiven || f.Name == "config"
		if s := src.byName(f.Name); s != nil {
			s.origin = "flag"
		}
	})
	if err := src.checkEnviron(); err != nil {
		return err
	}
	file, err := src.configFile(configGiven)
	if err != nil {
		return err
	}
	fromFile, fileApp, err := file.assign(src.settings)
	if err != nil {
		return err
	}
	for _, s := range src.settings {
		env, texts, err := src.fromEnv(s)
		switch {
		case err != nil:
			return err
		case s.origin != "": // set on the command line
		case env != "":
			if err := s.set(texts, "env "+env); err != nil {
				return usagef("env %s: %v", env, err)
			}
		default:
			if v, ok := fromFile[s]; ok {
				if err := s.set(v.texts, file.path); err != nil {
					return usagef("%s: %s: %v", file.label, v.key, err)
				}
			}
		}
	}
	switch app := src.getenv(appEnv); {
	case len(positional) > 0:
		src.appOrigin = "argument"
	case app != "":
		if err := checkAppSpec(app); err != nil {
			return usagef("env %s: %v", appEnv, err)
		}
		src.app, src.appOrigin = app, "env "+appEnv
	case fileApp != "":
		if err := checkAppSpec(fileApp); err != nil {
			return usagef("%s: app: %v", file.label, err)
		}
		src.app, src.appOrigin = fileApp, file.path
	}
	return nil
}

// configFile reads the config file --config names, else the one
// TAIPAN_CONFIG names, else ./pyproject.toml if there is one; nil if none.
func (src *sources) configFile(configGiven bool) (*configFile, error) {
	switch {
	case configGiven && src.configPath == "":
		return nil, nil // --config '' reads no file, not even ./pyproject.toml
	case configGiven:
		return findConfigFile(src.configPath)
	}
	return findConfigFile(src.getenv(configEnv))
}

// fromEnv finds the variable that sets s, if any (an empty one counts as
// unset), and the texts for its Set. Two variables for the same setting
// (TAIPAN_LOG_FILE and TAIPAN_ERROR_LOGFILE) are an error rather than a
// guess.
func (src *sources) fromEnv(s *setting) (name string, texts []string, err error) {
	for _, n := range s.envNames() {
		v := src.getenv(n)
		if v == "" {
			continue
		}
		if name != "" {
			return "", nil, usagef("env %s and %s both set --%s; keep one", name, n, s.name)
		}
		if texts, err = s.kind.fromEnv(v); err != nil {
			return "", nil, usagef("env %s: %v", n, err)
		}
		name = n
	}
	return name, texts, nil
}

// checkEnviron rejects TAIPAN_ variables that name no setting, when the
// environment can be listed.
func (src *sources) checkEnviron() error {
	if src.environ == nil {
		return nil
	}
	known := []string{appEnv, configEnv}
	for _, s := range src.settings {
		known = append(known, s.envNames()...)
	}
	for _, name := range slices.Sorted(maps.Keys(src.environ)) {
		if strings.HasPrefix(name, envPrefix) && !slices.Contains(known, name) && !toolingVariable(name) {
			slices.Sort(known)
			hint := didYouMean(suggest(name, known))
			if hint == "" {
				hint = " (it names no setting; see docs/configuration.md)"
			}
			return usagef("unknown environment variable %s%s", name, hint)
		}
	}
	return nil
}

// byName finds the setting a command-line name belongs to.
func (src *sources) byName(name string) *setting {
	for _, s := range src.settings {
		if slices.Contains(s.names, name) {
			return s
		}
	}
	return nil
}

// explain adds to a usage error where the flags it names got their values,
// when that was not the command line: "--workers must be at least 1, got 0
// (--workers from taipan.toml)".
func (src *sources) explain(err error) error {
	var ue *UsageError
	if !errors.As(err, &ue) {
		return err
	}
	var notes []string
	for _, name := range flagsIn(ue.msg) {
		s := src.byName(name)
		if s == nil || s.origin == "" || s.origin == "flag" {
			continue
		}
		if note := "--" + s.name + " from " + s.origin; !slices.Contains(notes, note) {
			notes = append(notes, note)
		}
	}
	if len(notes) == 0 {
		return err
	}
	return &UsageError{msg: ue.msg + " (" + strings.Join(notes, ", ") + ")"}
}

// flagsIn lists the long flag names a message mentions as --name.
func flagsIn(msg string) []string {
	var names []string
	for rest := msg; ; {
		i := strings.Index(rest, "--")
		if i < 0 {
			return names
		}
		rest = rest[i+2:]
		end := 0
		for end < len(rest) && isNameByte(rest[end]) {
			end++
		}
		if end > 0 {
			names = append(names, rest[:end])
		}
		rest = rest[end:]
	}
}

// resolved lists every setting of c, validated, with where it came from.
// The values are read back from the flags, which parse's validation
// updates where it normalizes one (an absolute --chdir, -k gthread).
func (src *sources) resolved(c *Config) Settings {
	origin := func(o string) string {
		if o == "" {
			return "default"
		}
		return o
	}
	out := Settings{{Name: "app", Value: c.App, Source: origin(src.appOrigin)}}
	for _, s := range src.settings {
		var v any = s.value.String()
		if g, ok := s.value.(flag.Getter); ok {
			v = g.Get()
		}
		if s.name == "python" {
			v = c.Python // found on $VIRTUAL_ENV or $PATH when not given
		}
		if s.kind == durationKind || s.kind == textKind {
			v = s.value.String()
		}
		out = append(out, Setting{Name: s.name, Value: v, Source: origin(s.origin)})
	}
	return out
}
