package main

import (
	"context"
	"io"
)

// ctxReader reads r until ctx ends: main turns SIGINT and SIGTERM into
// the end of ctx, and a read of a terminal or a pipe that never delivers
// must not make a command uninterruptible. A read in progress when ctx
// ends is abandoned (the process is about to exit); every later Read
// fails with ctx's error.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	buf []byte
}

type readResult struct {
	n   int
	err error
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	buf := c.buf[:len(p)]
	done := make(chan readResult, 1)
	go func() {
		n, err := c.r.Read(buf)
		done <- readResult{n, err}
	}()
	select {
	case res := <-done:
		return copy(p, buf[:res.n]), res.err
	case <-c.ctx.Done():
		c.buf = nil // the abandoned read may still write into it
		return 0, c.ctx.Err()
	}
}
