// Package all registers every target daxstack has (linear, striped,
// error, zero, dust, flakey, delay) with the stack package. A program that drives tables, and
// every test that loads them, imports it for its side effect:
//
//	import _ "github.com/daxstack/daxstack/targets/all"
//
// It exists so that adding a target means adding it here once, not to
// each program and test package that should know it.
package all

import (
	_ "github.com/daxstack/daxstack/targets/delay"
	_ "github.com/daxstack/daxstack/targets/dust"
	_ "github.com/daxstack/daxstack/targets/error"
	_ "github.com/daxstack/daxstack/targets/flakey"
	_ "github.com/daxstack/daxstack/targets/linear"
	_ "github.com/daxstack/daxstack/targets/stripe"
	_ "github.com/daxstack/daxstack/targets/zero"
)
