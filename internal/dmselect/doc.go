// Package dmselect is the selection and sorting language of dmsetup's
// reports: the expressions of `dmsetup info -c -S/--select` and the keys of
// `-O/--sort`, as libdm's report engine reads them, so that lvm2's test
// library and other scripts that probe devices this way get the same rows.
//
// The nouns: a Field is a report column with a Kind (string or number); a
// Row gives a device's value of any field; a Selection is a parsed
// expression that Matches rows; SortKeys order rows.
//
// The grammar is libdm's:
//
//	EXPR  := AND ( ("||" | "#") AND )*
//	AND   := TERM ( ("&&" | ",") TERM )*
//	TERM  := "!" "(" EXPR ")" | "(" EXPR ")" | FIELD OP VALUE
//	OP    := "=~" | "!~" | "=" | "!=" | ">=" | ">" | "<=" | "<"
//
// A string value is quoted with ' or " or runs unquoted to a space, a
// logical operator or ")"; a regular expression may also be enclosed in
// ( ), { } or [ ], and matches anywhere in the value; the ordering
// operators take numeric fields only. Errors carry libdm's words ("Selection
// syntax error at '...'.").
package dmselect
