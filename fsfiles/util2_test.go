package fsfiles

import "golang.org/x/sys/unix"

var unixClose = unix.Close
