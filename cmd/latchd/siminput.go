package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
)

// maxSimInputLine is the longest input line the simulator reads whole, in
// bytes without the line ending; a longer one is reported and skipped.
// (A command is far shorter: parseSimCmd refuses one over maxSimLine.)
const maxSimInputLine = 64 << 10

// simInput is one line of the simulator's standard input: a command line,
// or the error that stands in its place.
type simInput struct {
	text string // the line without its line ending
	err  error  // the line was not taken (too long), or reading failed
}

// readSimInput sends the lines of r to lines until r ends or ctx is done,
// then closes lines. An over-long line is sent as an error naming its
// number, and reading goes on with the next line; a read error other than
// the end of the input is sent as an error, and reading stops.
func readSimInput(ctx context.Context, r io.Reader, lines chan<- simInput) {
	defer close(lines)
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		text, long, err := readLine(br, maxSimInputLine)
		var in simInput
		switch {
		case errors.Is(err, io.EOF):
			return
		case err != nil:
			in.err = fmt.Errorf("reading input line %d: %w", n, err)
		case long:
			in.err = fmt.Errorf("input line %d: longer than %d bytes; skipped", n, maxSimInputLine)
		default:
			in.text = text
		}
		select {
		case lines <- in:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// readLine reads one line from r and returns it without its line ending
// ("\n" or "\r\n"). A line over limit bytes is read to its end but not
// kept: long is true and line is empty. The last line may lack a line
// ending; err is set only when no byte of a line was read (io.EOF at the
// end of the input).
func readLine(r *bufio.Reader, limit int) (line string, long bool, err error) {
	var b []byte
	read := false
	for {
		chunk, err := r.ReadSlice('\n')
		read = read || len(chunk) > 0
		if !long {
			b = append(b, chunk...)
			// Past limit and a "\r\n", the line is too long whatever comes.
			if len(b) > limit+2 {
				long, b = true, nil
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil && !read:
			return "", false, err
		}
		if !long {
			b = bytes.TrimSuffix(b, []byte("\n"))
			b = bytes.TrimSuffix(b, []byte("\r"))
			long = len(b) > limit
		}
		if long {
			return "", true, nil
		}
		return string(b), false, nil
	}
}
