//go:build !amd64

package dax

func cpuFlushKind() int { return flushNone }

func flushLines(p, n uintptr, kind int) {}
