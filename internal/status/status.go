// Package status implements taipan status and taipan top: they read
// /status.json from a running taipan's --metrics-bind listener and show it
// in the terminal, once or refreshed every second.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"taipan/internal/metrics"
)

// DefaultAddr is where the commands look when no address is given and
// TAIPAN_METRICS_BIND is unset.
const DefaultAddr = "127.0.0.1:9100"

// fetchTimeout bounds one read of /status.json.
const fetchTimeout = 3 * time.Second

// Client reads /status.json from one taipan.
type Client struct {
	URL  string // the document's URL, http://HOST:PORT/status.json
	HTTP *http.Client
}

// NewClient returns a Client for the admin listener at addr: HOST:PORT as
// given to --metrics-bind (an empty or unspecified host means this
// machine), or a base URL http://HOST:PORT[/prefix].
func NewClient(addr string) (*Client, error) {
	base := addr
	if !strings.Contains(addr, "://") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("address %q: want HOST:PORT: %v", addr, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("address %q: the port must be a number from 1 to 65535", addr)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		base = "http://" + net.JoinHostPort(host, port)
	}
	return &Client{
		URL:  strings.TrimSuffix(base, "/") + "/status.json",
		HTTP: &http.Client{Timeout: fetchTimeout},
	}, nil
}

// Fetch reads and decodes the status document.
func (c *Client) Fetch(ctx context.Context) (*metrics.Status, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is in the message already
		}
		return nil, fmt.Errorf("cannot reach taipan at %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	// An app's port (-b) rather than --metrics-bind's answers too, with
	// whatever the app serves there: say where to point instead.
	const hint = "is it taipan's --metrics-bind address?"
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s (%s)", c.URL, resp.Status, hint)
	}
	var st metrics.Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&st); err != nil {
		return nil, fmt.Errorf("%s: not taipan's status (%v; %s)", c.URL, err, hint)
	}
	return &st, nil
}

// Env is what the commands use of the process: its streams and
// environment.
type Env struct {
	Stdin          io.Reader // top reads q from it when it is a terminal
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// Main runs "taipan status" or "taipan top" (cmd) with args, the rest of
// the command line, and returns the exit code: 0, 1 when taipan cannot be
// reached, 2 for a bad command line.
func Main(ctx context.Context, cmd string, args []string, env Env) int {
	addr, err := parseArgs(cmd, args, env)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "taipan %s: %v\n", cmd, err)
		return 2
	}
	c, err := NewClient(addr)
	if err != nil {
		fmt.Fprintf(env.Stderr, "taipan %s: %v\n", cmd, err)
		return 2
	}
	if cmd == "top" {
		err = Top(ctx, c, env.Stdin, env.Stdout)
	} else {
		err = Once(ctx, c, env.Stdout)
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "taipan %s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// parseArgs reads the address from "[--metrics-bind ADDR | ADDR]".
func parseArgs(cmd string, args []string, env Env) (string, error) {
	def := DefaultAddr
	if v := env.Getenv("TAIPAN_METRICS_BIND"); v != "" {
		def = v
	}
	fs := flag.NewFlagSet("taipan "+cmd, flag.ContinueOnError)
	// The flag package's own messages (and the usage after each) are not
	// shown: a bad command line gets one line, said as taipan says it.
	fs.SetOutput(io.Discard)
	addr := fs.String("metrics-bind", def, "HOST:PORT of taipan's --metrics-bind listener")
	fs.Usage = func() {}
	usage := func() {
		fmt.Fprintf(env.Stderr, "Usage: taipan %s [--metrics-bind ADDR | ADDR]\n\n", cmd)
		if cmd == "top" {
			fmt.Fprintln(env.Stderr, "Show a running taipan's workers and traffic, refreshed every second (q or Ctrl-C quits).")
		} else {
			fmt.Fprintln(env.Stderr, "Print a running taipan's workers and traffic once.")
		}
		fmt.Fprintf(env.Stderr, "ADDR is its --metrics-bind address (default $TAIPAN_METRICS_BIND, else %s).\n", DefaultAddr)
	}
	if err := fs.Parse(args); err != nil {
		msg := err.Error()
		if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
			dashes := "--"
			if len(name) == 1 {
				dashes = "-"
			}
			return "", fmt.Errorf("unknown flag %s%s (see taipan %s --help)", dashes, name, cmd)
		}
		if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
			return "", fmt.Errorf("flag --%s needs a value", strings.TrimPrefix(name, "-"))
		}
		if errors.Is(err, flag.ErrHelp) {
			usage()
		}
		return "", err
	}
	switch fs.NArg() {
	case 0:
		return *addr, nil
	case 1:
		given := false
		fs.Visit(func(f *flag.Flag) { given = given || f.Name == "metrics-bind" })
		if given {
			return "", errors.New("give the address once: --metrics-bind ADDR or ADDR")
		}
		return fs.Arg(0), nil
	}
	return "", fmt.Errorf("unexpected arguments %q", fs.Args()[1:])
}

// Once prints the status once.
func Once(ctx context.Context, c *Client, w io.Writer) error {
	st, err := c.Fetch(ctx)
	if err != nil {
		return err
	}
	return Render(w, st, 0)
}
