package status

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// refresh is how often top redraws.
const refresh = time.Second

// ANSI sequences top draws with: the cursor home, clear to the end of the
// line, clear to the end of the screen, clear the whole screen.
const (
	ansiHome        = "\x1b[H"
	ansiClearLine   = "\x1b[K"
	ansiClearBelow  = "\x1b[J"
	ansiClearScreen = "\x1b[2J"
)

// Top redraws the status every second until ctx ends or q is typed on in
// (when it is a terminal). It fails only when the first read fails; later
// failures (taipan restarting) are shown and retried.
func Top(ctx context.Context, c *Client, in io.Reader, out io.Writer) error {
	st, err := c.Fetch(ctx)
	if ctx.Err() != nil {
		return nil // Ctrl-C before the first read
	}
	if err != nil {
		return err
	}
	quit, restore := watchQuit(in)
	defer restore()
	width := termWidth(out)
	io.WriteString(out, ansiClearScreen)
	tick := time.NewTicker(refresh)
	defer tick.Stop()
	var frame bytes.Buffer
	for {
		frame.Reset()
		if err != nil {
			fmt.Fprintf(&frame, "%s\n(retrying every %v)\n", err, refresh)
		} else {
			Render(&frame, st, max(width-40, 20)) // about what the columns before REQUEST take
		}
		fmt.Fprintf(&frame, "\n%s  refresh %v  q or Ctrl-C quits\n", time.Now().Format(time.TimeOnly), refresh)
		draw(out, frame.String())
		select {
		case <-ctx.Done():
			return nil
		case <-quit:
			return nil
		case <-tick.C:
		}
		if next, ferr := c.Fetch(ctx); ctx.Err() == nil {
			st, err = next, ferr
		}
	}
}

// draw overwrites the screen with frame in one write: home, each line
// cleared to its end, then the rest of the screen cleared, so that the
// screen does not flicker.
func draw(out io.Writer, frame string) {
	var b strings.Builder
	b.WriteString(ansiHome)
	b.WriteString(strings.ReplaceAll(strings.TrimSuffix(frame, "\n"), "\n", ansiClearLine+"\r\n"))
	b.WriteString(ansiClearLine + "\r\n" + ansiClearBelow)
	io.WriteString(out, b.String())
}

// termWidth is out's width in columns, or 120 when it is no terminal.
func termWidth(out io.Writer) int {
	if f, ok := out.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return int(ws.Col)
		}
	}
	return 120
}

// watchQuit reports on quit when q is typed on in. When in is a terminal
// it is switched out of line mode (and echo) so that q needs no Enter;
// restore switches it back. Ctrl-C still raises SIGINT.
func watchQuit(in io.Reader) (quit <-chan struct{}, restore func()) {
	ch := make(chan struct{})
	restore = func() {}
	f, ok := in.(*os.File)
	if !ok || f == nil {
		return ch, restore
	}
	fd := int(f.Fd())
	saved, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return ch, restore // not a terminal: no keys to read
	}
	raw := *saved
	raw.Lflag &^= unix.ICANON | unix.ECHO
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return ch, restore
	}
	restore = func() { unix.IoctlSetTermios(fd, unix.TCSETS, saved) }
	go func() {
		buf := make([]byte, 16)
		for {
			n, err := f.Read(buf)
			if bytes.ContainsAny(buf[:n], "qQ") {
				close(ch)
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch, restore
}
