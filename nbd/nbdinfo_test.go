package nbd_test

import (
	"testing"

	"github.com/daxstack/daxstack/nbd/nbdtest"
)

func TestNbdinfoSmoke(t *testing.T) {
	srv, _, _ := memServer(t, 1<<20, nbdtest.Options{Description: "a test device"})
	sock := serve(t, srv)
	t.Log(run(t, "nbdinfo", unixURI(sock, "mem")))
	t.Log(run(t, "nbdinfo", "--list", unixURI(sock, "")))
	t.Log(run(t, "nbdinfo", "--map", unixURI(sock, "mem")))
}
