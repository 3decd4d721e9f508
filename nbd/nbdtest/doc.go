// Package nbdtest holds what tests of NBD servers and clients share: an
// export directory that can change under a running server (Dir), two
// storage devices with injectable bad ranges (Mem in memory, File on a
// regular file), and x509 certificates made on the spot for TLS (Certs).
//
// A device hands every connection a handle of its own (Handle), the way
// daxstack's engine hands out I/O handles: removing an export from a Dir
// makes its open handles fail with nbd.ErrExportGone. Bad ranges fail
// reads with EIO at their first byte, exactly (the good bytes before them
// are returned), and show in the meta context BadContext with flag 1; a
// write clears the bad bytes it covers, as on pmem.
package nbdtest

// BadContext is the meta context in which the devices show their bad
// ranges (flag 1), named as daxstack's server names it.
const BadContext = "daxstack:badblocks"
