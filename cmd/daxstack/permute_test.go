package main

import (
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// TestPermute checks how command lines are read: options anywhere,
// getopt_long's abbreviations, bundles and attached values, dmsetup's
// options dropped or refused, unknown verbs and options refused.
func TestPermute(t *testing.T) {
	tests := []struct {
		name string
		dm   bool // invoked as dmsetup
		in   string
		want string // the rewritten command line, or "ERR: <message>"
	}{
		{"options after names", false, "create x --table t", "create --table t -- x"},
		{"global after the verb", false, "ls --db f", "--db f ls"},
		{"global before the verb", false, "--db f ls x", "--db f ls -- x"},
		{"inline value", false, "create x --table=t", "create --table t -- x"},
		{"double dash keeps options as names", false, "info -- -c", "info -- -c"},
		{"abbreviation of a verb option", false, "create x --tab t", "create --table t -- x"},
		{"abbreviation of a dmsetup option", false, "info -c --mangle none x", "info -c -- x"},
		{"abbreviation of a global", false, "ls --no-d", "--no-daemon ls"},
		{"exact name wins over longer ones", false, "remove --force x", "remove --force -- x"},
		{"short alias of the verb", false, "create x -u U", "create -u U -- x"},
		{"attached short value", false, "info -c -oname x", "info -c -o name -- x"},
		{"bundled shorts", false, "info -cv x", "info -c -- x"},
		{"bundle ending in a value", false, "info -coname x", "info -c -o name -- x"},
		{"dmsetup options ignored", false, "create x --noudevsync -y --readahead 256 --verifyudev --table t",
			"create --table t -- x"},
		{"dmsetup option before the verb", false, "--noudevsync -v --verifyudev remove x", "remove --noudevsync -- x"},
		{"short -v takes no value", false, "-v ls", "ls"},
		{"long --verbose takes one", false, "--verbose 2 ls", "ls"},
		{"udev cookie value", false, "remove --udevcookie 0x0d4d1234 x", "remove -- x"},
		{"the verb's own -n", false, "read x -s 0 -n 4", "read -s 0 -n 4 -- x"},
		{"help", false, "create --help", "create --help"},
		{"version", false, "--version", "--version"},

		{"unknown verb", false, "creat x", `ERR: unknown command "creat" (see 'daxstack help')`},
		{"unknown verb as dmsetup", true, "creat x", "ERR: Unknown command"},
		{"daxstack verb as dmsetup", true, "map x 0", "ERR: Unknown command"},
		{"unknown long option", false, "create x --bogus", "ERR: unrecognized option '--bogus'"},
		{"unknown short option", false, "ls -q", "ERR: invalid option -- 'q'"},
		{"ambiguous abbreviation", false, "info --nou", "ERR: option '--nou' is ambiguous; possibilities: --noudevrules --noudevsync"},
		{"missing value", false, "create x --table", "ERR: option '--table' requires an argument"},
		{"value on a switch", false, "remove --force=1 x", "ERR: option '--force' doesn't allow an argument"},
		{"uuid refused where it names the device", false, "info -u U", "ERR: --uuid: naming a device by UUID is not supported; name it"},
		{"major refused", false, "info -j 254 -m 0", "ERR: --major: naming a device by number is not supported; name it"},
		{"count refused", false, "info -c --count 3", "ERR: --count: repeated reports are not supported"},
		{"bad mangling mode", false, "info --manglename x", "ERR: Unknown name mangling mode."},
		{"daxstack global as dmsetup", true, "ls --db f", "ERR: unrecognized option '--db'"},
		{"daxstack option as dmsetup", true, "info --reportformat json", "ERR: unrecognized option '--reportformat'"},
		{"dmsetup's own as dmsetup", true, "info -c --noheadings -o major,minor x", "info -c --noheadings -o major,minor -- x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			argv0 := "daxstack"
			if tc.dm {
				argv0 = "/tmp/bin/dmsetup"
			}
			app := newApp(strings.NewReader(""), io.Discard, io.Discard, tc.dm)
			out, err := permute(app, append([]string{argv0}, strings.Fields(tc.in)...))
			got := ""
			if err != nil {
				got = "ERR: " + err.Error()
			} else {
				got = strings.Join(out[1:], " ")
			}
			if got != tc.want {
				t.Errorf("%s\n got %s\nwant %s", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzPermute: no command line makes the option reader panic, and what it
// passes on keeps every positional argument, in order.
func FuzzPermute(f *testing.F) {
	for _, s := range []string{
		"create x --table t", "info -conname x", "--db f ls", "-v", "-", "--", "info -- -c",
		"--no", "-oname", "create --table= x", "ls -vyq", "remove --udevcookie",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, line string, dm bool) {
		args := append([]string{"daxstack"}, strings.Fields(line)...)
		app := newApp(strings.NewReader(""), io.Discard, io.Discard, dm)
		out, err := permute(app, args)
		if err != nil {
			var oe optionError
			var ue usageError
			if !errors.As(err, &oe) && !errors.As(err, &ue) {
				t.Fatalf("%q: error of type %T: %v", line, err, err)
			}
			return
		}
		if len(out) == 0 || out[0] != "daxstack" {
			t.Fatalf("%q: rewritten as %q", line, out)
		}
		// Every positional argument after "--" was a positional of the
		// input, in order.
		if i := slices.Index(out, "--"); i >= 0 {
			rest := args[1:]
			for _, p := range out[i+1:] {
				j := slices.Index(rest, p)
				if j < 0 {
					t.Fatalf("%q: positional %q not in the input (%q)", line, p, out)
				}
				rest = rest[j+1:]
			}
		}
	})
}

func TestLocaleUTF8(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"LANG": "C"}, false},
		{map[string]string{"LANG": "POSIX"}, false},
		{map[string]string{"LANG": "C.UTF-8"}, true},
		{map[string]string{"LANG": "en_US.utf8"}, true},
		{map[string]string{"LANG": "de_DE.UTF-8@euro"}, true},
		{map[string]string{"LANG": "en_US.ISO-8859-1"}, false},
		{map[string]string{"LANG": "en_US"}, false},
		// The first of LC_ALL, LC_CTYPE, LANG that is set decides.
		{map[string]string{"LC_ALL": "C", "LANG": "C.UTF-8"}, false},
		{map[string]string{"LC_CTYPE": "C.UTF-8", "LANG": "C"}, true},
		{map[string]string{"LC_ALL": "C.UTF-8", "LC_CTYPE": "C"}, true},
		{map[string]string{"LC_CTYPE": "C", "LANG": "C.UTF-8"}, false},
	}
	for _, tc := range tests {
		if got := localeUTF8(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestLiteralNewline(t *testing.T) {
	tests := []struct {
		text string
		want int
	}{
		{"0 8 zero", 0},
		{"0 8 zero\n8 8 zero", 0},
		{`0 8 zero\n8 8 zero`, 1},
		{"0 8 zero\n" + `8 8 zero\n16 8 zero`, 2},
		{`0 8 linear /a\ b 0`, 0},
	}
	for _, tc := range tests {
		if got := literalNewline(tc.text); got != tc.want {
			t.Errorf("%q: line %d, want %d", tc.text, got, tc.want)
		}
	}
}
