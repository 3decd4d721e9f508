package fsfiles

import (
	"slices"
	"strings"
)

// link is one name of an inode: the entry name in directory parent.
type link struct {
	parent uint64
	name   string
}

// node is what the name index knows of an inode: its type (a d_type: DT_DIR,
// DT_REG...) and its names.
type node struct {
	typ   uint8
	links []link
}

// Directory entry types (d_type, from <dirent.h>).
const (
	dtUnknown = 0
	dtDir     = 4
	dtReg     = 8
	dtLnk     = 10
)

// names maps inodes to their names and directory entries to inodes, for
// one filesystem whose root directory is inode root. Directories have one
// name (their entry in their parent); other inodes as many as they have
// hard links. It is not safe for concurrent use.
type names struct {
	root  uint64
	nodes map[uint64]*node
	kids  map[link]uint64
}

func newNames(root uint64, sizeHint int) *names {
	n := &names{root: root, nodes: make(map[uint64]*node, sizeHint), kids: make(map[link]uint64, sizeHint)}
	n.nodes[root] = &node{typ: dtDir}
	return n
}

// add records that parent holds the entry name for inode ino of type typ,
// replacing whatever that entry named before (as rename(2) does).
func (n *names) add(parent uint64, name string, ino uint64, typ uint8) {
	l := link{parent, name}
	if old, ok := n.kids[l]; ok {
		if old == ino {
			if nd := n.nodes[ino]; nd != nil && typ != dtUnknown {
				nd.typ = typ
			}
			return
		}
		n.remove(parent, name)
	}
	n.kids[l] = ino
	nd := n.nodes[ino]
	if nd == nil {
		nd = &node{typ: typ}
		n.nodes[ino] = nd
	} else if typ != dtUnknown {
		nd.typ = typ
	}
	if typ == dtDir || nd.typ == dtDir {
		nd.links = nd.links[:0] // a directory has one name
	}
	nd.links = append(nd.links, l)
}

// remove forgets the entry name of parent and returns the inode it named
// (0 if none). An inode left without names keeps its node (it may still be
// open) until forget.
func (n *names) remove(parent uint64, name string) uint64 {
	l := link{parent, name}
	ino, ok := n.kids[l]
	if !ok {
		return 0
	}
	delete(n.kids, l)
	if nd := n.nodes[ino]; nd != nil {
		nd.links = slices.DeleteFunc(nd.links, func(x link) bool { return x == l })
	}
	return ino
}

// forget drops an inode that has no names left.
func (n *names) forget(ino uint64) {
	if nd := n.nodes[ino]; nd != nil && len(nd.links) == 0 && ino != n.root {
		delete(n.nodes, ino)
	}
}

// typeOf returns the d_type recorded for ino and whether ino is known.
func (n *names) typeOf(ino uint64) (uint8, bool) {
	nd := n.nodes[ino]
	if nd == nil {
		return dtUnknown, false
	}
	return nd.typ, true
}

// paths returns every path of ino relative to the filesystem's root
// ("dir/file", "" for the root itself), sorted. A name whose directory
// chain does not reach the root (a directory removed under it, or a loop
// the index should never hold) is left out.
func (n *names) paths(ino uint64, dirCache map[uint64]string) []string {
	if ino == n.root {
		return []string{""}
	}
	nd := n.nodes[ino]
	if nd == nil {
		return nil
	}
	out := make([]string, 0, len(nd.links))
	for _, l := range nd.links {
		dir, ok := n.dirPath(l.parent, dirCache)
		if !ok {
			continue
		}
		if dir == "" {
			out = append(out, l.name)
		} else {
			out = append(out, dir+"/"+l.name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// maxDepth bounds the directory chain followed to the root.
const maxDepth = 4096

// dirPath returns the path of directory ino relative to the root.
func (n *names) dirPath(ino uint64, cache map[uint64]string) (string, bool) {
	var chain []string
	cur := ino
	for depth := 0; ; depth++ {
		if cur == n.root {
			break
		}
		if p, ok := cache[cur]; ok {
			chain = append(chain, p)
			break
		}
		nd := n.nodes[cur]
		if nd == nil || len(nd.links) == 0 || depth > maxDepth {
			return "", false
		}
		chain = append(chain, nd.links[0].name)
		cur = nd.links[0].parent
	}
	slices.Reverse(chain)
	p := strings.Join(chain, "/")
	if cache != nil {
		cache[ino] = p
	}
	return p, true
}

// len returns how many inodes the index knows.
func (n *names) len() int { return len(n.nodes) }
