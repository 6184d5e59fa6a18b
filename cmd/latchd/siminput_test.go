package main

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readSimInput takes lines of up to maxSimInputLine bytes, reports a longer
// one by its number and goes on with the next, and stops at the end of the
// input or at a read error, which it reports.
func TestReadSimInput(t *testing.T) {
	long := strings.Repeat("x", maxSimInputLine+1)
	most := strings.Repeat("y", maxSimInputLine)
	for _, tc := range []struct {
		name string
		in   io.Reader
		want []string // a line, or "error: " and what the error says
	}{
		{"lines", strings.NewReader("tap 0102\nkey 1234#\n"), []string{"tap 0102", "key 1234#"}},
		{"no final line ending", strings.NewReader("status\nquit"), []string{"status", "quit"}},
		{"crlf", strings.NewReader("status\r\nquit\r\n"), []string{"status", "quit"}},
		{"blank lines", strings.NewReader("\n\nstatus\n"), []string{"", "", "status"}},
		{"empty", strings.NewReader(""), nil},
		{"over-long line", strings.NewReader("status\n" + long + "\ntap 0102\n"),
			[]string{"status", "error: input line 2: longer than 65536 bytes; skipped", "tap 0102"}},
		{"over-long lines in a row", strings.NewReader(long + "\n" + long + long + "\nquit\n"),
			[]string{"error: input line 1: longer", "error: input line 2: longer", "quit"}},
		{"over-long last line", strings.NewReader("status\n" + long), []string{"status", "error: input line 2: longer"}},
		{"longest line", strings.NewReader(most + "\nquit\n"), []string{most, "quit"}},
		{"longest line with crlf", strings.NewReader(most + "\r\nquit\n"), []string{most, "quit"}},
		{"one byte too long with crlf", strings.NewReader(most + "z\r\nquit\n"), []string{"error: input line 1: longer", "quit"}},
		{"read error", io.MultiReader(strings.NewReader("status\n"), iotest.ErrReader(errors.New("device gone"))),
			[]string{"status", "error: reading input line 2: device gone"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines := make(chan simInput)
			go readSimInput(context.Background(), tc.in, lines)
			var got []string
			for l := range lines {
				if l.err != nil {
					got = append(got, "error: "+l.err.Error())
					continue
				}
				got = append(got, l.text)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d lines, want %d: %.200q", len(got), len(tc.want), got)
			}
			for i := range got {
				if got[i] != tc.want[i] && !(strings.HasPrefix(tc.want[i], "error: ") && strings.HasPrefix(got[i], tc.want[i])) {
					t.Errorf("line %d: %.200q, want %.200q", i+1, got[i], tc.want[i])
				}
			}
		})
	}
}

// readSimInput stops when its context ends, with a line not taken.
func TestReadSimInputStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	lines := make(chan simInput)
	done := make(chan struct{})
	go func() {
		readSimInput(ctx, strings.NewReader("status\nstatus\n"), lines)
		close(done)
	}()
	<-lines
	cancel()
	<-done
}
