// Package guest holds the tests that need real pmem under a real kernel:
// /dev/pmemN and /dev/daxX.Y namespaces on emulated NVDIMMs, the kernel's
// badblocks files, its uevents and MAP_SYNC. They are built with the tag
// "guest" and run only inside the qemu guest that scripts/vm-test.sh boots;
// on the host the package has no tests.
package guest
