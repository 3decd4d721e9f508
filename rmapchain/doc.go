// Package rmapchain carries bad sectors up the device graph.
//
// A leaf learns that some of its sectors are bad (a media error, an
// injection, or its whole self when it disappears). Propagate takes those
// sectors and, through the graph's reverse index, finds every segment of
// every mapped device that uses them, asks the segment's target to invert
// its mapping (Target.Rmap), and repeats on the devices found until no
// parent is left. Devices are processed in order of height, so each
// device's set is complete before it is passed on, and each device is
// visited once however many paths lead to it. The result is, for every
// device reached, the exact set of its sectors backed by the bad ones:
// coalesced, and strided where the geometry is periodic, so the loss of a
// 1 TiB leaf under a stripe is a few runs rather than millions of extents.
//
// Sources gathers everything that makes a read fail: leaf poison, lost
// leaves, the sectors past the current end of a leaf that shrank under
// its tables (Shrinkable), error segments (targets that are stack.Failer), and sectors
// past the end of a device that a parent still maps. BadRanges combines
// the two: the bad ranges of a device are exactly the sectors whose read
// would fail, no more and no fewer.
//
// Translate turns one change at one device (new bad sectors, cleared ones,
// a loss, a return) into an Event per affected device. Logging the events
// and delivering them to holders and watchers is the engine's and the
// daemon's (packages control and service).
package rmapchain
