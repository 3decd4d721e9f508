package nbd

import (
	"encoding/binary"
	"errors"
	"strings"
	"unicode/utf8"
)

// The pure parts of option haggling: parsing option data and matching
// meta context queries. They are shared by the server and the client and
// fuzzed on their own.

var errInvalid = errors.New("invalid option data")

// validString reports whether s follows the spec's rules for strings:
// UTF-8, no NUL, at most 4096 bytes.
func validString(s string) bool {
	return len(s) <= maxString && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// infoRequest is the data of NBD_OPT_INFO and NBD_OPT_GO.
type infoRequest struct {
	name  string
	infos []uint16
}

// parseInfoRequest parses the data of NBD_OPT_INFO or NBD_OPT_GO:
// 32-bit name length, name, 16-bit count, count 16-bit NBD_INFO types.
func parseInfoRequest(data []byte) (infoRequest, error) {
	var r infoRequest
	if len(data) < 6 {
		return r, errInvalid
	}
	n := binary.BigEndian.Uint32(data)
	if uint64(n) > uint64(len(data)-6) {
		return r, errInvalid
	}
	r.name = string(data[4 : 4+n])
	rest := data[4+n:]
	count := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*count {
		return r, errInvalid
	}
	if !validString(r.name) {
		return r, errInvalid
	}
	r.infos = make([]uint16, count)
	for i := range r.infos {
		r.infos[i] = binary.BigEndian.Uint16(rest[2*i:])
	}
	return r, nil
}

func (r infoRequest) wants(info uint16) bool {
	for _, i := range r.infos {
		if i == info {
			return true
		}
	}
	return false
}

// appendInfoRequest is the client's side of parseInfoRequest.
func appendInfoRequest(b []byte, name string, infos ...uint16) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(infos)))
	for _, i := range infos {
		b = binary.BigEndian.AppendUint16(b, i)
	}
	return b
}

// metaRequest is the data of NBD_OPT_LIST_META_CONTEXT and
// NBD_OPT_SET_META_CONTEXT.
type metaRequest struct {
	name    string
	queries []string
}

// parseMetaRequest parses 32-bit export name length, name, 32-bit query
// count, then each query as 32-bit length and string. A query must start
// with a namespace and a colon; the spec lets a server refuse one that
// does not, and so does this one.
func parseMetaRequest(data []byte) (metaRequest, error) {
	var r metaRequest
	if len(data) < 8 {
		return r, errInvalid
	}
	n := binary.BigEndian.Uint32(data)
	if uint64(n) > uint64(len(data)-8) {
		return r, errInvalid
	}
	r.name = string(data[4 : 4+n])
	if !validString(r.name) {
		return r, errInvalid
	}
	rest := data[4+n:]
	count := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	// Each query takes at least 4 bytes: a count that cannot fit is a
	// lie, refused before anything is allocated for it.
	if uint64(count) > uint64(len(rest))/4 {
		return r, errInvalid
	}
	r.queries = make([]string, 0, count)
	for range count {
		if len(rest) < 4 {
			return r, errInvalid
		}
		q := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(q) > uint64(len(rest)) {
			return r, errInvalid
		}
		s := string(rest[:q])
		rest = rest[q:]
		if !validString(s) || !strings.Contains(s, ":") || strings.IndexByte(s, ':') == 0 {
			return r, errInvalid
		}
		r.queries = append(r.queries, s)
	}
	if len(rest) != 0 {
		return r, errInvalid
	}
	return r, nil
}

func appendMetaRequest(b []byte, name string, queries []string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(name)))
	b = append(b, name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(queries)))
	for _, q := range queries {
		b = binary.BigEndian.AppendUint32(b, uint32(len(q)))
		b = append(b, q...)
	}
	return b
}

// namespace returns the namespace of a context name or query (before the
// first colon) and its leaf name.
func namespace(s string) (ns, leaf string) {
	ns, leaf, _ = strings.Cut(s, ":")
	return ns, leaf
}

// matchMeta returns the contexts of available that queries select, each
// once, in the order of available. With list (NBD_OPT_LIST_META_CONTEXT)
// no queries select all, and a query with an empty leaf name ("base:",
// "daxstack:") selects every context of its namespace; for
// NBD_OPT_SET_META_CONTEXT only a full name selects (the spec: "base:"
// MUST be ignored there, and no queries select nothing). Queries of
// unknown namespaces or names are ignored, as the spec requires.
func matchMeta(available, queries []string, list bool) []string {
	var out []string
	for _, c := range available {
		if list && len(queries) == 0 {
			out = append(out, c)
			continue
		}
		cns, _ := namespace(c)
		for _, q := range queries {
			qns, leaf := namespace(q)
			if q == c || (list && leaf == "" && qns == cns) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}
