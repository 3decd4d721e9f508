package main

import (
	"sort"
	"strings"
)

// dmsetup's options: every long option of dmsetup 1.02 (getopt_long, so
// any unambiguous prefix also names it) and its short letters. A verb that
// defines an option of the same name uses it; given to a verb that does
// not, an option dmsetup knows is accepted and ignored (dmsetup itself
// ignores most options outside the verbs that read them), except those in
// dmRefused, which would change what the command acts on or prints.
type dmOpt struct {
	value bool // takes an argument
}

var dmLongOpts = map[string]dmOpt{
	"readonly": {}, "alias": {true}, "alldevices": {}, "allprograms": {}, "allregions": {},
	"area": {}, "areas": {true}, "areasize": {true}, "bounds": {true}, "checks": {},
	"clear": {}, "columns": {}, "concise": {}, "count": {true}, "deferred": {},
	"select": {true}, "exec": {true}, "filemap": {}, "follow": {true}, "force": {},
	"foreground": {}, "gid": {true}, "group": {}, "groupid": {true}, "help": {},
	"histogram": {}, "inactive": {}, "interval": {true}, "length": {true},
	"manglename": {true}, "major": {true}, "minor": {true}, "mode": {true},
	"nameprefixes": {}, "nogroup": {}, "noflush": {}, "noheadings": {}, "nolockfs": {},
	"noopencount": {}, "nosuffix": {}, "notable": {}, "notimesuffix": {},
	"udevcookie": {true}, "nomonitor": {}, "noudevrules": {}, "noudevsync": {},
	"options": {true}, "precise": {}, "programid": {true}, "raw": {}, "readahead": {true},
	"region": {}, "regions": {true}, "regionid": {true}, "relative": {}, "retry": {},
	"rows": {}, "segments": {}, "separator": {true}, "setuuid": {}, "showkeys": {},
	"sort": {true}, "start": {true}, "table": {true}, "target": {true}, "tree": {},
	"uid": {true}, "units": {true}, "uuid": {true}, "unbuffered": {}, "unquoted": {},
	"userdata": {true}, "verbose": {true}, "verifyudev": {}, "version": {}, "yes": {},
	"addnodeonresume": {}, "addnodeoncreate": {},
}

// dmShortOpts maps dmsetup's short letters to their long options
// (getopt's "cCfG:hj:m:M:no:O:rS:u:U:vy").
var dmShortOpts = map[string]string{
	"c": "columns", "C": "columns", "f": "force", "G": "gid", "h": "help", "j": "major",
	"m": "minor", "M": "mode", "n": "notable", "o": "options", "O": "sort", "r": "readonly",
	"S": "select", "u": "uuid", "U": "uid", "v": "verbose", "y": "yes",
}

// dmShortValue reports whether a short letter takes a value (-v does not,
// although --verbose does).
func dmShortValue(letter string) bool { return strings.Contains("GjmMoOSuU", letter) }

// dmRefused are dmsetup options that mean something daxstack does not do:
// ignoring them would act on other devices (-u/-j/-m name a device by
// UUID or number) or print something else than asked. The value is why.
var dmRefused = map[string]string{
	"uuid":     "naming a device by UUID is not supported; name it",
	"major":    "naming a device by number is not supported; name it",
	"minor":    "naming a device by number is not supported; name it",
	"count":    "repeated reports are not supported",
	"interval": "repeated reports are not supported",
	"rows":     "reports as rows are not supported",
}

// dmIgnoredList returns the dmsetup options accepted and ignored by a verb
// that does not define them (for the README and the tests).
func dmIgnoredList() []string {
	var out []string
	for n := range dmLongOpts {
		if _, ok := dmRefused[n]; !ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
