// Package sysfswatch watches small attribute files, such as
// /sys/block/pmem0/badblocks, and reports when their content changes.
//
// A Watcher holds a set of paths and one goroutine. For each path it
// keeps an open descriptor and the content last read, and it sends a
// Change on its channel whenever a read differs from the one before: the
// first read after Add (the baseline, so the caller can diff), every
// change after it, a file that cannot be read any more (Change.Err, once,
// matching os.ErrNotExist when the file is gone) and its return.
//
// Three things make it re-read. Sysfs attributes a driver notifies with
// sysfs_notify() (the pmem driver does so for badblocks when it clears
// poison or revalidates) wake poll(2) with POLLPRI|POLLERR; the goroutine
// polls all descriptors at once, plus an eventfd that Add, Remove, Rescan
// and Close use to wake it. After a wake the file is read again from
// offset 0, which is also what re-arms the notification. Every
// Options.Poll (DefaultPoll, 250 ms) each file whose last read succeeded
// is read again through the same descriptor and compared with the content
// before, which sends nothing when nothing changed: this is what sees a
// write to /sys/block/pmemN/badblocks by a user or a tool, which the
// kernel does not notify (its badblocks_store never calls sysfs_notify),
// within about a quarter of a second (BenchmarkInjectionLatency: 128 ms
// on average, 250 ms at worst; 64 files cost about 0.2% of a core). And
// every Options.Rescan (10 s by default), or at once when Rescan is called,
// every path is looked up again and re-read: this catches attributes
// that are never notified, regular files (a fake sysfs tree in tests
// never signals), files removed or replaced by new ones (a device that
// went away and came back), and anything a lost wake-up would miss.
// Removing a sysfs file does not wake poll, so a device that goes away is
// noticed at the next rescan; a caller that learns of it sooner (a uevent,
// or uevent.ErrOverrun, after which it cannot know what it missed) should
// call Rescan.
//
// Changes are never dropped but may be merged: while the reader of the
// channel is busy, newer content for a path replaces the undelivered one,
// so the reader always ends up with the latest content of every path.
package sysfswatch
