// Command taipan serves a Python WSGI application: Go owns the sockets and
// HTTP, Python worker processes run only the app.
//
//	taipan [OPTIONS] [MODULE[:CALLABLE]]
//	taipan status|top [--metrics-bind ADDR | ADDR]
//
// See taipan --help and README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"taipan/internal/config"
	"taipan/internal/server"
	"taipan/internal/status"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && (args[0] == "status" || args[0] == "top") {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return status.Main(ctx, args[0], args[1:], status.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	}
	cfg, action, err := config.ParseEnviron(args, os.Environ())
	if err != nil {
		fmt.Fprintf(os.Stderr, "taipan: %v\n", err)
		return 2
	}
	switch action {
	case config.ShowHelp:
		fmt.Print(config.Usage)
		return 0
	case config.ShowVersion:
		fmt.Printf("taipan %s\n", server.Version)
		return 0
	case config.PrintConfig, config.PrintConfigJSON:
		if err := printConfig(os.Stdout, cfg.Settings, action == config.PrintConfigJSON); err != nil {
			fmt.Fprintf(os.Stderr, "taipan: %v\n", err)
			return 1
		}
		return 0
	}
	if err := server.Run(cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "taipan: %v\n", err)
		var exit *server.ExitError
		if errors.As(err, &exit) {
			return exit.Code
		}
		return 1
	}
	return 0
}

// printConfig writes the resolved settings for --print-config.
func printConfig(w io.Writer, s config.Settings, asJSON bool) error {
	if !asJSON {
		_, err := s.WriteTo(w)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}
