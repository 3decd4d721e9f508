package fsfiles

import (
	"context"
	"os"
	"testing"

	"github.com/daxstack/daxstack/extent"
)

func TestSmoke(t *testing.T) {
	for _, kind := range []string{"ext4", "xfs", "xfs-rmap"} {
		t.Run(kind, func(t *testing.T) {
			f := newTestFS(t, kind, 400)
			f.write("data", 64<<10)
			os.Mkdir(f.path("d"), 0o755)
			f.write("d/a", 8192)
			f.sync()
			pl := f.placement("data")
			t.Logf("data: %+v", pl)
			fs, err := Open(f.major, f.minor)
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			t.Logf("caps %+v", fs.caps)
			s := pl[0].Sector + 9
			res, err := fs.Lookup(context.Background(), extent.Of(extent.Extent{Start: s, Len: 2}), 0)
			if err != nil {
				t.Fatal(err)
			}
			res.WriteText(os.Stderr)
			js := f.journalSector()
			res, err = fs.Lookup(context.Background(), extent.Of(extent.Extent{Start: js, Len: 2}, extent.Extent{Start: f.freeSector(), Len: 1}), 0)
			if err != nil {
				t.Fatal(err)
			}
			res.WriteText(os.Stderr)
			res, err = fs.Lookup(context.Background(), extent.Of(extent.Extent{Start: 0, Len: fs.sectors}), 40)
			if err != nil {
				t.Fatal(err)
			}
			res.WriteText(os.Stderr)
		})
	}
}
