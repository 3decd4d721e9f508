package nbdleaf

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/daxstack/daxstack/nbd"
)

// Kind is the leaf kind NBD leaves report (Leaf.Kind, Identity.Kind).
const Kind = "nbd"

// SectorSize is the size of a sector in bytes.
const SectorSize = 512

// IDPrefix starts the ID of every NBD leaf: "nbd:" and the canonical URI.
const IDPrefix = "nbd:"

// schemes are the URI schemes of nbd.ParseURI, each with "://".
var schemes = []string{"nbd://", "nbd+tcp://", "nbds://", "nbds+tcp://", "nbd+unix://", "nbds+unix://"}

// IsRef reports whether a table reference is meant as an NBD URI (it
// starts with one of the NBD schemes, in any case), so that the engine's
// leaf opener sends it here rather than to the dax package. It does not
// say the URI is valid: Canonical does.
func IsRef(ref string) bool {
	for _, s := range schemes {
		if len(ref) >= len(s) && strings.EqualFold(ref[:len(s)], s) {
			return true
		}
	}
	return false
}

// Canonical parses an NBD URI in qemu's syntax and returns it in
// canonical form, the form tables print and identities hold:
//
//	nbd://HOST:PORT/EXPORT                (nbd+tcp:// is read as nbd://; port 10809 by default)
//	nbds://HOST:PORT/EXPORT               (TLS)
//	nbd+unix:///EXPORT?socket=/abs/path   (nbds+unix:// with TLS)
//
// A unix socket's path must be absolute: a reference is kept and dialled
// again later, by a daemon whose working directory is not the caller's.
// Errors match ErrNotRef.
func Canonical(ref string) (string, error) {
	u, err := parse(ref)
	if err != nil {
		return "", err
	}
	return u.String(), nil
}

func parse(ref string) (*nbd.URI, error) {
	if !IsRef(ref) {
		return nil, fmt.Errorf("%w: %q", ErrNotRef, ref)
	}
	u, err := nbd.ParseURI(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotRef, err)
	}
	if u.Network == "unix" {
		if !filepath.IsAbs(u.Address) {
			return nil, fmt.Errorf("%w: %q: the socket path must be absolute", ErrNotRef, ref)
		}
		u.Address = filepath.Clean(u.Address)
	}
	return u, nil
}

// Identity is what says whether the export a server offers now is the
// leaf that was recorded: the canonical URI, the export's size in bytes
// and its description (NBD_INFO_DESCRIPTION; daxstack's own server sends
// the device's UUID there). It is comparable and marshals to JSON for the
// store; Kind is always "nbd", so a reader of stored identities can tell
// it from a dax.Identity.
type Identity struct {
	Kind        string `json:"kind"`
	URI         string `json:"uri"`
	Size        int64  `json:"size"` // bytes, as the server gave it
	Description string `json:"description,omitempty"`
}

// Same reports whether b, an identity seen now, is the export a was: the
// same canonical URI, size and description. NBD has no other witness, so
// a different server behind the same address with an export of the same
// size and no description (nbdkit and qemu-nbd send none unless told to)
// is taken as the same leaf; daxstack's own server sends the device's
// UUID, which tells its devices apart.
func (a Identity) Same(b Identity) bool {
	if a.Kind != Kind || b.Kind != Kind || a.Size < 0 || a.Size != b.Size || a.Description != b.Description {
		return false
	}
	ua, err1 := Canonical(a.URI)
	ub, err2 := Canonical(b.URI)
	return err1 == nil && err2 == nil && ua == ub
}

func (a Identity) describe() string {
	s := strconv.FormatInt(a.Size, 10) + " bytes"
	if a.Description != "" {
		s += ", description " + strconv.Quote(a.Description)
	} else {
		s += ", no description"
	}
	return s
}

// ParseIdentity reads an identity as the store keeps it (the JSON of an
// Identity). It is strict, as it reads what a damaged file may hold: the
// kind must be "nbd", the URI an NBD URI (returned canonical), the size
// not negative; unknown fields are refused.
func ParseIdentity(b []byte) (Identity, error) {
	var id Identity
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&id); err != nil {
		return Identity{}, fmt.Errorf("nbdleaf: identity: %w", err)
	}
	if dec.More() {
		return Identity{}, fmt.Errorf("nbdleaf: identity: data after the object")
	}
	if id.Kind != Kind {
		return Identity{}, fmt.Errorf("nbdleaf: identity: kind %q is not %q", id.Kind, Kind)
	}
	if id.Size < 0 {
		return Identity{}, fmt.Errorf("nbdleaf: identity: negative size %d", id.Size)
	}
	c, err := Canonical(id.URI)
	if err != nil {
		return Identity{}, fmt.Errorf("nbdleaf: identity: %w", err)
	}
	id.URI = c
	return id, nil
}
