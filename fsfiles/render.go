package fsfiles

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/daxstack/daxstack/extent"
)

// FileRow is one file range under one of the file's names, the shape of
// the entries of an event's "files" and of the files report: bytes of
// the file, "stride" and "count" only for a strided range (count copies
// of length bytes every stride bytes), as daxstack's sector runs are
// written.
type FileRow struct {
	Path      string  `json:"path"`
	Inode     uint64  `json:"inode"`
	Offset    uint64  `json:"offset"`
	Length    uint64  `json:"length"`
	Stride    *uint64 `json:"stride,omitempty"`
	Count     *uint64 `json:"count,omitempty"`
	Unwritten bool    `json:"unwritten,omitempty"`
	Deleted   bool    `json:"deleted,omitempty"`
	OpenBy    []int   `json:"open_by,omitempty"`
}

// MetadataRow is a metadata range: its kind, the file it belongs to when
// known, and device sectors (offset, length, and stride and count for a
// strided run, as in the badblocks report).
type MetadataRow struct {
	Kind   Kind    `json:"kind"`
	Path   string  `json:"path,omitempty"`
	Inode  uint64  `json:"inode,omitempty"`
	Detail string  `json:"detail,omitempty"`
	Offset uint64  `json:"offset"`
	Length uint64  `json:"length"`
	Stride *uint64 `json:"stride,omitempty"`
	Count  *uint64 `json:"count,omitempty"`
}

// Report is the JSON of a lookup: file rows (bytes), metadata rows and
// free runs (sectors), and files_truncated when entries were left out.
type Report struct {
	Mount          string        `json:"mount"`
	FSType         string        `json:"fstype"`
	Method         string        `json:"method"`
	Files          []FileRow     `json:"files"`
	Metadata       []MetadataRow `json:"metadata"`
	Free           []extent.Run  `json:"free"`
	FilesTruncated bool          `json:"files_truncated,omitempty"`
}

// FileRows returns the file ranges as rows, one per name of each file (a
// file with two hard links gives two rows for each range; an unlinked
// file one row with its last path and Deleted), at most max rows (0: all).
// truncated is true when rows were left out here or by the lookup.
func (r Result) FileRows(max int) (rows []FileRow, truncated bool) {
	rows = []FileRow{}
	for _, f := range r.Files {
		names := f.Paths
		if len(names) == 0 {
			names = []string{""}
		}
		for _, p := range names {
			if max > 0 && len(rows) == max {
				return rows, true
			}
			row := FileRow{Path: p, Inode: f.Inode, Offset: f.Offset, Length: f.Length, Unwritten: f.Unwritten, Deleted: f.Deleted, OpenBy: f.OpenBy}
			if f.Count > 1 {
				s, c := f.Stride, f.Count
				row.Stride, row.Count = &s, &c
			}
			rows = append(rows, row)
		}
	}
	return rows, r.Truncated
}

// Report returns the JSON shape of r with at most max file rows (0: all).
func (r Result) Report(max int) Report {
	files, trunc := r.FileRows(max)
	rep := Report{Mount: r.Mount, FSType: r.FSType, Method: r.Method, Files: files, Metadata: []MetadataRow{},
		Free: append([]extent.Run{}, r.Free...), FilesTruncated: trunc}
	for _, m := range r.Metadata {
		row := MetadataRow{Kind: m.Kind, Path: m.Path, Inode: m.Inode, Detail: m.Detail, Offset: m.Sectors.Start, Length: m.Sectors.Len}
		if m.Sectors.Count > 1 {
			s, c := m.Sectors.Stride, m.Sectors.Count
			row.Stride, row.Count = &s, &c
		}
		rep.Metadata = append(rep.Metadata, row)
	}
	return rep
}

// WriteText writes r for people, one line per file name, metadata range
// and free range, tab-separated:
//
//	file	/mnt/dir/a	inode 131	bytes 0+4096
//	file	/mnt/b (deleted, open by pid 812)	inode 135	bytes 8192+4096
//	metadata	directory /mnt/dir	inode 132	sectors 120+8
//	metadata	journal	sectors 409656+8
//	free	sectors 1000+8
//
// A strided range is written start+length*count/stride. A name with a
// control character (a tab, a newline) or not UTF-8 is quoted. A last line
// "(truncated)" says entries were left out.
func (r Result) WriteText(w io.Writer) error { return r.Report(0).WriteText(w) }

// WriteText writes the report for people, as Result.WriteText does (the
// report holds all it says: a client of the daemon writes the same text).
func (rep Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	for _, f := range rep.Files {
		name := textName(f.Path)
		switch {
		case f.Deleted && len(f.OpenBy) == 0:
			name = strings.TrimSpace(name + " (deleted, being freed)")
		case f.Deleted:
			name = strings.TrimSpace(name + " (deleted, open by " + pidList(f.OpenBy) + ")")
		case f.Path == "":
			name = "(no name)"
		}
		extra := ""
		if f.Unwritten {
			extra = "\tunwritten"
		}
		fmt.Fprintf(bw, "file\t%s\tinode %d\tbytes %s%s\n", name, f.Inode, runText(f.Offset, f.Length, deref(f.Stride), deref(f.Count)), extra)
	}
	for _, m := range rep.Metadata {
		what := string(m.Kind)
		if m.Path != "" {
			what += " " + textName(m.Path)
		}
		if m.Inode != 0 {
			what += "\tinode " + strconv.FormatUint(m.Inode, 10)
		}
		if m.Detail != "" {
			what += "\t(" + m.Detail + ")"
		}
		fmt.Fprintf(bw, "metadata\t%s\tsectors %s\n", what, runText(m.Offset, m.Length, deref(m.Stride), deref(m.Count)))
	}
	for _, s := range rep.Free {
		fmt.Fprintf(bw, "free\tsectors %s\n", runText(s.Start, s.Len, s.Stride, s.Count))
	}
	if rep.FilesTruncated {
		fmt.Fprintln(bw, "(truncated)")
	}
	return bw.Flush()
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// textName writes a path as it is, or quoted (Go syntax) when it holds a
// control character or is not UTF-8, so that a name cannot forge lines
// or columns of the text.
func textName(p string) string {
	if utf8.ValidString(p) && !strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return p
	}
	return strconv.Quote(p)
}

func runText(start, length, stride, count uint64) string {
	if count > 1 {
		return fmt.Sprintf("%d+%d*%d/%d", start, length, count, stride)
	}
	return fmt.Sprintf("%d+%d", start, length)
}

func pidList(pids []int) string {
	if len(pids) == 0 {
		return "no process"
	}
	parts := make([]string, len(pids))
	for i, p := range pids {
		parts[i] = strconv.Itoa(p)
	}
	if len(pids) == 1 {
		return "pid " + parts[0]
	}
	return "pids " + strings.Join(parts, ",")
}
